"""What the router prints, where its log goes, and how it reacts to signals.

``sisock-crossbar`` runs crossbar as its child: only crossbar's warnings and
errors reach the console, every line goes to a bounded file in ``--cbdir``,
and to whoever supervises it, it still behaves like crossbar (signals passed
on, crossbar's exit status, nothing left running when it dies). The clients'
side: a client being stopped does not log reconnect attempts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from sisock.components import crossbar

from conftest import Stack
from procs import Proc, free_port, port_open, wait_for

SECRET = "a-router-log-test-secret"


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def _family(pid: int) -> list[int]:
    kids = _children(pid)
    return kids + [d for k in kids for d in _family(k)]


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Router:
    """A real ``sisock-crossbar`` on free ports, its console (stdout and
    stderr) in one file."""

    def __init__(self, tmp_path, *args):
        self.tls_port, self.ocs_port = free_port(), free_port()
        self.cbdir = tmp_path / "cb"
        env = {**os.environ, "WAMP_SECRET": SECRET, "BIND_HOST": "127.0.0.1", "CROSSBAR_HOST": "127.0.0.1",
               "CROSSBAR_TLS_PORT": str(self.tls_port), "CROSSBAR_OCS_PORT": str(self.ocs_port),
               "LOGLEVEL": "info", "PYTHONUNBUFFERED": "1"}
        logs = tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        self.proc = Proc.script("router", "sisock-crossbar", "--cbdir", str(self.cbdir), "--no-hub", *args,
                                env=env, cwd=str(tmp_path), logdir=str(logs)).start()
        self.pid = self.proc.popen.pid
        wait_for(lambda: port_open(self.tls_port) and port_open(self.ocs_port), 60, "the router's ports")
        wait_for(lambda: "NODE_BOOT_COMPLETE" in self.log(), 30, "the router to finish booting")
        self.crossbar = wait_for(lambda: _family(self.pid), 10, "crossbar's processes")

    def log(self) -> str:
        path = self.cbdir / crossbar.LOG_NAME
        return path.read_text(errors="replace") if path.exists() else ""

    def console(self) -> str:
        return self.proc.output()

    def close(self):
        self.proc.kill()
        for pid in self.crossbar:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def router(tmp_path, request):
    r = Router(tmp_path, *getattr(request, "param", ()))
    yield r
    r.close()


def test_console_has_warnings_only_and_the_file_everything(router):
    console = router.console()
    # crossbar's start-up (banner, roles, keys) is info: file only.
    assert "[Controller" not in console and "add_role" not in console, console[:2000]
    log = router.log()
    assert "[Controller" in log and "add_role" in log and "NODE_BOOT_COMPLETE" in log
    (pointer,) = [line for line in console.splitlines() if line.strip()]
    assert str(router.cbdir / crossbar.LOG_NAME) in pointer and "--console all" in pointer


def test_sigterm_is_passed_to_crossbar_which_stops(router):
    os.kill(router.pid, signal.SIGTERM)  # to sisock-crossbar alone, as docker-init does
    code = router.proc.popen.wait(60)
    assert code == 0, "a stop that was asked for and carried out is a success (crossbar itself exits 1)"
    assert "[Controller" in router.log() and "Received SIGTERM" in router.log()
    wait_for(lambda: not any(_alive(p) for p in router.crossbar), 10, "crossbar's processes to end")
    assert not port_open(router.tls_port)


@pytest.mark.parametrize("router", [("--console", "all")], indirect=True)
def test_console_all_shows_everything_and_crossbar_killed_by_a_signal_is_128_plus_it(router):
    assert "[Controller" in router.console() and "add_role" in router.console()
    controller = router.crossbar[0]
    os.kill(controller, signal.SIGKILL)
    assert router.proc.popen.wait(60) == 128 + signal.SIGKILL


def test_killing_sisock_crossbar_stops_crossbar(router):
    os.kill(router.pid, signal.SIGKILL)
    router.proc.popen.wait(10)
    wait_for(lambda: not any(_alive(p) for p in router.crossbar), 30, "crossbar to stop after its parent died")
    wait_for(lambda: not port_open(router.tls_port), 10, "the TLS port to close")


# ------------------------------------------------- supervise, with small children


SUPERVISED = textwrap.dedent("""
    import sys
    from sisock.components.crossbar import RotatingLog, supervise
    log = RotatingLog(sys.argv[1])
    raise SystemExit(supervise(sys.argv[3:], dict(), log, console_all=sys.argv[2] == "all"))
