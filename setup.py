"""Packaging for sisock.

``components/`` and ``servers/`` live at the top of the repository (they are
deployed and documented on their own) but are installed as the subpackages
``sisock.components`` and ``sisock.servers``.
"""

import importlib.util
import os

from setuptools import Extension, setup

BASE = [
    "autobahn>=24.4",
    "twisted>=24.3",
    "txaio>=23.1",
    "numpy>=1.24",
    "msgpack>=1.0",
    "pyopenssl>=23.0",
    "service-identity>=23.1",
]
EXTRAS = {
    "router": ["crossbar>=23.1", "cryptography>=42"],
    "http": ["flask>=3.0", "orjson>=3.9", "lark>=1.1"],
    "g3": ["so3g>=0.1.15", "mysql-connector-python>=8.3", "sqlalchemy>=2.0", "tqdm>=4.60"],
    "sensors": ["psutil>=5.9"],
    "ocs": ["ocs>=0.11", "pyyaml>=6.0"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})
EXTRAS["test"] = [
    "pytest>=8.0", "pytest-timeout>=2.2", "requests>=2.31", "ruff>=0.4", "psutil>=5.9",
    "hypothesis>=6.100", "hypothesis-jsonschema>=0.23", "jsonschema>=4.0", "openapi-spec-validator>=0.7",
    "playwright>=1.40", "influxdb>=5.3",
]
EXTRAS["docs"] = ["sphinx>=7.2", "myst-parser>=2.0"]


def server_scripts() -> list[str]:
    """The DataNodeServers' console scripts, from the one table of servers.
    Loaded by its path: nothing of sisock (nor its dependencies) is
    installed yet when this file runs."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sisock", "server_registry.py")
    spec = importlib.util.spec_from_file_location("_sisock_server_registry", path)
    registry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(registry)
    return registry.console_scripts()


setup(
    name="sisock",
    version="0.2.0",
    description="Serve live and archived housekeeping data to Grafana over WAMP",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-2-Clause",
    python_requires=">=3.11",
    packages=["sisock", "sisock.g3", "sisock.demo", "sisock.components", "sisock.components.http",
              "sisock.components.http.influxql", "sisock.servers"],
    package_dir={
        "sisock": "sisock",
        "sisock.components": "components",
        "sisock.servers": "servers",
    },
    package_data={
        "sisock.servers": ["weather_data/*.dat"],
        "sisock.components.http": ["static/*.html", "static/*.js", "static/*.css", "static/vendor/*"],
    },
    # The M4 merge in one pass (sisock/_m4.c; numpy serves where it is not built).
    ext_modules=[Extension("sisock._m4", ["sisock/_m4.c"], extra_compile_args=["-O3"])],
    install_requires=BASE,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "sisock = sisock.components.cli:main",
            "sisock-crossbar = sisock.components.crossbar:main",
            "sisock-hub = sisock.components.hub:main",
            "sisock-http = sisock.components.http.app:main",
            "sisock-g3-file-scanner = sisock.components.g3_scanner:main",
            "sisock-healthcheck = sisock.components.healthcheck:main",
            *server_scripts(),
        ]
    },
)
