"""One way to start a DataNodeServer's process: :func:`run`.

Every server's console script does the same things, and their order is
part of what the scripts promise. Every setting is read and checked first,
so that a mistake ends the process at once with one line on standard error
(``<script>: <problem>``) and exit status 2, with no traceback and no retry
loop. Then comes the work done once per process, which may wait (for an
index database, say). Only then the connection to the router, which
reconnects for as long as the process runs. Written once here, the scripts
cannot drift apart, and a server's module holds only its settings and its
domain logic.

A server class tells :func:`run` what it needs through class attributes,
all optional, so any :class:`~sisock.base.DataNodeServer` can be run:

``script``
    the console script's name, for usage lines and error messages
    (default: the name the process was started as);
``settings``
    a sequence of :class:`Setting`: its command-line arguments and
    environment variables, each read and checked before anything starts;
``slow_start``
    True when ``prepare`` may wait. The router's certificate is then checked
    and logging started before it, so a wrong certificate path is reported
    at once rather than after the wait, and the wait itself is logged;
``switch_interval``
    seconds, for a server whose threads compute for milliseconds at a time
    (decoding, decimating): the interpreter's switch interval, at which a
    thread holding the GIL is made to hand it over. Python's 5 ms makes a
    server's busy threads trade the GIL back and forth in the middle of
    their answers; a longer interval lets each finish first. Unset: the
    interpreter's default;
``prepare(settings)``
    a classmethod doing the once-per-process work (load an archive, open an
    index, start a sampler) and returning the keyword arguments of every
    session. Sessions are made afresh on each reconnection, so whatever must
    outlive one (buffers, caches) is made here. Without it, each setting is
    passed as the keyword argument of its name.

The command's description (``--help``) is the first paragraph of the class
docstring.

Every :class:`~sisock.base.DataNodeServer` run here also takes
``--shared POLICY`` (or ``SISOCK_SHARED=POLICY``, the flag winning), read
by the runtime and not declared by the server: its sessions then set
:attr:`~sisock.base.DataNodeServer.shared`, so that several processes serve
one name, the router handing each call to one of them (``roundrobin`` or
``random``). Unset or empty, the name is this process's alone.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import Any, NoReturn

from sisock import config, connect, contract
from sisock.base import DataNodeServer

#: What reading a setting or preparing the process may raise for a reason the
#: user must fix (ConfigError is a ValueError): reported in one line, exit 2.
REFUSALS = (ValueError, OSError)


class Setting:
    """One thing a server must know before it starts.

    ``read`` takes the environment (a mapping) and returns the checked
    value, raising :class:`~sisock.config.ConfigError` with a message naming
    the variable; the parsers of :mod:`sisock.config` serve as they are
    (``config.max_points``) or in a lambda
    (``lambda env: config.positive_number("G3_CACHE_MB", 512, env)``).
    ``flag`` makes it a command-line argument, with ``options`` passed to
    ``argparse``; with both, a value given on the command line wins.
    """

    def __init__(self, name: str, read: Callable[[Mapping[str, str]], Any] | None = None, *,
                 flag: str | None = None, **options):
        if read is None and flag is None:
            raise TypeError(f"setting {name!r} needs a reader, a flag or both")
        self.name = name
        self.read = read
        self.flag = flag
        self.options = options

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.flag is None:
            return
        # With a reader, "not on the command line" must be told apart from any value.
        options = {"default": None, **self.options} if self.read is not None else self.options
        parser.add_argument(self.flag, dest=self.name, **options)

    def value(self, args: argparse.Namespace, env: Mapping[str, str]):
        if self.flag is not None:
            given = getattr(args, self.name)
            if given is not None or self.read is None:
                return given
        return self.read(env)

    def __repr__(self):
        return f"Setting({self.name!r}{', ' + self.flag if self.flag else ''})"


#: The variable of :data:`SHARED`.
SHARED_VARIABLE = "SISOCK_SHARED"


def shared_policy(env: Mapping[str, str]) -> str | None:
    """``SISOCK_SHARED``: the invocation policy of a shared name, None
    (unset or empty) for a name served by one process."""
    try:
        return contract.shared_policy((env.get(SHARED_VARIABLE) or "").strip())
    except ValueError as exc:
        raise config.ConfigError(f"{SHARED_VARIABLE} {exc}") from None


#: The setting the runtime reads for every DataNodeServer. Its help is
#: the epilog of ``--help`` (see :func:`argument_parser`), so that the
#: usage line stays the server's own.
SHARED = Setting("shared", shared_policy, flag="--shared", metavar="POLICY", choices=contract.SHARED_POLICIES,
                 help=argparse.SUPPRESS)

SHARED_HELP = (f"Every DataNodeServer also takes --shared POLICY (or {SHARED_VARIABLE}=POLICY): serve the name "
               f"together with the other processes started with the same POLICY, the router handing each call "
               f"to one of them ({' or '.join(contract.SHARED_POLICIES)}).")


def description(server) -> str | None:
    """The first paragraph of the server class's own docstring, on one line.
    Its own: an inherited one describes some other command."""
    doc = server.__dict__.get("__doc__") if isinstance(server, type) else None
    if not doc:
        return None
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def prog_name(server) -> str:
    return getattr(server, "script", None) or os.path.basename(sys.argv[0])


def declared(server) -> Iterable[Setting]:
    return getattr(server, "settings", ()) if isinstance(server, type) else ()


def common(server) -> tuple[Setting, ...]:
    """The settings the runtime reads itself: :data:`SHARED` for a DataNodeServer."""
    return (SHARED,) if isinstance(server, type) and issubclass(server, DataNodeServer) else ()


def argument_parser(server) -> argparse.ArgumentParser:
    extra = common(server)
    parser = argparse.ArgumentParser(prog=prog_name(server), description=description(server),
                                     epilog=SHARED_HELP if SHARED in extra else None)
    for setting in (*declared(server), *extra):
        setting.add_to(parser)
    return parser


def read_settings(server, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> SimpleNamespace:
    """Every declared setting, read and checked; raises on the first bad one."""
    env = os.environ if env is None else env
    return SimpleNamespace(**{setting.name: setting.value(args, env) for setting in declared(server)})


def read_common(server, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> SimpleNamespace:
    """The runtime's own settings (:func:`common`), read and checked."""
    env = os.environ if env is None else env
    return SimpleNamespace(**{setting.name: setting.value(args, env) for setting in common(server)})