""")


def _supervise(tmp_path, child: str, console="warnings", signal_when=None):
    """``supervise`` in a process of its own (it installs signal handlers)
    running ``python -c child``; (exit status, console, log file)."""
    log = tmp_path / "supervised.log"
    argv = [sys.executable, "-c", SUPERVISED, str(log), console, sys.executable, "-u", "-c", child]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if signal_when is not None:
        ready, sig = signal_when
        wait_for(lambda: log.exists() and ready in log.read_text(), 30, f"the child to print {ready!r}")
        p.send_signal(sig)
    console_text, _ = p.communicate(timeout=60)
    return p.returncode, console_text, log.read_text()


def test_only_stderr_reaches_the_console_and_the_exit_code_is_the_childs(tmp_path):
    child = "import sys; print('an info line'); print('a warning', file=sys.stderr); sys.exit(7)"
    code, console, log = _supervise(tmp_path, child)
    assert code == 7
    assert console == "a warning\n"
    assert "an info line\n" in log and "a warning\n" in log
    code, console, _ = _supervise(tmp_path, child, console="all")
    assert code == 7 and "an info line\n" in console and "a warning\n" in console


def test_a_child_killed_by_a_signal_gives_128_plus_it(tmp_path):
    code, _, _ = _supervise(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert code == 128 + signal.SIGTERM


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_are_passed_on_once(tmp_path, sig):
    child = textwrap.dedent(f"""
        import signal, sys, time
        got = []
        signal.signal({int(sig)}, lambda n, f: got.append(n))
        print("ready", flush=True)
        while not got:
            time.sleep(0.05)
        time.sleep(0.5)  # a second copy of the signal would arrive meanwhile
        print("got", got, file=sys.stderr, flush=True)
        sys.exit(3)
    """)
    code, console, log = _supervise(tmp_path, child, signal_when=("ready", sig))
    assert code == 3
    assert f"got [{int(sig)}]" in console and f"got [{int(sig)}]" in log


def test_a_line_without_end_cannot_fill_memory(tmp_path):
    child = "import sys; sys.stdout.write('x' * 300000); sys.stdout.flush()"
    code, _, log = _supervise(tmp_path, child)
    assert code == 0
    lines = log.splitlines()
    assert "".join(lines) == "x" * 300000
    assert max(len(line) for line in lines) <= crossbar.LONGEST_LINE


# --------------------------------------------------------------- the file


def test_the_log_rotates_and_stays_bounded(tmp_path):
    path = tmp_path / "router.log"
    log = crossbar.RotatingLog(str(path), max_bytes=1000, backups=1)
    line = b"0123456789" * 9 + b"\n"  # 91 bytes
    for _ in range(100):
        log.write(line)
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["router.log", "router.log.1"]
    assert all(os.path.getsize(tmp_path / name) <= 1000 for name in files)
    assert os.path.getsize(tmp_path / "router.log.1") > 1000 - len(line), "rotated only when full"
    # Lines stay whole across the rotation.
    assert all(text == line for name in files for text in (tmp_path / name).read_bytes().splitlines(keepends=True))


def test_the_log_continues_an_existing_file_within_the_bound(tmp_path):
    path = tmp_path / "router.log"
    path.write_bytes(b"x" * 990 + b"\n")
    log = crossbar.RotatingLog(str(path), max_bytes=1000)
    log.write(b"a new start\n")
    log.close()
    assert (tmp_path / "router.log.1").read_bytes() == b"x" * 990 + b"\n"
    assert path.read_bytes() == b"a new start\n"


def test_a_failing_disk_is_reported_once_and_does_not_raise(tmp_path):
    reports = []
    log = crossbar.RotatingLog(str(tmp_path / "router.log"), report=reports.append)
    log.close()
    log.path = str(tmp_path / "gone" / "router.log")  # its folder removed under it
    log.write(b"one\n")
    log.write(b"two\n")
    assert len(reports) == 1 and "gone" in reports[0]
    log.path = str(tmp_path / "router.log")
    log.write(b"three\n")
    log.close()
    assert (tmp_path / "router.log").read_bytes() == b"three\n"


def test_default_bound_is_two_files_of_ten_megabytes():
    assert crossbar.LOG_MAX_BYTES == 10 * 1024 * 1024 and crossbar.LOG_BACKUPS == 1


# ------------------------------------------------------------- the clients


def _after(text: str, marker: str) -> str:
    assert marker in text, text[-3000:]
    return text[text.index(marker):]


RETRY_WORDS = ("cannot reach the router", "Scheduling retry", "retrying", "transport_lost")


def test_a_stopped_client_logs_no_reconnect_attempts(tmp_path):
    """Stopped while connected (the router then sees it leave) and stopped
    while the router is gone: neither logs a retry on its way down."""
    s = Stack(str(tmp_path))
    try:
        s.start_router()
        s.proc("hub", "sisock-hub").start()
        first = s.proc("weather", "sisock-weather-server").start()
        wait_for(lambda: "data node registered" in first.output(), 60, "the first server to register")
        first.signal(signal.SIGTERM)
        assert first.popen.wait(30) == 0
        down = _after(first.output(), "Received SIGTERM")
        assert not [w for w in RETRY_WORDS if w in down], down

        second = s.proc("weather2", "sisock-weather-server").start()
        wait_for(lambda: "data node registered" in second.output(), 60, "the second server to register")
        s.router.kill()
        wait_for(lambda: "cannot reach the router" in second.output(), 60, "the server to miss the router")
        second.signal(signal.SIGTERM)
        assert second.popen.wait(30) == 0
        down = _after(second.output(), "Received SIGTERM")
        assert not [w for w in RETRY_WORDS if w in down], down
    finally:
        s.stop_all()


def test_a_stop_that_was_asked_for_is_a_success(tmp_path):
    """crossbar exits 1 after obeying SIGTERM; a supervisor must not see a
    failure for a stop it asked for. Any other code is passed on."""
    child = textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda n, f: sys.exit(1))
        print("ready", flush=True)
        time.sleep(30)
    """)
    code, _, _ = _supervise(tmp_path, child, signal_when=("ready", signal.SIGTERM))
    assert code == 0
    code, _, _ = _supervise(tmp_path, "import sys; sys.exit(1)")
    assert code == 1
