"""Fixtures that start the real system: one crossbar router per test run,
a separately running hub (so tests can restart it), the HTTP bridge and the
example-weather server, all as child processes on free ports."""

from __future__ import annotations

import os

import pytest
import requests

from sisock.base import uri
from sisock.config import Settings
from sisock.g3.native import preload_mysql_extension

from influxdb_server import influxdb  # noqa: F401 - the real InfluxDB the InfluxQL answers are compared with
from influxql_stack import influxql_index, influxql_live_t0, influxql_pair, influxql_samples  # noqa: F401
from ocs_fixtures import ocs_archive  # noqa: F401 - a session fixture shared by several modules
from procs import Proc, free_port, port_open, wait_for

# Test modules import so3g when they are collected: the MySQL driver's C
# extension must be in first, or every MariaDB test would run the driver's
# pure-Python fallback, which no deployment runs.
preload_mysql_extension()

TEST_SECRET = "a-test-secret-that-is-not-the-default"


# -- fast unit tests and system tests ---------------------------------------------
#
# `make test-fast` runs the tests not marked `system`: pure functions and
# classes, no router, no database, no child process. A test is a system test
# when it asks (directly or through another fixture) for a fixture that
# starts real parts, or lives in a module that starts them itself. The
# split keeps itself honest: a test left unmarked that starts a process
# fails, saying so, instead of quietly making the fast run slow.

#: Fixtures that start a router, a MariaDB server, an InfluxDB or real OCS agents.
SYSTEM_FIXTURES = {"stack", "mariadb_server", "index_env", "ocs_archive", "influxdb"}
#: Modules whose tests start routers, databases or console scripts with
#: fixtures of their own.
SYSTEM_MODULES = {
    "test_compose", "test_config_errors", "test_faults", "test_faults_g3", "test_g3_path", "test_load",
    "test_multihost", "test_quiet_import", "test_router_down", "test_router_files", "test_router_log",
    "test_stack", "test_startup_order",
}
#: Single tests that run a console script in modules of unit tests.
SYSTEM_TESTS = {
    "test_cli_unit::test_children_run_through_the_launcher_which_execs_them",
    "test_cli_unit::test_launcher_refuses_to_start_an_orphan",
    "test_dashboard::test_unreachable_bridge_is_a_one_line_error",
    "test_data_feed_unit::test_cli_exits_2_with_one_line",
    "test_text_archives::test_data_directory_errors_exit_2_with_one_line",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if (module in SYSTEM_MODULES or f"{module}::{getattr(item, 'originalname', item.name)}" in SYSTEM_TESTS
                or SYSTEM_FIXTURES & set(item.fixturenames)):
            item.add_marker(pytest.mark.system)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request, monkeypatch):
    if request.node.get_closest_marker("system") or request.node.get_closest_marker("compose"):
        return
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a process ({args[0] if args else kwargs.get('args')}): "
                             "a system test; add its module to SYSTEM_MODULES in tests/conftest.py")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


class Stack:
    def __init__(self, root: str):
        self.root = root
        self.cbdir = os.path.join(root, "crossbar")
        self.logdir = os.path.join(root, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.tls_port = free_port()
        self.ocs_port = free_port()
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "CROSSBAR_HOST": "127.0.0.1",
            "CROSSBAR_TLS_PORT": str(self.tls_port),
            "CROSSBAR_OCS_PORT": str(self.ocs_port),
            "PORT": str(self.http_port),
            "WAMP_USER": "server",
            "WAMP_SECRET": TEST_SECRET,
            "SISOCK_CERT": os.path.join(self.cbdir, "server_cert.pem"),
            "LOGLEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: list[Proc] = []

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def proc(self, name, script, *args, env=None, cwd=None) -> Proc:
        p = Proc.script(name, script, *args, env={**self.env, **(env or {})}, cwd=cwd or self.root,
                        logdir=self.logdir)
        self.procs.append(p)
        return p

    def python(self, name, path, *args, env=None, cwd=None) -> Proc:
        import sys

        p = Proc(name, [sys.executable, path, *args], env={**self.env, **(env or {})},
                 cwd=cwd or self.root, logdir=self.logdir)
        self.procs.append(p)
        return p

    def start_router(self) -> Proc:
        # The router also listens on a UNIX socket, which clients use only
        # when given SISOCK_ROUTER_SOCKET (tests/test_router_socket.py).
        self.socket = os.path.join(self.cbdir, "router.sock")
        router = self.proc("router", "sisock-crossbar", "--cbdir", self.cbdir, "--no-hub",
                           env={"SISOCK_ROUTER_SOCKET": self.socket}).start()
        wait_for(lambda: port_open(self.tls_port) and port_open(self.ocs_port) and os.path.exists(self.socket), 60,
                 "the router's ports and socket")
        self.router = router
        return router

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    s = Stack(str(tmp_path_factory.mktemp("stack")))
    s.start_router()
    s.hub = s.proc("hub", "sisock-hub").start()
    yield s
    s.stop_all()


@pytest.fixture(scope="session")
def client(stack):
    from sisock.client import Client

    c = Client(stack.settings, timeout=30)
    wait_for(lambda: _has_proc(c, uri("consumer.get_data_node")), 30, "the hub")
    yield c
    c.close()


def _has_proc(c, procedure) -> bool:
    try:
        c.call(procedure)
        return True
    except Exception:  # noqa: BLE001
        return False


def node_names(client) -> set[str]:
    return {n["name"] for n in client.data_nodes()}


@pytest.fixture(scope="session")
def weather(stack, client):
    p = stack.proc("weather", "sisock-weather-server", "--replay").start()
    wait_for(lambda: "apex_archive" in node_names(client), 30, "apex_archive to register")
    return p


@pytest.fixture(scope="session")
def bridge(stack, client, weather):
    p = stack.proc("http", "sisock-http").start()

    def ready():
        r = requests.post(stack.http + "/search", json={"target": ""}, timeout=2)
        return r.status_code == 200 and any(m.startswith("apex_archive::") for m in r.json())

    wait_for(ready, 30, "the bridge to list apex_archive")
    return p


# -- index databases ------------------------------------------------------------

MARIADB = {"SQL_HOST": os.environ.get("TEST_SQL_HOST", "127.0.0.1:3306"),
           "SQL_USER": os.environ.get("TEST_SQL_USER", "root"),
           "SQL_PASSWD": os.environ.get("TEST_SQL_PASSWD", "")}


@pytest.fixture(scope="session")
def mariadb_server():
    """The MariaDB server the g3 tests use. Missing is a failure, not a skip:
    the MariaDB path is a supported deployment and must stay tested."""
    import sqlalchemy as sa

    from sisock.g3.index import database_url

    url = database_url({**MARIADB, "SQL_DB": "mysql"})
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"MariaDB is not reachable at {MARIADB['SQL_HOST']} as {MARIADB['SQL_USER']} ({exc}); "
                    "start it (e.g. `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`) "
                    "or point TEST_SQL_HOST/TEST_SQL_USER/TEST_SQL_PASSWD at one")
    yield engine
    engine.dispose()


@pytest.fixture
def mariadb_env(mariadb_server):
    """SQL_* variables of a fresh database, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    name = f"sisock_test_{uuid.uuid4().hex[:12]}"
    with mariadb_server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))  # name is generated above
    yield {**MARIADB, "SQL_DB": name}
    with mariadb_server.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture(params=["sqlite", "mariadb"])
def index_env(request, tmp_path):
    """Environment selecting each index backend in turn."""
    if request.param == "sqlite":
        return {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    return request.getfixturevalue("mariadb_env")
