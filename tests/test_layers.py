"""The import arrows between the three layers point one way only.

``sisock/`` is the library; ``components/`` (processes) and ``servers/``
(DataNodeServers) build on it and never on each other, so that a server can
be deployed with the library alone and a component never drags in a
server's domain code. Read from the source with ``ast``, imports inside
functions included, so nothing has to be importable for the check to run.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
#: Folder in the repository -> the package it is installed as (setup.py's package_dir).
LAYERS = {"sisock": "sisock", "components": "sisock.components", "servers": "sisock.servers"}
#: Layer -> the packages none of its modules may import.
FORBIDDEN = {
    "sisock": ("sisock.components", "sisock.servers"),
    "components": ("sisock.servers",),
    "servers": ("sisock.components",),
}
#: (module file, imported module) pairs that still break a rule, each with
#: the reason it is tolerated for now. Empty is the goal; an entry that no
#: longer occurs fails the test, so the list cannot go stale.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _modules():
    for folder, package in LAYERS.items():
        top = os.path.join(ROOT, folder)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for filename in sorted(filenames):
                if filename.endswith(".py"):
                    path = os.path.join(dirpath, filename)
                    parts = os.path.relpath(path, top)[:-3].split(os.sep)
                    yield folder, package, path, parts


def _imports(path: str, package: str, parts: list[str]):
    """Every module ``path`` imports, by absolute name: for ``from X import
    a``, both ``X`` and ``X.a``, since ``a`` may be a submodule."""
    here = [*package.split("."), *parts[:-1]]  # the package holding the module (or the package itself)
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module
            yield module
            for alias in node.names:
                if alias.name != "*":
                    yield f"{module}.{alias.name}"


def _violations():
    found = {}
    for folder, package, path, parts in _modules():
        rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
        for name in _imports(path, package, parts):
            for banned in FORBIDDEN[folder]:
                if name == banned or name.startswith(banned + "."):
                    found.setdefault((rel, name), banned)
    return found


def test_every_layer_is_scanned():
    seen = {folder for folder, *_ in _modules()}
    assert seen == set(LAYERS)


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_point_one_way(folder):
    broken = sorted(
        f"{rel} imports {name}" for (rel, name) in _violations()
        if rel.split("/")[0] == folder and (rel, name) not in KNOWN_EXCEPTIONS
    )
    assert not broken, "imports against the layering:\n" + "\n".join(broken)


def test_known_exceptions_still_occur():
    stale = sorted(set(KNOWN_EXCEPTIONS) - set(_violations()))
    assert not stale, f"no longer needed, remove from KNOWN_EXCEPTIONS: {stale}"


def test_every_form_of_import_is_seen(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text(
        "import sisock.servers.weather\n"
        "from sisock import servers\n"
        "from .. import g3_reader\n"
        "def later():\n"
        "    from ..servers.sensors import Ring\n"
    )
    # As if it were components/http/mod.py: ".." is sisock.components.
    names = set(_imports(str(path), "sisock.components", ["http", "mod"]))
    assert {"sisock.servers.weather", "sisock.servers", "sisock.components.g3_reader",
            "sisock.components.servers.sensors.Ring"} <= names
