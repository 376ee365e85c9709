"""A MariaDB server of the tests' own, which they may kill and restart.

The shared server at 127.0.0.1:3306 must stay up for every other test, so
fault tests start their own: a fresh data directory, a free port, root
without a password on 127.0.0.1 only. ``kill()`` is ``kill -9`` (what a
crash or an OOM kill does); ``start()`` brings the server back on the same
port and data directory, through InnoDB's crash recovery.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

from procs import free_port, port_open, wait_for

INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db") or "mariadb-install-db"
SERVER = next((p for p in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld") if os.path.exists(p)),
              shutil.which("mariadbd") or "mariadbd")


class PrivateMariaDB:
    def __init__(self, root: str, port: int | None = None):
        self.root = root
        self.datadir = os.path.join(root, "data")
        self.socket = os.path.join(root, "mariadb.sock")
        self.log_path = os.path.join(root, "mariadb.log")
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self, database: str) -> dict:
        """The ``SQL_*`` variables of ``database`` on this server."""
        return {"SQL_HOST": self.host, "SQL_USER": "root", "SQL_PASSWD": "", "SQL_DB": database}

    def _as_user(self) -> list[str]:
        # mariadbd refuses to run as root unless told to; as anyone else it
        # runs as that user and the option is not needed.
        return ["--user=root"] if os.geteuid() == 0 else []

    def install(self):
        os.makedirs(self.root, exist_ok=True)
        with open(self.log_path, "ab") as log:
            subprocess.run(
                [INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
                 "--skip-test-db", "--skip-name-resolve", *self._as_user()],
                check=True, stdout=log, stderr=subprocess.STDOUT, timeout=120,
            )
        return self

    def start(self, timeout: float = 60.0):
        """Start the server; returns once it accepts connections."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [SERVER, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin",
             f"--pid-file={os.path.join(self.root, 'mariadb.pid')}", "--innodb-buffer-pool-size=32M",
             *self._as_user()],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_for(lambda: self._ready(), timeout, f"the private MariaDB on port {self.port}", interval=0.05)
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"mariadbd exited with {self.proc.returncode}: {self.output()[-2000:]}")
        return port_open(self.port) and self.sql("SELECT 1").strip() == "1"

    def sql(self, statement: str) -> str:
        """Run one statement with the command-line client; its output."""
        out = subprocess.run(
            ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{self.port}", "-uroot", "-N", "-B", "-e", statement],
            capture_output=True, text=True, timeout=30,
        )
        if out.returncode:
            raise RuntimeError(out.stderr.strip())
        return out.stdout

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """``kill -9``: the server vanishes mid-transaction, as in a crash."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        wait_for(lambda: not port_open(self.port), 10, "the private MariaDB's port to close")

    def stop(self):
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

