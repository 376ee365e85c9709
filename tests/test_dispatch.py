"""The bridge's reactor route for ``POST /query`` (components/http/dispatch.py),
driven directly with Twisted's own Request: an answer that arrives after its
client left is dropped, not written (Twisted raises when a request whose
connection is gone is finished), and one whose client stayed is written.
The data path is a Deferred the test fires; the route through a real router
and node is tests/test_query_in_reactor.py."""

from __future__ import annotations

from io import BytesIO

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyChannel

from sisock.components.http.dispatch import Root

BODY = orjson.dumps({"range": {"from": "2026-01-01T00:00:00.000Z", "to": "2026-01-01T01:00:00.000Z"},
                     "maxDataPoints": 100, "targets": [{"target": "node::field", "refId": "A"}]})


class Held:
    """The data path, answering when the test says so."""

    def __init__(self):
        self.pending = []

    def unreduced_in_reactor(self, q, max_points):
        self.pending.append(Deferred())
        return self.pending[-1]


def _query(root):
    """``(request, what its connection was sent)``."""
    channel = DummyChannel()
    request = Request(channel)
    request.method, request.uri, request.path = b"POST", b"/query", b"/query"
    request.content = BytesIO(BODY)
    request.clientproto = b"HTTP/1.1"
    assert root.render(request) is NOT_DONE_YET
    return request, channel.transport.written


def test_an_answer_for_a_client_that_left_is_dropped_and_one_for_a_client_still_there_is_sent():
    held = Held()
    root = Root(wsgi=None, datasource=held, pool=None, max_body=1 << 20, max_answer_points=10**6)
    (left, left_sent), (_, stayed_sent) = _query(root), _query(root)
    left.connectionLost(Failure(ConnectionDone()))
    for d in held.pending:
        d.callback([])  # no series: an empty answer
    for d in held.pending:
        assert not isinstance(d.result, Failure), d.result.getTraceback()
    assert left_sent.getvalue() == b""
    sent = stayed_sent.getvalue()
    assert sent.startswith(b"HTTP/1.1 200") and sent.endswith(b"\r\n\r\n[]"), sent
