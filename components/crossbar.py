"""``sisock-crossbar``: the router (with the hub) as one command.

Creates the certificate on first start, writes the configuration from the
environment and runs crossbar as its only child.

Crossbar logs its whole configuration at info level when it starts (every
role, every permission, the node keys), which buries anything that matters
on a console or in ``docker compose logs``. So by default only crossbar's
warnings and errors reach the console, while every line it writes, at
``LOGLEVEL``, goes to ``router.log`` in ``--cbdir``, rotated so that it never
grows without bound. ``--console all`` puts everything on the console as
well.

To a container or a supervisor this command still behaves as crossbar
would: SIGTERM, SIGINT and SIGHUP are passed on to crossbar, the exit status
is crossbar's (128 + the signal number when a signal killed it), and
crossbar stops when this process dies, whatever killed it.

With ``--tls-dir`` the certificate and key already in that folder are used
where they are (a read-only mount in a container, a pair shared with other
tools): they are checked, referenced by absolute path, and never created or
copied, so only ``--cbdir`` needs to be writable.
"""

from __future__ import annotations

import argparse
import functools
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time

from sisock.config import ConfigError, Settings

from . import router_config
from .parent_death import signal_on_parent_death
from .tls import CERT_NAME, KEY_NAME, check_pair, make_certificate, pair_paths

#: crossbar's log, in ``--cbdir``.
LOG_NAME = "router.log"
#: Once the log would pass this size it becomes ``router.log.1`` (replacing
#: the previous one) and a new file is started: at most twice this on disk.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 1
#: A longer run of bytes without a newline is written out as a line of its
#: own, so a child that never ends a line cannot fill this process's memory.
LONGEST_LINE = 64 * 1024
#: What ``--console`` accepts: crossbar's warnings and errors, or everything.
CONSOLE_CHOICES = ("warnings", "all")
#: What a supervisor sends to stop or reload the router; crossbar must get it.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: crossbar has no ``critical``; ``error`` is the closest it offers.
CROSSBAR_LEVELS = {"critical": "error"}

def crossbar_executable() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "crossbar")
    found = beside if os.access(beside, os.X_OK) else shutil.which("crossbar")
    if not found:
        raise ConfigError("crossbar is not installed: pip install 'sisock[router]'")
    return found


def certificate_paths(tls_dir: str | None) -> tuple[str, str]:
    """What the configuration names: the pair in the router's folder
    (relative names), or the absolute paths of the pair in ``tls_dir``."""
    return (CERT_NAME, KEY_NAME) if tls_dir is None else pair_paths(tls_dir)


def prepare(cbdir: str, settings: Settings, with_hub: bool = True, tls_dir: str | None = None) -> list[str]:
    """Write the config (and, without ``tls_dir``, the certificate) into
    ``cbdir``; the crossbar command line."""
    if tls_dir is None:
        make_certificate(cbdir)
    else:
        check_pair(tls_dir)
    certificate, key = certificate_paths(tls_dir)
    if settings.router_socket:
        # Crossbar binds the socket but does not make its folder; without
        # one, the whole router would fail to start.
        os.makedirs(os.path.dirname(settings.router_socket), exist_ok=True)
    router_config.write(cbdir, settings, with_hub=with_hub, certificate=certificate, key=key)
    level = CROSSBAR_LEVELS.get(settings.loglevel, settings.loglevel)
    return [crossbar_executable(), "start", "--cbdir", os.path.abspath(cbdir), "--loglevel", level]


def log_path(cbdir: str) -> str:
    return os.path.join(os.path.abspath(cbdir), LOG_NAME)


# ------------------------------------------------------------------ the log


class RotatingLog:
    """Appends bytes to ``path`` and keeps it, with its ``backups`` older
    generations, within ``max_bytes`` each.

    Only whole writes are rotated, so a line is never split across two
    files; a single write larger than ``max_bytes`` still gets a file of its
    own. A failing disk (full, removed) must not take the router down: the
    first failure is reported on stderr, and writing is tried again with the
    next lines.
    """

    def __init__(self, path: str, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS, report=None):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._report = report or (lambda text: None)
        self._file = None
        self._failing = False
        self.size = 0
        self._open()

    def _open(self):
        # Not world-readable: it names every client's address and session.
        self._file = open(self.path, "ab", buffering=0, opener=lambda path, flags: os.open(path, flags, 0o640))
        self.size = os.fstat(self._file.fileno()).st_size

    def _rotate(self):
        self._file.close()
        for n in range(self.backups, 0, -1):
            older = self.path if n == 1 else f"{self.path}.{n - 1}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{n}")
        if not self.backups:
            os.unlink(self.path)
        self._open()

    def write(self, data: bytes):
        try:
            if self._file is None or self._file.closed:
                self._open()
            if self.size and self.size + len(data) > self.max_bytes:
                self._rotate()
            self._file.write(data)
            self.size += len(data)
        except OSError as exc:
            if not self._failing:
                self._report(f"sisock-crossbar: cannot write {self.path} ({exc}); lines are lost until it works")
            self._failing = True
        else:
            self._failing = False

    def close(self):
        if self._file is not None:
            self._file.close()


class Lines:
    """Complete lines out of the chunks a pipe delivers, so the lines of
    crossbar's stdout and stderr interleave in the log without cutting one
    another in two."""

    def __init__(self, longest: int = LONGEST_LINE):
        self.longest = longest
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        end = data.rfind(b"\n") + 1
        done, self._pending = data[:end], data[end:]
        while len(self._pending) > self.longest:
            done += self._pending[:self.longest] + b"\n"
            self._pending = self._pending[self.longest:]
        return done

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest + b"\n" if rest else b""


