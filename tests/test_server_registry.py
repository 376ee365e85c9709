"""The one table of in-tree DataNodeServers, and everything that reads it.

Adding a server is its module plus one line in ``sisock/server_registry.py``;
these tests add a line for tests/servers/runtime_counter.py and check that
``sisock up`` and the console scripts then know it, and that setup.py, the
installed package, each server's module and the documentation agree with
the table as it is.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import os
import re
import runpy

import pytest
import setuptools

from sisock import server_registry
from sisock.components import cli, stack
from sisock.server_registry import Server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_SERVERS = os.path.join(ROOT, "tests", "servers")
COUNTER = Server("counter", "sisock-counter-server", "runtime_counter:main", up_args=("--offset", "5"))
#: Console scripts setup.py declares besides the servers'.
COMPONENT_SCRIPTS = ["sisock", "sisock-crossbar", "sisock-hub", "sisock-http", "sisock-g3-file-scanner",
                     "sisock-healthcheck"]


@pytest.fixture
def registered(monkeypatch):
    """The counter registered as a developer would: one more line in the table."""
    monkeypatch.setattr(server_registry, "SERVERS", (*server_registry.SERVERS, COUNTER))
    monkeypatch.syspath_prepend(TEST_SERVERS)
    return COUNTER


def run_entry_point(entry: Server, argv: list[str]) -> tuple[int, str]:
    """What the console script of ``entry`` does with ``argv``, in this process."""
    module, function = entry.entry_point.split(":")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        getattr(importlib.import_module(module), function)(argv)
    return exited.value.code, out.getvalue()


# -- a server added through the table -------------------------------------------------


def test_sisock_up_knows_a_registered_server(registered, monkeypatch, capsys):
    monkeypatch.setattr(stack, "find_script", lambda s: "/bin/" + s)
    assert stack.parse_servers("counter,weather") == ["counter", "weather"]
    children = stack.plan(["counter"], "/state/crossbar")
    assert children[-1] == ("counter", ["/bin/sisock-counter-server", "--offset", "5"])
    assert stack.SERVERS["counter"] == (("sisock-counter-server", "--offset", "5"),)
    with pytest.raises(SystemExit):
        cli.main(["up", "--help"])
    assert "counter" in " ".join(capsys.readouterr().out.split())


def test_sisock_up_names_it_among_the_valid_ones(registered, capsys, tmp_path):
    assert cli.main(["up", "--state-dir", str(tmp_path / "s"), "--servers", "bogus"]) == 2
    assert "counter" in capsys.readouterr().err


def test_companions_start_first_and_once(registered, monkeypatch):
    monkeypatch.setattr(server_registry, "SERVERS", (
        *server_registry.SERVERS,
        Server("counter-2", "sisock-counter-2-server", "runtime_counter:main",
               companions=("sisock-g3-file-scanner",)),
    ))
    monkeypatch.setattr(stack, "find_script", lambda s: "/bin/" + s)
    names = [name for name, _ in stack.plan(["counter-2", "g3-reader"], "/state/crossbar")]
    assert names == ["crossbar", "http", "g3-file-scanner", "counter-2", "g3-reader"]


def test_its_console_script_is_declared(registered):
    assert "sisock-counter-server = runtime_counter:main" in server_registry.console_scripts()


def test_its_entry_point_runs_it_through_the_runtime(registered):
    code, out = run_entry_point(registered, ["--help"])
    assert code == 0
    assert out.startswith("usage: sisock-counter-server [-h] [--offset OFFSET]")
    assert "Serve a counter that steps every second" in out


# -- the table as it is ---------------------------------------------------------------


def setup_console_scripts() -> list[str]:
    """The console_scripts setup.py declares, read by running it."""
    captured = {}
    real = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        cwd = os.getcwd()
        os.chdir(ROOT)  # setup.py reads README.md from where it runs
        try:
            runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="__main__")
        finally:
            os.chdir(cwd)
    finally:
        setuptools.setup = real
    return captured["entry_points"]["console_scripts"]


def test_setup_py_declares_the_components_and_every_registered_server():
    declared = setup_console_scripts()
    assert [line.split(" = ")[0] for line in declared[:len(COMPONENT_SCRIPTS)]] == COMPONENT_SCRIPTS
    assert declared[len(COMPONENT_SCRIPTS):] == server_registry.console_scripts()


def test_the_installed_package_is_current():
    installed = {ep.name: ep.value for ep in importlib.metadata.distribution("sisock").entry_points
                 if ep.group == "console_scripts"}
    for server in server_registry.SERVERS:
        assert installed.get(server.script) == server.entry_point, \
            f"{server.script} is not installed as in the table: reinstall (pip install -e .)"
        for companion in server.companions:
            assert companion in installed, companion


def test_names_are_unique_and_usable():
    names = [s.name for s in server_registry.SERVERS]
    scripts = [s.script for s in server_registry.SERVERS]
    assert len(set(names)) == len(names) and len(set(scripts)) == len(scripts)
    assert stack.NONE not in names
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names), names
    assert server_registry.get("g3-reader").companions == ("sisock-g3-file-scanner",)
    with pytest.raises(KeyError):
        server_registry.get("bogus")


def test_sisock_up_reads_the_table():
    assert list(stack.SERVERS) == [s.name for s in server_registry.SERVERS]
    assert stack.SERVERS["weather"] == (("sisock-weather-server", "--replay"),)
    assert stack.SERVERS["g3-reader"] == (("sisock-g3-file-scanner",), ("sisock-g3-reader-server",))
    assert len(stack.SERVERS) == len(server_registry.SERVERS)


@pytest.mark.parametrize("entry", server_registry.SERVERS, ids=lambda s: s.name)
def test_each_entry_point_runs_its_server_under_its_script_name(entry):
    """The module's ``script`` and the table's agree, so usage lines and
    error messages name the command the user typed."""
    code, out = run_entry_point(entry, ["--help"])
    assert code == 0 and out.startswith(f"usage: {entry.script} "), out


# -- the documentation -------------------------------------------------------------------


def read(*parts) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def section(text: str, heading: str) -> str:
    """The text under the Markdown heading ``heading``, up to the next
    heading of its level or above (lines in code fences are not headings)."""
    lines, fenced, level, body = text.splitlines(), False, None, []
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"(#+) (.*)$", line)
        if level is None:
            if match and match.group(2) == heading:
                level = len(match.group(1))
        elif match and len(match.group(1)) <= level:
            break
        else:
            body.append(line)
    assert level is not None, f"no section {heading!r}"
    return "\n".join(body)


def test_the_servers_page_and_readme_list_every_registered_server():
    page = read("docs", "servers", "index.md")
    scripts = section(read("README.md"), "Console scripts")
    for server in server_registry.SERVERS:
        assert f"`{server.script}`" in page, f"docs/servers/index.md does not list {server.script}"
        assert f"`{server.script}`" in scripts, f"README's Console scripts table does not list {server.script}"


def test_the_cli_page_gives_each_script_its_short_name():
    rows = {}
    for line in section(read("docs", "components", "cli.md"), "All console scripts").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    for server in server_registry.SERVERS:
        assert rows.get(server.script) == f"`{server.name}`", server.script


def test_adding_a_server_is_documented_as_one_module_and_one_line():
    guide = section(read("docs", "servers", "index.md"), "Add a DataNodeServer")
    for needle in ("servers/", "sisock/server_registry.py", "Server(", "sisock.runtime", "Setting",
                   "prepare", "docker-compose.yml"):
        assert needle in guide, needle
    writing = section(read("README.md"), "Writing a DataNodeServer")
    assert "docs/servers/index.md" in writing and "Add a DataNodeServer" in writing
