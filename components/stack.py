"""``sisock up``: the whole stack on one machine, for development and demos.

Each component stays the process its console script makes it in production
(router, bridge, every DataNodeServer), so what runs here is what runs in
containers; this module only adds what a developer would otherwise do by hand
in several terminals: a certificate, the right environment, restarts with
backoff, and one log stream with every line tagged by the process it came
from.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import sys
import textwrap
from collections.abc import Mapping

from twisted.application import service
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.error import (
    ConnectError,
    DNSLookupError,
    ProcessExitedAlready,
    ReactorNotRunning,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LogLevel, formatEvent, globalLogBeginner
from twisted.runner.procmon import ProcessMonitor

from sisock import server_registry
from sisock.components.http.influxql.catalog import DATABASE as INFLUX_DATABASE
from sisock.config import MAX_SOCKET_PATH, ConfigError, Settings

ROUTER = "crossbar"
#: The router's UNIX socket, in its folder (see :func:`default_socket`).
SOCKET_NAME = "router.sock"
BRIDGE = "http"

class _Servers(Mapping):
    """``--servers`` short name -> the commands it starts (companions first,
    the server's console script last), read from the one table of servers
    (:mod:`sisock.server_registry`) on every access, never copied: the CLI
    help, the error for unknown names and the launcher can then never
    disagree with it, nor with what setup.py installs."""

    def _table(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        return {server.name: server.commands for server in server_registry.SERVERS}

    def __getitem__(self, name: str) -> tuple[tuple[str, ...], ...]:
        return self._table()[name]

    def __iter__(self):
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


SERVERS: Mapping[str, tuple[tuple[str, ...], ...]] = _Servers()

NONE = "none"
DEFAULT_SERVERS = "weather,sensors,g3-reader"
DEMO_DAYS = 3
DEFAULT_STATE_DIR = ".sisock"
#: ``--router-console``: passed to ``sisock-crossbar --console`` (first: the default).
ROUTER_CONSOLE = ("warnings", "all")

ROUTER_TIMEOUT = 30.0
#: Children get TERM, then KILL after this many seconds; crossbar needs a few
#: seconds to take its worker processes down.
KILL_TIME = 10.0
#: Signals that stop the stack: Ctrl-C, ``kill``, and the terminal closing.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: Run before each child's own program (``python -c LAUNCH <our pid> argv...``):
#: a session of its own, without the terminal, so a Ctrl-C reaches only
#: ``sisock up``, which then stops the clients before the router (the
#: terminal would signal every process at once, and clients that outlive
#: the router log reconnect attempts), and nothing a child writes to
#: /dev/tty (crossbar writes a newline there to test it) bypasses the tagged
#: log; and, on Linux, SIGTERM when ``sisock up`` dies, even by SIGKILL, so
#: no child outlives it. Standard library only, since it runs for every
#: start and restart.
LAUNCH = textwrap.dedent("""\
    import os, sys
    os.setsid()
    try:
        import ctypes, signal
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (ImportError, OSError, AttributeError):
        pass  # not Linux
    if os.getppid() != int(sys.argv[1]):
        os._exit(1)  # sisock up died before the request was made
    os.execv(sys.argv[2], sys.argv[2:])
""")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
log = Logger(namespace="sisock")


class StackError(Exception):
    """Something the user must fix before the stack can start."""


# ---------------------------------------------------------------- planning


def _child_name(script: str) -> str:
    return script.removeprefix("sisock-").removesuffix("-server")


def parse_servers(text: str) -> list[str]:
    """Short names in the order given, duplicates dropped; [] for ``none``."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if names == [NONE]:
        return []
    unknown = [n for n in names if n not in SERVERS]
    if unknown or not names:
        valid = ", ".join(sorted(SERVERS)) + f" (or {NONE})"
        what = f"unknown server {unknown[0]!r}" if unknown else "no server named"
        raise StackError(f"{what}; valid --servers names: {valid}")
    return list(dict.fromkeys(names))


def find_script(script: str) -> str | None:
    """The console script installed with *this* sisock (next to its Python);
    a script of another installation found first on PATH would run other
    code against the same router."""
    beside = os.path.join(os.path.dirname(sys.executable), script)
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which(script)


def plan(servers: list[str], cbdir: str, router_console: str = ROUTER_CONSOLE[0]) -> list[tuple[str, list[str]]]:
    """``(name, argv)`` for every child, router first."""
    router = ("sisock-crossbar", "--cbdir", cbdir)
    if router_console != ROUTER_CONSOLE[0]:
        router += ("--console", router_console)
    wanted = [(None, router), (None, ("sisock-http",))]
    wanted += [(short, command) for short in servers for command in SERVERS[short]]
    children, seen = [], set()
    for short, (script, *args) in wanted:
        name = {"sisock-crossbar": ROUTER, "sisock-http": BRIDGE}.get(script) or _child_name(script)
        if name in seen:
            continue
        seen.add(name)
        path = find_script(script)
        if path is None:
            needed = f"server {short!r} needs" if short else "the stack needs"
            raise StackError(
                f"{needed} the console script {script}, which is not installed "
                f"(install sisock with the extras it needs, e.g. pip install -e '.[all]')"
            )
        children.append((name, [path, *args]))
    return children


def child_environment(cbdir: str, env=None) -> dict[str, str]:
    """The environment of ``sisock up`` itself, so WAMP_*, CROSSBAR_*, PORT,
    ... reach every child unchanged; only what the stack owns is added."""
    env = dict(os.environ if env is None else env)
    env.setdefault("SISOCK_CERT", os.path.join(os.path.abspath(cbdir), "server_cert.pem"))
    # Children write into pipes; unbuffered, their lines show up when written.
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def default_socket(cbdir: str) -> str:
    """The router's UNIX socket in its folder, which every child of the
    stack shares; none (TLS only) where that path is too long to bind."""
    path = os.path.join(os.path.abspath(cbdir), SOCKET_NAME)
    return path if len(path.encode()) <= MAX_SOCKET_PATH else ""


def _local(host: str) -> str:
    """Where to reach, from this machine, a socket bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def check_ports(settings: Settings) -> None:
    """Fail before starting anything if a port is taken: otherwise the router
    or the bridge would crash-loop on 'address in use' while a stranger
    answers the clients."""
    ports = [
        (settings.tls_port, "CROSSBAR_TLS_PORT", "router TLS"),
        (settings.ocs_port, "CROSSBAR_OCS_PORT", "router OCS"),
        (settings.http_port, "PORT", "HTTP bridge"),
    ]
    used = {}
    for port, var, _ in ports:
        if port and port in used:
            raise StackError(f"{var} and {used[port]} are both {port}; give them different ports")
        used[port] = var
    host = settings.bind_host
    for port, var, what in ports:
        if not port:
            continue
        problem = _listen_problem(host, port)
        if problem == errno.EADDRINUSE:
            raise StackError(
                f"port {port} ({var}, {what}) on {host} is already in use by another program; "
                f"stop it or set {var} to a free port"
            )
        if problem is not None:
            raise StackError(f"cannot listen on {host}:{port} ({var}): {os.strerror(problem)}")


def _listen_problem(host: str, port: int) -> int | None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StackError(f"cannot resolve BIND_HOST {host!r}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # Same option the router and bridge use, so connections of a previous
        # run lingering in TIME_WAIT do not count as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
            probe.listen(1)
        except OSError as exc:
            return exc.errno
    return None


# ------------------------------------------------------------- supervision


class Supervisor(ProcessMonitor):
    """ProcessMonitor that says when and why a child died, so a crash loop
    is visible in the log instead of only as a silently restarting process."""

    threshold = 10  # a child dying sooner than this doubles its restart delay
    killTime = KILL_TIME
    minRestartDelay = 1
    maxRestartDelay = 30

    def _monitoredProcessExited(self, name, reason=None):
        super()._monitoredProcessExited(name, reason)
        if not self.running:
            return
        status = getattr(reason, "value", None)
        code, sig = getattr(status, "exitCode", None), getattr(status, "signal", None)
        why = f"killed by signal {sig}" if sig else f"exit code {code}"
        pending = self.restart.get(name)
        if pending is not None and pending.active():
            delay = max(0.0, pending.getTime() - self._clock.seconds())
            log.emit(
                LogLevel.warn, "{name} stopped ({why}); restarting in {delay:.0f} s",
                name=name, why=why, delay=delay,
            )

    def addProcess(self, name, args, uid=None, gid=None, env={}, cwd=None):  # noqa: B006 - the base's signature
        """Restarts reuse what is stored here, so they go through LAUNCH too."""
        super().addProcess(name, launched(args), uid=uid, gid=gid, env=env, cwd=cwd)

    def stop_in_order(self, last: tuple[str, ...]):
        """Stop everything, ``last`` after all others are gone: clients that
        lose the router first only fill the log with reconnect attempts."""
        # What ProcessMonitor.stopService does, minus stopping everything at once.
        service.Service.stopService(self)
        for pending in self.restart.values():
            if pending.active():
                pending.cancel()
        names = list(self.delay)  # every process ever added
        first = [n for n in names if n not in last]
        d = defer.succeed(None)
        for group in (first, list(last)):
            d.addCallback(lambda _, group=group: self._terminate(group))
            d.addCallback(lambda _, group=group: self._until_gone(group, self.killTime + 5))
        return d

    def _terminate(self, names):
        for name in names:
            if name in self.protocols:
                self.stopProcess(name)  # TERM now, KILL after killTime

    def _until_gone(self, names, limit):
        deadline = self._clock.seconds() + limit

        def check():
            alive = [n for n in names if n in self.protocols]
            if alive and self._clock.seconds() < deadline:
                return task.deferLater(self._clock, 0.1, check)
            return None

        return defer.maybeDeferred(check)


def launched(argv: list[str]) -> list[str]:
    """``argv`` run through :data:`LAUNCH`."""
    return [sys.executable, "-I", "-S", "-c", LAUNCH, str(os.getpid()), *argv]


class _Probe(Factory):
    noisy = False  # otherwise every attempt logs "Starting factory"
    protocol = Protocol


def wait_for_port(host: str, port: int, timeout: float, clock=reactor, socket_path: str = ""):
    """Fires True once ``host:port`` (or the UNIX socket ``socket_path``)
    accepts a connection, False after ``timeout`` seconds."""
    deadline = clock.seconds() + timeout

    def endpoint():
        if socket_path:
            return UNIXClientEndpoint(clock, socket_path, timeout=2)
        return HostnameEndpoint(clock, host, port, timeout=2)

    @defer.inlineCallbacks
    def poll():
        while True:
            try:
                proto = yield endpoint().connect(_Probe())
            except (ConnectError, DNSLookupError):
                if clock.seconds() >= deadline:
                    return False
                yield task.deferLater(clock, 0.25, lambda: None)
            else:
                proto.transport.abortConnection()
                return True

    return poll()


class _Printer:
    """One line per event, tagged with the process it came from. ProcessMonitor
    logs every line a child writes with the fields ``tag`` and ``line``; those
    are always shown, since each child already applied LOGLEVEL itself."""

    def __init__(self, stream, width: int, level: LogLevel):
        self.stream = stream
        self.width = width
        self.level = level
        self.plain = not getattr(stream, "isatty", lambda: False)()

    def __call__(self, event):
        if "tag" in event and "line" in event and "stream" in event:
            tag, text = event["tag"], event["line"]
            if not text.strip():
                # ProcessMonitor flushes an empty line whenever a child ends.
                return
        else:
            if event.get("log_level", LogLevel.info) < self.level:
                return
            tag, text = "sisock", formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
        if self.plain:
            text = _ANSI.sub("", text)
        prefix = f"{tag:<{self.width}} | "
        self.stream.write("".join(prefix + line + "\n" for line in text.rstrip("\n").split("\n")))
        self.stream.flush()


def _start_logging(width: int, level: str):
    threshold = LogLevel.levelWithName(level if level != "trace" else "debug")
    globalLogBeginner.beginLoggingTo([_Printer(sys.stdout, width, threshold)], redirectStandardIO=False)


# ------------------------------------------------------------------ running


class Stack:
    def __init__(self, settings: Settings, state_dir: str, children, env, servers, router_log: str | None = None,
                 router_console: str = ROUTER_CONSOLE[0]):
        self.settings = settings
        self.state_dir = state_dir
        self.children = children
        self.env = env
        self.servers = servers
        self.router_log = router_log
        self.router_console = router_console
        self.supervisor = Supervisor(reactor=reactor)
        self.exit_code = 0
        self.stopping = False

    def run(self) -> int:
        _start_logging(max(len("sisock"), *(len(child[0]) for child in self.children)), self.settings.loglevel)
        reactor.callWhenRunning(self._start)
        reactor.addSystemEventTrigger("before", "shutdown", self._shutdown)
        reactor.run()
        return self.exit_code

    @defer.inlineCallbacks
    def _start(self):
        # Replaces the handlers Twisted installed, so a second Ctrl-C kills
        # instead of raising "reactor not running".
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        (router, router_argv, *_), *others = self.children
        self.supervisor.addProcess(router, router_argv, env=self.env)
        self.supervisor.startService()
        host, port = _local(self.settings.bind_host), self.settings.tls_port
        log.info("waiting for the router on {host}:{port}", host=host, port=port)
        ready = yield wait_for_port(host, port, ROUTER_TIMEOUT)
        if ready and self.settings.router_socket:
            # Its last transport: open once the servers' socket accepts.
            ready = yield wait_for_port(host, port, ROUTER_TIMEOUT, socket_path=self.settings.router_socket)
        if self.stopping:
            return
        if not ready:
            log.error(
                "the router did not open port {port} within {timeout:.0f} s; see its lines above and {where}",
                port=port, timeout=ROUTER_TIMEOUT, where=self.router_log or "its log",
            )
            self.exit_code = 1
            reactor.stop()
            return
        for name, argv, *extra in others:
            self.supervisor.addProcess(name, argv, env={**self.env, **(extra[0] if extra else {})})
        self._banner()

    def _banner(self):
        s = self.settings
        here = _local(s.bind_host)
        router_log = []
        if self.router_log:
            quiet = self.router_console == ROUTER_CONSOLE[0]
            shown = "   (only its warnings and errors are shown here)" if quiet else ""
            router_log = [f"router log          {self.router_log}{shown}"]
        lines = [
            f"HTTP bridge         http://{here}:{s.http_port}   (Grafana: Infinity, SimpleJson, JSON; "
            "a browser gets the quicklook page)",
            f"InfluxDB (InfluxQL) http://{here}:{s.http_port}/influxdb   database {INFLUX_DATABASE} "
            "(Grafana's built-in InfluxDB datasource)",
            f"router              {s.router_url}   realm {s.realm}, user {s.wamp_user}",
            *([f"router socket       unix:{s.router_socket}   (the stack's servers join here, without TLS)"]
              if s.router_socket else []),
            f"router certificate  {self.env['SISOCK_CERT']}",
            *router_log,
            f"OCS (anonymous)     ws://{here}:{s.ocs_port}/ws",
            f"state dir           {self.state_dir}",
            f"servers             {', '.join(self.servers) or NONE}",
            "Ctrl-C to stop",
        ]
        print("\n".join(["", "sisock is up", *("  " + line for line in lines), ""]), flush=True)

    def _on_signal(self, signum, frame):
        # Runs between two bytecodes of whatever the reactor was doing; the
        # work itself is handed to the reactor.
        reactor.callFromThread(self._kill if self.stopping else self._stop)
        self.stopping = True

    def _stop(self):
        log.info("stopping (Ctrl-C again to kill)")
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass  # already on its way down

    def _kill(self):
        """A second interrupt: the user does not want to wait. Each child
        leads a process group (its session's), which holds whatever it
        started itself."""
        for proto in list(self.supervisor.protocols.values()):
            pid = getattr(proto.transport, "pid", None)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (TypeError, OSError):  # gone, or not yet in its own session
                try:
                    proto.transport.signalProcess("KILL")
                except ProcessExitedAlready:
                    pass

    def _shutdown(self):
        self.stopping = True
        d = self.supervisor.stop_in_order(last=(ROUTER,))
        d.addCallback(lambda _: log.info("all processes stopped"))
        return d


def run(args) -> int:
    try:
        state_dir = os.path.abspath(args.state_dir)
        cbdir = os.path.join(state_dir, "crossbar")
        # Given to the router and every child, not put into this process's
        # own environment: a later stack in the same process (the unit
        # tests) must choose its own socket.
        owned = {} if "SISOCK_ROUTER_SOCKET" in os.environ else {"SISOCK_ROUTER_SOCKET": default_socket(cbdir)}
        settings = Settings.from_env({**os.environ, **owned})
        settings.check_router_secret()
        if not os.environ.get("CROSSBAR_HOST"):
            # Children reach the router where it listens; the certificate
            # made below names this address too.
            os.environ["CROSSBAR_HOST"] = _local(settings.bind_host)
            settings = Settings.from_env({**os.environ, **owned})
        servers = parse_servers(args.servers)
        router_console = getattr(args, "router_console", ROUTER_CONSOLE[0])
        children = plan(servers, cbdir, router_console)
        check_ports(settings)
        # Imported here: it needs crossbar's extra ([router]), which only
        # this subcommand requires.
        from .crossbar import log_path, prepare

        prepare(cbdir, settings)
    except (StackError, ConfigError, OSError) as exc:
        print(f"sisock up: {exc}", file=sys.stderr)
        return 2
    env = {**child_environment(cbdir), **owned}
    env.setdefault("SISOCK_STATE_DIR", state_dir)
    if "g3-reader" in servers and not env.get("DATA_DIRECTORY"):
        try:
            env.update(g3_demo_environment(state_dir))
        except ImportError as exc:
            print(f"sisock up: the g3 demo needs so3g ({exc}); install sisock[g3] or leave out g3-reader",
                  file=sys.stderr)
            return 2
    if getattr(args, "ocs_demo", False):
        try:
            children += ocs_demo_children(state_dir, settings)
        except (ImportError, StackError) as exc:
            print(f"sisock up: --ocs-demo needs the ocs package ({exc}); install sisock[ocs]", file=sys.stderr)
            return 2
        servers = [*servers, "ocs-demo"]
    if getattr(args, "archives_demo", False):
        demo = archives_demo_children(state_dir)
        names = {name for name, *_ in demo}
        children = [child for child in children if child[0] not in names] + demo
        servers = [*servers, "archives-demo"]
    return Stack(settings, state_dir, children, env, servers, log_path(cbdir), router_console).run()


def archives_demo_children(state_dir: str) -> list[tuple]:
    """The APEX weather and UCSC radiometer servers on example archives
    written afresh (ending now) into the state folder."""
    from sisock.demo.archives import write_demo

    folder = os.path.join(state_dir, "archives-demo")
    print(f"sisock up: example APEX weather and UCSC radiometer archives in {folder}", flush=True)
    write_demo(folder, days=7)
    out = []
    for short in ("apex-weather", "ucsc-radiometer"):
        ((script, *extra),) = SERVERS[short]
        path = find_script(script)
        if path is None:
            raise StackError(f"{script} is not installed")
        out.append((_child_name(script), [path, *extra], {"DATA_DIRECTORY": folder}))
    return out


#: The demo OCS agent and the data-feed server that serves its feed.
DEMO_AGENT = "fake-data1"
DEMO_FEED = "false_temperatures"


def ocs_demo_children(state_dir: str, settings: Settings) -> list[tuple]:
    """A real OCS FakeDataAgent publishing through the router's OCS port, and
    a data-feed server for its feed: a live OCS feed end to end."""
    from .ocs_site import AgentSpec, agent_argv, write_site_config

    feed_script = server_registry.get("data-feed").script
    cli = find_script("ocs-agent-cli")
    feed = find_script(feed_script)
    if cli is None or feed is None:
        raise StackError(f"ocs-agent-cli or {feed_script} is not installed")
    agent = AgentSpec(DEMO_AGENT, "FakeDataAgent", ["--mode", "acq", "--num-channels", "4", "--sample-rate", "5"])
    site = write_site_config(os.path.join(state_dir, "ocs"), settings.ocs_port, [agent],
                             router_host=_local(settings.bind_host))
    feed_env = {"TARGET": DEMO_AGENT, "FEED": DEMO_FEED, "NAME": "fake_data1",
                "DESCRIPTION": "OCS FakeDataAgent (demo)", "BUFFER_TIME": os.environ.get("BUFFER_TIME") or "3600"}
    return [("fake-data", agent_argv(cli, site, DEMO_AGENT)), ("ocs-feed", [feed], feed_env)]


def g3_demo_environment(state_dir: str) -> dict[str, str]:
    """Without a DATA_DIRECTORY of their own, scanner and g3-reader serve a
    demo archive (written once, ending now) indexed in SQLite, so the g3 path
    can be seen without MariaDB or real data."""
    from sisock.demo.g3 import demo_archive

    folder = os.path.join(state_dir, "g3-demo")
    print(f"sisock up: demo g3 archive in {folder} (written on first run)", flush=True)
    demo_archive(folder, days=DEMO_DAYS)
    return {"DATA_DIRECTORY": folder, "SCAN_INTERVAL": os.environ.get("SCAN_INTERVAL") or "60"}
