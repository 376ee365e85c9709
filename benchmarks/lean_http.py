"""A keep-alive HTTP client for timed requests: ``http.client``, nothing more.

The figures judge what sisock costs, and a benchmark sending requests one
after another adds its own client's CPU to every round trip. ``requests``
spends about 2.4 ms of CPU per 10-field ``/query`` (building the request,
encoding the body, wrapping the 360 kB answer), ``http.client`` on a kept
connection about 0.65 ms (measured side by side on the 2-core machine,
200 requests each); Grafana's Go client spends less still. Untimed calls
(waiting for a server, listing fields) may use anything.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import orjson


class Response:
    """What the benchmarks read of an answer: status, body, JSON."""

    __slots__ = ("status_code", "content")

    def __init__(self, status_code: int, content: bytes):
        self.status_code = status_code
        self.content = content

    def json(self):
        return orjson.loads(self.content)

    def raise_for_status(self):
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.content[:300]!r}")


class Client:
    """One kept-alive connection to ``base`` (``http://host:port``); not
    thread-safe, so each client thread makes its own."""

    def __init__(self, base: str, timeout: float = 600.0):
        parts = urlsplit(base)
        self._connect = lambda: http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self._conn = self._connect()

    def post(self, path: str, body) -> Response:
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        return self._send("POST", path, payload, {"Content-Type": "application/json"})

    def get(self, path: str) -> Response:
        return self._send("GET", path, None, {})

    def _send(self, method, path, payload, headers) -> Response:
        for attempt in (1, 2):  # the server may have closed an idle connection
            try:
                self._conn.request(method, path, payload, headers)
                answer = self._conn.getresponse()
                return Response(answer.status, answer.read())
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                self._conn = self._connect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        self._conn.close()
