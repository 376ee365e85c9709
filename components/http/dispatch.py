"""The bridge's root resource: SimpleJson's ``POST /query`` in the reactor,
every other request by the Flask application.

A panel's query is the request Grafana repeats most, and through Flask it
crosses threads four times: into a WSGI thread, to the reactor to call the
data nodes, back with their replies, and to the reactor again with every
write of the answer. Each crossing wakes a thread and trades the GIL, and
those hand-overs cost about a quarter of the bridge's CPU per panel
(see benchmarks/README.md). Here the query is read, asked of the
nodes and answered where the HTTP request and the WAMP replies already
are, through the same :class:`~.datasource.DataSource` steps, request
reading, allowances, errors and authentication as every other route.
Building a large answer (over :data:`REACTOR_POINTS` points) would hold
the reactor, and with it every other request and call, for that long: it
is built in the WSGI pool instead.
"""

from __future__ import annotations

import txaio
from twisted.internet import threads
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from . import auth, errors, series
from .datasource import answer, reduced
from .request import json_body, parse_query

#: Above this many points (all targets, as the nodes sent them) an answer
#: is reduced and encoded in a WSGI thread; a 10-field panel of 1000 points
#: a field takes about a millisecond in the reactor.
REACTOR_POINTS = 50_000

log = txaio.make_logger()


class Root(Resource):
    """Every path: ``POST /query`` here, the rest to ``wsgi`` (the Flask
    application in Twisted's WSGI container, as the site's root)."""

    isLeaf = True

    def __init__(self, wsgi, datasource, pool, max_body: int, max_answer_points: int,
                 authenticator: auth.Authenticator | None = None):
        super().__init__()
        self.wsgi = wsgi
        self.datasource = datasource
        self.pool = pool
        self.max_body = max_body
        self.max_answer_points = max_answer_points
        self.authenticator = authenticator

    def render(self, request):
        if request.method == b"POST" and request.path == b"/query":
            return self._query(request)
        return self.wsgi.render(request)

    def _query(self, request):
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        if self.authenticator is not None:
            # The WSGI container joins repeated headers with commas; so does this.
            header = b",".join(request.requestHeaders.getRawHeaders(b"authorization") or ()) or None
            why = self.authenticator.verdict(None if header is None else header.decode("latin-1"))
            if why is not None:
                for challenge in self.authenticator.challenges:
                    request.responseHeaders.addRawHeader(b"www-authenticate", challenge.encode("ascii"))
                return self._send(request, gone, 401, auth.refusal_body(why))
        try:
            q = parse_query(json_body(request.content.read()))
        except Exception as exc:  # noqa: BLE001 - every failure is answered, the unexpected ones logged
            return self._fail(request, gone, exc)
        d = self.datasource.unreduced_in_reactor(q, self.max_answer_points)
        d.addCallback(self._encode, q)
        d.addCallbacks(lambda body: self._send(request, gone, 200, body),
                       lambda failure: self._fail(request, gone, failure.value, failure))
        return NOT_DONE_YET

    def _encode(self, raw, q):
        if sum(len(t) for _, t, _ in raw) <= REACTOR_POINTS:
            return _body(q, raw)
        from twisted.internet import reactor

        return threads.deferToThreadPool(reactor, self.pool, _body, q, raw)

    def _fail(self, request, gone, exc, failure=None):
        known = errors.status_of(exc, self.max_body)
        if known is None:
            log.failure("unexpected error answering {path}", failure=failure, path=request.path.decode())
            known = 500, errors.INTERNAL
        return self._send(request, gone, known[0], errors.body(known[1]))

    @staticmethod
    def _send(request, gone, status: int, body: bytes):
        if gone:  # the client left: nothing to write to
            return NOT_DONE_YET
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()
        return NOT_DONE_YET


def _body(q, raw) -> bytes:
    return series.dumps(answer(reduced(q, raw)))
