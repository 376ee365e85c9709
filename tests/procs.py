"""Child processes for the tests: real routers, hubs, bridges and servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last_exc!r})")


class Proc:
    """A console script or Python file run as a child, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict, cwd: str, logdir: str):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.popen = None

    @classmethod
    def script(cls, name, script, *args, **kw):
        return cls(name, [os.path.join(BIN, script), *args], **kw)

    def start(self):
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig):
        if self.alive:
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0):
        if not self.alive:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        if self.alive:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def refused_at_start(script: str, env: dict, cwd=None) -> str:
    """Run a console script that must refuse its settings: exit code 2 and
    exactly one line of output (no traceback). Returns that line."""
    done = subprocess.run([os.path.join(BIN, script)], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in lines[0], (done.returncode, lines)
    return lines[0]
