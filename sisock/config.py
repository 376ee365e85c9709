"""Settings read from the environment.

Every process of a deployment (router, hub, bridge, each DataNodeServer) is
configured by the same variables, so they are read in exactly one place.
``Settings.from_env()`` is evaluated when called, not at import, so tests and
the local stack can point a process at another router by changing the
environment of the child they start.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field

# The WAMP contract defines both; the router configuration reads BASE_URI from here.
from sisock.contract import BASE_URI, REALM  # noqa: F401

#: The development secret the original sisock shipped with. Kept as the
#: default so that routers and servers of existing deployments keep talking to
#: each other; it is public, so it is refused off loopback unless explicitly
#: allowed (see :meth:`Settings.check_router_secret`).
DEFAULT_WAMP_SECRET = "Q5#x4%HCmgTsS!Pj"
DEFAULT_WAMP_USER = "server"

LOG_LEVELS = ("critical", "error", "warn", "info", "debug", "trace")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _int(env, name, default):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name} must be a port number (0-65535), got {value}")
    return value


def is_loopback(host: str) -> bool:
    """True if ``host`` names this machine only (no one else can reach it)."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos
    )


#: The longest path a UNIX socket can be bound at (``sun_path`` less its NUL).
MAX_SOCKET_PATH = 107


def router_socket(env) -> str:
    """``SISOCK_ROUTER_SOCKET``: the router's UNIX socket, as an absolute path.

    Processes on the router's host reach it there without TLS: the socket
    never leaves the host, WAMP-CRA still admits only the ``server``
    principal, and a call skips the TLS work of every process it crosses
    (``benchmarks/wamp_call.py`` compares the two transports)."""
    raw = (env.get("SISOCK_ROUTER_SOCKET") or "").strip()
    if not raw:
        return ""
    path = os.path.abspath(raw)
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise ConfigError(f"SISOCK_ROUTER_SOCKET {path} is longer than the {MAX_SOCKET_PATH} bytes a UNIX "
                          "socket path may have: choose a shorter path")
    return path


@dataclass(frozen=True)
class Settings:
    wamp_user: str = DEFAULT_WAMP_USER
    wamp_secret: str = DEFAULT_WAMP_SECRET
    crossbar_host: str = "127.0.0.1"
    tls_port: int = 8080
    ocs_port: int = 8001
    cert: str = os.path.join(".crossbar", "server_cert.pem")
    http_port: int = 5000
    bind_host: str = "127.0.0.1"
    loglevel: str = "info"
    allow_default_secret: bool = False
    #: The router's UNIX socket for processes on its host (empty: none).
    router_socket: str = ""
    realm: str = REALM
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_env(cls, env=None) -> Settings:
        env = os.environ if env is None else env
        loglevel = log_level(env)
        return cls(
            wamp_user=env.get("WAMP_USER") or DEFAULT_WAMP_USER,
            wamp_secret=env.get("WAMP_SECRET") or DEFAULT_WAMP_SECRET,
            crossbar_host=env.get("CROSSBAR_HOST") or "127.0.0.1",
            tls_port=_int(env, "CROSSBAR_TLS_PORT", 8080),
            ocs_port=_int(env, "CROSSBAR_OCS_PORT", 8001),
            cert=env.get("SISOCK_CERT") or os.path.join(".crossbar", "server_cert.pem"),
            http_port=_int(env, "PORT", 5000),
            bind_host=env.get("BIND_HOST") or "127.0.0.1",
            loglevel=loglevel,
            allow_default_secret=(env.get("SISOCK_ALLOW_DEFAULT_SECRET") or "").lower() in ("1", "yes", "true"),
            router_socket=router_socket(env),
        )

    @property
    def router_url(self) -> str:
        host = self.crossbar_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"wss://{host}:{self.tls_port}/ws"

    @property
    def router_address(self) -> str:
        """Where clients join, as logs and error messages name it."""
        return f"unix:{self.router_socket}" if self.router_socket else self.router_url

    @property
    def uses_default_secret(self) -> bool:
        return self.wamp_secret == DEFAULT_WAMP_SECRET

    def check_router_secret(self) -> None:
        """Refuse to guard a router other machines can reach with the public
        default secret: anyone who read the original sources could join as a
        data node. ``SISOCK_ALLOW_DEFAULT_SECRET=1`` overrides, for a closed
        network that still runs old components."""
        if self.uses_default_secret and not is_loopback(self.bind_host) and not self.allow_default_secret:
            raise ConfigError(
                f"WAMP_SECRET is the public development default and BIND_HOST={self.bind_host} is reachable "
                "from other machines: set WAMP_SECRET (router and every server), or SISOCK_ALLOW_DEFAULT_SECRET=1"
            )

    def secret_warning(self, host: str | None = None) -> str | None:
        """A warning to print when the public default secret guards a router
        that other machines can reach; None when there is nothing to say."""
        host = self.crossbar_host if host is None else host
        if self.uses_default_secret and not is_loopback(host):
            return (
                f"WAMP_SECRET is the public development default but the router at {host} "
                "is reachable from other machines: set WAMP_SECRET on the router and every server"
            )
        return None