class _Console:
    """One of this process's own output streams. Whoever reads it may go
    away (``sisock up`` killed, a closed pipe); the router keeps running
    and logging to its file regardless."""

    def __init__(self, stream):
        self.stream = getattr(stream, "buffer", stream)
        self.open = True

    def write(self, data: bytes):
        if not (self.open and data):
            return
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):
            self.open = False


# ------------------------------------------------------- running crossbar


def _die_with_parent(parent: int):
    """For the child, between fork and exec: SIGTERM when this process dies,
    SIGKILL included, so crossbar is never left running without anyone
    reading its output."""
    return functools.partial(signal_on_parent_death, signal.SIGTERM, parent)


#: Signals that ask the router to stop (SIGHUP is passed on too, but is not
#: a request to stop).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: What crossbar exits with after every stop it was asked for: it reports
#: the shutdown its own SIGTERM handler starts as a failure.
CROSSBAR_STOPPED = 1


def exit_status(returncode: int, stop_requested: bool = False) -> int:
    """What a shell reports for a child: its code, or 128 + the signal that
    killed it (which is also what a container runtime shows). A stop that was
    asked for and carried out is a success (0), so `docker compose stop`
    leaves the router "Exited (0)" like every other service."""
    if stop_requested and returncode == CROSSBAR_STOPPED:
        return 0
    return 128 - returncode if returncode < 0 else returncode


def supervise(command: list[str], env: dict, log: RotatingLog, console_all: bool = False) -> int:
    """Run ``command``, every line it writes into ``log``, its stderr (and,
    with ``console_all``, its stdout) onto ours; crossbar's exit status.

    crossbar gets a session of its own, without the terminal: a Ctrl-C in a
    terminal then reaches it once, through this process, instead of twice,
    and the newline crossbar writes to /dev/tty to probe it (on every start
    of every crossbar process) does not land on the console.
    """
    out, err = _Console(sys.stdout), _Console(sys.stderr)
    child = None
    pending: list[int] = []
    stopping = []

    def forward(signum, _frame):
        if signum in STOP_SIGNALS:
            stopping.append(signum)
        if child is None:
            pending.append(signum)
            return
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        child = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=_die_with_parent(os.getpid()),
        )
        for signum in pending:
            child.send_signal(signum)
        selector = selectors.DefaultSelector()
        selector.register(child.stdout, selectors.EVENT_READ, (Lines(), out if console_all else None))
        selector.register(child.stderr, selectors.EVENT_READ, (Lines(), err))
        while selector.get_map():
            for key, _ in selector.select():
                lines, console = key.data
                chunk = os.read(key.fd, 65536)
                if chunk:
                    data = lines.feed(chunk)
                else:
                    selector.unregister(key.fileobj)
                    data = lines.finish()
                if data:
                    log.write(data)
                    if console is not None:
                        console.write(data)
        selector.close()
        return exit_status(child.wait(), stop_requested=bool(stopping))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sisock-crossbar", description=__doc__.splitlines()[0])
    parser.add_argument("--cbdir", default=".crossbar",
                        help=f"router state folder, also holding its log {LOG_NAME} (default: .crossbar)")
    parser.add_argument("--no-hub", action="store_true", help="run the router only (hub started separately)")
    parser.add_argument("--tls-dir", metavar="DIR",
                        help="use the server_cert.pem and server_key.pem already in DIR (may be read-only) "
                             "instead of creating a pair in --cbdir")
    parser.add_argument("--console", choices=CONSOLE_CHOICES, default=CONSOLE_CHOICES[0],
                        help=f"what crossbar shows on the console: its warnings and errors, or all it logs at "
                             f"LOGLEVEL; either way every line goes to CBDIR/{LOG_NAME} (default: warnings)")
    return parser


def planned_config(argv, env) -> dict:
    """The configuration ``sisock-crossbar argv`` writes in environment
    ``env``, without touching any file: what a deployment can commit and
    review (the compose file's router configuration is checked this way)."""
    args = build_parser().parse_args(argv)
    certificate, key = certificate_paths(args.tls_dir)
    return router_config.build(Settings.from_env(env), with_hub=not args.no_hub, certificate=certificate, key=key)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        settings.check_router_secret()
        command = prepare(args.cbdir, settings, with_hub=not args.no_hub, tls_dir=args.tls_dir)
        path = log_path(args.cbdir)
        log = RotatingLog(path, report=lambda text: print(text, file=sys.stderr, flush=True))
    except (ConfigError, OSError) as exc:
        print(f"sisock-crossbar: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    log.write(f"---- sisock-crossbar started at {stamp} (pid {os.getpid()}, LOGLEVEL {settings.loglevel})\n"
              .encode())
    warning = settings.secret_warning(settings.bind_host)
    if warning:
        line = f"sisock-crossbar: WARNING: {warning}"
        print(line, file=sys.stderr, flush=True)
        log.write((line + "\n").encode())
    if args.console != CONSOLE_CHOICES[0]:
        print(f"sisock-crossbar: crossbar's log also goes to {path}", flush=True)
    else:
        print(f"sisock-crossbar: crossbar's log (LOGLEVEL {settings.loglevel}) goes to {path}; "
              "only its warnings and errors show here (--console all shows everything)", flush=True)
    # Unbuffered: crossbar's stdout is a pipe now, and its lines must reach
    # the file when written, in order with those of its stderr.
    env = dict(os.environ, WAMP_SECRET=settings.wamp_secret, PYTHONUNBUFFERED="1")
    try:
        code = supervise(command, env, log, console_all=args.console != CONSOLE_CHOICES[0])
    finally:
        log.close()
    raise SystemExit(code)