def shared_sessions(make: Callable, policy: str) -> Callable:
    """A session factory making ``make``'s sessions with ``shared = policy``."""

    def make_shared(config=None):
        session = make(config)
        session.shared = policy
        return session

    return make_shared


def session_arguments(server, settings: SimpleNamespace) -> dict:
    prepare = getattr(server, "prepare", None) if isinstance(server, type) else None
    if prepare is None:
        return dict(vars(settings))
    return prepare(settings)


def refuse(prog: str, problem: Exception) -> NoReturn:
    print(f"{prog}: {problem}", file=sys.stderr)
    raise SystemExit(2)


def run(server, argv: list[str] | None = None) -> NoReturn:
    """Run ``server`` (a DataNodeServer class, or any session factory) as a
    console script's process until it is stopped; exits with its status:
    0 when stopped, 2 for a setting or a start-up problem, 3 when the router
    refuses the login."""
    prog = prog_name(server)
    args = argument_parser(server).parse_args(argv)
    slow = bool(getattr(server, "slow_start", False))
    try:
        router = config.Settings.from_env()
        settings = read_settings(server, args)
        runtime_settings = read_common(server, args)
        if slow:
            connect.load_trust(router)
    except REFUSALS as exc:
        refuse(prog, exc)
    if slow:
        connect.start_logging(router)
    try:
        kwargs = session_arguments(server, settings)
    except REFUSALS as exc:
        refuse(prog, exc)
    interval = getattr(server, "switch_interval", None)
    if interval:
        sys.setswitchinterval(interval)
    make = functools.partial(server, **kwargs) if kwargs else server
    policy = getattr(runtime_settings, "shared", None)
    if policy is not None:
        make = shared_sessions(make, policy)
    # connect.run reads the router's settings again (they were only checked
    # above) and reports a missing certificate in the same one-line way.
    raise SystemExit(connect.run(make))
