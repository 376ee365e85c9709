"""``sisock-healthcheck``: the health probe of the sisock image.

One image runs every sisock service, so the probe finds out which one its
container runs (``auto``, the default: the command line of process 1, which
is the service itself or ``docker-init`` followed by it) or is told:

``http``
    the HTTP bridge: ``GET /`` must answer 200, which it does only while the
    bridge is connected to the router (503 otherwise).
``router``
    the router: its TLS port must complete a TLS handshake, and its OCS port
    and its UNIX socket (if ``SISOCK_ROUTER_SOCKET`` is set) must accept a
    connection.
``process``
    any other service (a DataNodeServer, the g3 file scanner): it reconnects
    or retries by itself and exits on a fatal error, so running is healthy.

Exit status 0 means healthy, 1 unhealthy (with one line saying why), 2 a
usage error. Only the standard library is used, and the ports come from the
same variables the services read (``PORT``, ``CROSSBAR_TLS_PORT``,
``CROSSBAR_OCS_PORT``, ``SISOCK_ROUTER_SOCKET``, ``BIND_HOST``).
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT = 5.0
MODES = ("auto", "http", "router", "process")
#: Addresses meaning "every interface": the probe then uses loopback.
WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def local_host(env) -> str:
    host = env.get("BIND_HOST") or "127.0.0.1"
    return "127.0.0.1" if host in WILDCARDS else host.strip("[]")


def _port(env, name: str, default: int) -> int:
    raw = env.get(name)
    return int(raw) if raw else default


def check_http(env) -> str | None:
    """None when healthy, else the reason."""
    host = local_host(env)
    netloc = f"[{host}]" if ":" in host else host
    url = f"http://{netloc}:{_port(env, 'PORT', 5000)}/"
    # JSON, not HTML: a browser's request gets the quicklook page whatever
    # the connection; Grafana's (and this) gets the router's state.
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}: {exc.read(300).decode('utf-8', 'replace').strip()}"
    except (urllib.error.URLError, OSError) as exc:
        return f"cannot reach {url}: {getattr(exc, 'reason', exc)}"
    return None if status == 200 else f"{url} answered HTTP {status}"


def check_router(env) -> str | None:
    host = local_host(env)
    tls_port = _port(env, "CROSSBAR_TLS_PORT", 8080)
    ocs_port = _port(env, "CROSSBAR_OCS_PORT", 8001)
    # Serving TLS is what is checked, not who the router is: clients verify
    # the certificate themselves.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, tls_port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw):
                pass
    except (OSError, ssl.SSLError) as exc:
        return f"no TLS handshake on {host}:{tls_port}: {exc}"
    try:
        with socket.create_connection((host, ocs_port), timeout=TIMEOUT):
            pass
    except OSError as exc:
        return f"the OCS port {host}:{ocs_port} refuses connections: {exc}"
    path = env.get("SISOCK_ROUTER_SOCKET")
    if path:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
                unix.settimeout(TIMEOUT)
                unix.connect(path)
        except OSError as exc:
            return f"the router's socket {path} refuses connections: {exc}"
    return None


def detect(cmdline: list[str]) -> str:
    """The mode for a container whose process 1 runs ``cmdline``."""
    names = {os.path.basename(arg) for arg in cmdline}
    if "sisock-http" in names:
        return "http"
    if names & {"sisock-crossbar", "crossbar"}:
        return "router"
    return "process"


def process_one_cmdline() -> list[str]:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def main(argv=None, env=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    if len(argv) > 1 or (argv and argv[0] not in MODES):
        print(f"usage: sisock-healthcheck [{'|'.join(MODES)}]", file=sys.stderr)
        return 2
    mode = argv[0] if argv else "auto"
    if mode == "auto":
        mode = detect(process_one_cmdline())
    try:
        problem = {"http": check_http, "router": check_router}.get(mode, lambda _env: None)(env)
    except ValueError as exc:
        problem = f"bad setting: {exc}"
    if problem:
        print(f"unhealthy ({mode}): {problem}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