def data_directory(env=None, what: str = "the archive's top folder") -> str:
    """``DATA_DIRECTORY``, which archive readers cannot start without."""
    env = os.environ if env is None else env
    path = env.get("DATA_DIRECTORY")
    if not path:
        raise ConfigError(f"DATA_DIRECTORY is not set: point it at {what}")
    if not os.path.isdir(path) or not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(f"DATA_DIRECTORY {path} is not a readable folder")
    return path


def max_points(env=None) -> int | None:
    """``MAX_POINTS``: the cap on points per field in one reply (None: no cap).
    At least 2, because each bucket keeps its minimum and maximum."""
    env = os.environ if env is None else env
    if env.get("MAX_POINTS") in (None, ""):
        return None
    return whole_number("MAX_POINTS", 0, env, minimum=2)


def log_level(env=None) -> str:
    """``LOGLEVEL`` as txaio names it (``warning`` accepted for ``warn``)."""
    env = os.environ if env is None else env
    level = (env.get("LOGLEVEL") or "info").lower()
    level = "warn" if level == "warning" else level
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOGLEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return level


def positive_number(name: str, default: float, env=None) -> float:
    """A positive number of seconds, megabytes, ... from ``name``."""
    env = os.environ if env is None else env
    raw = env.get(name)
    if raw in (None, ""):
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def whole_number(name: str, default: int, env=None, minimum: int = 1) -> int:
    """A whole number of at least ``minimum`` (bytes, points, ...) from ``name``."""
    env = os.environ if env is None else env
    raw = env.get(name)
    if raw in (None, ""):
        return int(default)
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True, repr=False)
class HttpAuth:
    """Credentials the HTTP bridge requires (``HTTP_AUTH_USER`` with
    ``HTTP_AUTH_PASSWORD`` for basic auth, ``HTTP_AUTH_TOKEN`` for a bearer
    token; either or both). Nothing set: no authentication. The repr never
    shows a secret, so the object can be logged."""

    user: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def from_env(cls, env=None) -> HttpAuth:
        env = os.environ if env is None else env
        user = env.get("HTTP_AUTH_USER") or None
        password = env.get("HTTP_AUTH_PASSWORD") or None
        token = env.get("HTTP_AUTH_TOKEN") or None
        if (user is None) != (password is None):
            missing = "HTTP_AUTH_PASSWORD" if password is None else "HTTP_AUTH_USER"
            raise ConfigError(f"basic authentication needs both HTTP_AUTH_USER and HTTP_AUTH_PASSWORD: set {missing}")
        if user is not None and ":" in user:
            raise ConfigError("HTTP_AUTH_USER must not contain ':' (basic authentication separates user and "
                              "password with it)")
        if token is not None and (token != token.strip() or any(c.isspace() for c in token)):
            raise ConfigError("HTTP_AUTH_TOKEN must not contain spaces")
        return cls(user, password, token)

    @property
    def basic(self) -> bool:
        return self.user is not None

    @property
    def bearer(self) -> bool:
        return self.token is not None

    @property
    def enabled(self) -> bool:
        return self.basic or self.bearer

    def __repr__(self) -> str:
        return f"HttpAuth(basic={self.basic}, bearer={self.bearer})"
