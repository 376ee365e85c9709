"""A real InfluxDB 1.x (Debian's ``influxd``) for the tests that compare
sisock's InfluxQL answers with the database Grafana users know.

One server per test run, with its own config, meta, data and WAL
directories under pytest's temporary directory, every listener on a free
loopback port, and everything that would talk to the outside or write on
its own switched off: usage reporting, the ``_internal`` monitor database
(it would show in ``SHOW DATABASES``), continuous queries, and the
graphite, collectd, OpenTSDB, UDP and ifql listeners.

A missing ``influxd`` is a failure, not a skip: `make test` installs it.
"""

from __future__ import annotations

import os
import shutil

import pytest
import requests

from procs import Proc, free_port, wait_for

INFLUXD = os.environ.get("TEST_INFLUXD") or shutil.which("influxd") or "/usr/bin/influxd"

_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  max-row-limit = 0

[ifql]
  enabled = false

[logging]
  level = "warn"

[subscriber]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = false
"""


class InfluxServer:
    """One running ``influxd``: its URL, and a few helpers for the tests."""

    def __init__(self, root: str, binary: str = INFLUXD):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.config_path = os.path.join(root, "influxdb.conf")
        with open(self.config_path, "w", encoding="utf-8") as fh:
            fh.write(_CONFIG.format(root=root, http_port=self.http_port, rpc_port=self.rpc_port))
        self.proc = Proc("influxd", [binary, "run", "-config", self.config_path],
                         env={**os.environ, "INFLUXDB_CONFIG_PATH": self.config_path}, cwd=root, logdir=root)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> InfluxServer:
        self.proc.start()

        def ready():
            if not self.proc.alive:
                raise AssertionError(f"influxd exited:\n{self.proc.output()[-2000:]}")
            return requests.get(self.url + "/ping", timeout=1).status_code == 204

        wait_for(ready, 60, "influxd to answer /ping")
        return self

    def stop(self):
        self.proc.stop()

    def query(self, q: str, db: str | None = None, epoch: str | None = None, method: str = "GET",
              timeout: float = 60) -> requests.Response:
        params = {"q": q}
        if db is not None:
            params["db"] = db
        if epoch is not None:
            params["epoch"] = epoch
        if method == "POST":
            return requests.post(self.url + "/query", data=params, timeout=timeout)
        return requests.get(self.url + "/query", params=params, timeout=timeout)

    def client(self, database: str | None = None):
        """The ``influxdb`` PyPI client, as the OCS publisher and scripts use it."""
        from influxdb import InfluxDBClient

        return InfluxDBClient(host="127.0.0.1", port=self.http_port, database=database, timeout=60)


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory):
    if not (os.path.isfile(INFLUXD) and os.access(INFLUXD, os.X_OK)):
        pytest.fail(f"influxd is not installed ({INFLUXD}); `make test` installs Debian's influxdb package "
                    "(or run `apt-get install -y influxdb`), or point TEST_INFLUXD at one")
    server = InfluxServer(str(tmp_path_factory.mktemp("influxdb"))).start()
    yield server
    server.stop()
