"""Importing the library (and what it pulls in) prints nothing at all."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", [
    "sisock", "sisock.base", "sisock.client", "autobahn", "autobahn.twisted.wamp",
    "autobahn.wamp.serializer", "crossbar", "sisock.components.http.app", "sisock.servers.weather",
])
def test_import_is_silent(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


HEAVY = ("twisted", "autobahn", "numpy", "txaio", "crossbar")


def _imported_after(code: str) -> list[str]:
    """Heavy top-level packages in ``sys.modules`` after running ``code`` in
    a fresh interpreter (this one has imported everything already)."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    return sorted(loaded & set(HEAVY))


@pytest.mark.parametrize("code", [
    "import sisock",
    "import sisock.components.healthcheck",
    "from sisock.components.healthcheck import main",
    "import sisock.contract",
    "import contextlib, io\nfrom sisock.components import cli\n"
    "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    cli.main(['--help'])",
])
def test_light_entry_points_import_only_the_standard_library(code):
    """The health probe runs every few seconds in every container, and
    ``sisock --help`` should answer at once: neither may pay for Twisted,
    autobahn or numpy."""
    assert _imported_after(code) == []


def test_the_lazy_package_still_gives_every_name():
    code = ("import sisock\n"
            "assert sisock.__version__ and callable(sisock.run)\n"
            "assert sisock.base.DataNodeServer and sisock.contract.uri('x')\n"
            "from sisock import base, run, contract, config, client\n"
            "assert run is sisock.run and 'base' in dir(sisock)\n"
            "ns = {}\nexec('from sisock import *', ns)\n"
            "assert {'base', 'run', '__version__'} <= set(ns)\n"
            "assert not hasattr(sisock, 'no_such_thing')\n")
    assert set(_imported_after(code)) >= {"twisted", "autobahn", "numpy"}
