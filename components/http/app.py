"""``sisock-http``: the Flask bridge served by Twisted, next to its WAMP session.

One process, one reactor: Twisted's WSGI container runs Flask handlers in a
thread pool, and handlers reach the router through the shared :class:`Link`;
SimpleJson's ``POST /query`` is answered in the reactor itself
(:mod:`.dispatch`).
"""

from __future__ import annotations

import io
import sys

import orjson
from twisted.internet.error import CannotListenError
from twisted.python.threadpool import ThreadPool
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site
from twisted.web.wsgi import WSGIResource

from sisock import config
from sisock.config import ConfigError, HttpAuth, Settings
from sisock.connect import Connection, start_logging
from sisock.link import Link, LinkedSession

from .auth import Authenticator
from .datasource import DataSource
from .dispatch import Root
from .errors import too_large_message
from .influxql import parser as influxql_parser
from .request import DEFAULT_MAX_ANSWER_POINTS
from .routes import DEFAULT_MAX_BODY, create_app


class BoundedRequest(Request):
    """A request whose body is kept only up to the site's ``max_body`` bytes.

    Twisted reads a whole body before the WSGI application sees it, so the
    limit is enforced here, while it arrives: past the limit the bytes are
    dropped, not buffered, and the answer is a 413 without calling Flask.
    That holds for a declared ``Content-Length`` and for chunked bodies
    alike. A chunked body within the limit is handed to Flask with its
    length, which WSGI needs to read it.
    """

    _too_large = False
    _received = 0

    @property
    def _max_body(self) -> int:
        return getattr(self.channel.site, "max_body", DEFAULT_MAX_BODY)

    def gotLength(self, length):
        if length is not None and length > self._max_body:
            self._too_large = True
            self.content = io.BytesIO()
            return
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self._too_large:
            return
        self._received += len(data)
        if self._received > self._max_body:
            self._too_large = True
            self.content.close()
            self.content = io.BytesIO()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        """A chunked body reaches WSGI with its length, not as an empty body."""
        if not self._too_large and self.requestHeaders.hasHeader(b"transfer-encoding"):
            self.requestHeaders.removeHeader(b"transfer-encoding")
            self.requestHeaders.setRawHeaders(b"content-length", [str(self._received).encode()])
        super().requestReceived(command, path, version)

    def process(self):
        if not self._too_large:
            return super().process()
        self.site = self.channel.site
        body = orjson.dumps({"message": too_large_message(self._max_body)})
        self.setResponseCode(413)
        self.setHeader(b"content-type", b"application/json")
        self.setHeader(b"content-length", str(len(body)).encode())
        self.setHeader(b"connection", b"close")
        self.write(body)
        self.finish()
        return None


class BoundedChannel(HTTPChannel):
    """Twisted drops a connection whose request line or a header line is
    longer than ``MAX_LENGTH`` (16 KiB) without a word, and answers other
    malformed requests (too many or too large headers, a bad length) with
    a bare 400. Both get a status and a one-line JSON message here, so a
    client (an overlong URL from a glob expanded into a query string, say)
    is told why."""

    def _refuse(self, status: bytes, message: str):
        body = orjson.dumps({"message": message})
        self.transport.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (status, len(body), body))
        self.loseConnection()

    def lineLengthExceeded(self, line):
        if getattr(self, "_HTTPChannel__first_line", True):
            self._refuse(b"414 URI Too Long", f"request line longer than {self.MAX_LENGTH} bytes")
        else:
            self._refuse(b"431 Request Header Fields Too Large", f"a header line longer than {self.MAX_LENGTH} bytes")

    def _respondToBadRequestAndDisconnect(self):
        self._refuse(b"400 Bad Request", "malformed HTTP request (request line, headers or body framing)")


class QuietSite(Site):
    """No access log line per request (Grafana polls); errors still logged."""

    requestFactory = BoundedRequest
    protocol = BoundedChannel

    def __init__(self, resource, max_body: int = DEFAULT_MAX_BODY, **kwargs):
        # Flask reads bodies itself: Twisted parsing form posts as well
        # would be wasted work that any client could ask for.
        super().__init__(resource, parsePOSTFormSubmission=False, **kwargs)
        self.max_body = max_body

    def log(self, request):
        pass


def serve(reactor, settings: Settings, max_body: int = DEFAULT_MAX_BODY, threads: int = 32,
          http_auth: HttpAuth | None = None, max_answer_points: int = DEFAULT_MAX_ANSWER_POINTS):
    """Start the session and the web server in ``reactor``; returns the port."""
    link = Link(reactor)
    datasource = DataSource(link)
    connection = Connection(LinkedSession, settings, reactor, extra={"link": link}).start()
    pool = ThreadPool(minthreads=2, maxthreads=threads, name="sisock-http")
    pool.start()
    reactor.addSystemEventTrigger("after", "shutdown", pool.stop)
    pool.callInThread(influxql_parser.prepare)
    app = create_app(datasource, max_body, http_auth, max_answer_points)
    authenticator = Authenticator(http_auth) if http_auth is not None and http_auth.enabled else None
    root = Root(WSGIResource(reactor, pool, app), datasource, pool, max_body, max_answer_points, authenticator)
    site = QuietSite(root, max_body=max_body)
    port = reactor.listenTCP(settings.http_port, site, interface=settings.bind_host)
    return port, connection


def main(argv=None):
    from twisted.internet import reactor

    try:
        settings = Settings.from_env()
        max_body = config.whole_number("MAX_BODY_BYTES", DEFAULT_MAX_BODY)
        max_answer_points = config.whole_number("MAX_ANSWER_POINTS", DEFAULT_MAX_ANSWER_POINTS)
        http_auth = HttpAuth.from_env()
        start_logging(settings)
        port, connection = serve(reactor, settings, max_body, http_auth=http_auth,
                                 max_answer_points=max_answer_points)
    except (ConfigError, ValueError) as exc:
        print(f"sisock-http: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except CannotListenError as exc:
        print(f"sisock-http: cannot listen on {settings.bind_host}:{settings.http_port}: {exc.socketError}",
              file=sys.stderr)
        raise SystemExit(2) from None
    print(f"sisock-http: Grafana datasource URL http://{settings.bind_host}:{port.getHost().port}", flush=True)
    if http_auth.enabled:
        kinds = " and ".join(k for k, on in (("basic", http_auth.basic), ("bearer token", http_auth.bearer)) if on)
        print(f"sisock-http: requests need {kinds} authentication (GET / stays open as the health check)",
              flush=True)
    reactor.run()
    raise SystemExit(connection.exit_code)
