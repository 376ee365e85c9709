"""``sisock-http``: the Flask bridge served by Twisted, next to its WAMP session.

One process, one reactor: Twisted's WSGI container runs Flask handlers in a
thread pool, and handlers reach the router through the shared :class:`Link`.
"""

from __future__ import annotations

import os
import sys

from twisted.internet.error import CannotListenError
from twisted.python.threadpool import ThreadPool
from twisted.web.server import Site
from twisted.web.wsgi import WSGIResource

from sisock.config import ConfigError, Settings
from sisock.connect import Connection, start_logging
from sisock.link import Link, LinkedSession

from .datasource import DataSource
from .routes import DEFAULT_MAX_BODY, create_app


class QuietSite(Site):
    """No access log line per request (Grafana polls); errors still logged."""

    def log(self, request):
        pass


def serve(reactor, settings: Settings, max_body: int = DEFAULT_MAX_BODY, threads: int = 32):
    """Start the session and the web server in ``reactor``; returns the port."""
    link = Link(reactor)
    datasource = DataSource(link)
    connection = Connection(LinkedSession, settings, reactor, extra={"link": link}).start()
    pool = ThreadPool(minthreads=2, maxthreads=threads, name="sisock-http")
    pool.start()
    reactor.addSystemEventTrigger("after", "shutdown", pool.stop)
    resource = WSGIResource(reactor, pool, create_app(datasource, max_body))
    port = reactor.listenTCP(settings.http_port, QuietSite(resource), interface=settings.bind_host)
    return port, connection


def main(argv=None):
    from twisted.internet import reactor

    try:
        settings = Settings.from_env()
        max_body = int(os.environ.get("MAX_BODY_BYTES") or DEFAULT_MAX_BODY)
        start_logging(settings)
        port, connection = serve(reactor, settings, max_body)
    except (ConfigError, ValueError) as exc:
        print(f"sisock-http: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except CannotListenError as exc:
        print(f"sisock-http: cannot listen on {settings.bind_host}:{settings.http_port}: {exc.socketError}",
              file=sys.stderr)
        raise SystemExit(2) from None
    print(f"sisock-http: Grafana datasource URL http://{settings.bind_host}:{port.getHost().port}", flush=True)
    reactor.run()
    raise SystemExit(connection.exit_code)
