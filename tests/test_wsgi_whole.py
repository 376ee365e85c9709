"""The bridge's WSGI container (``WholeWSGIResource``): each answer handed
to the reactor in one piece, over a real Twisted site on a loopback port."""

import threading

import requests
from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

from sisock.components.http.app import QuietSite, WholeWSGIResource


class _Pieces:
    """An application's iterable with ``close``, as PEP 3333 allows."""

    def __init__(self, pieces):
        self.pieces, self.closed = pieces, threading.Event()

    def __iter__(self):
        return iter(self.pieces)

    def close(self):
        self.closed.set()


def _serve(reactor, app):
    """``(URL, stop)`` of ``app`` served on a free loopback port."""
    pool = ThreadPool(minthreads=1, maxthreads=2, name="wsgi-test")
    pool.start()

    def listen():
        return reactor.listenTCP(0, QuietSite(WholeWSGIResource(reactor, pool, app)), interface="127.0.0.1")

    port = threads.blockingCallFromThread(reactor, listen)

    def stop():
        threads.blockingCallFromThread(reactor, port.stopListening)
        pool.stop()

    return f"http://127.0.0.1:{port.getHost().port}", stop


def test_pieces_are_sent_whole_with_status_and_headers(client):
    body = _Pieces([b"first ", b"", b"second"])

    def app(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Probe", environ["PATH_INFO"])])
        return body

    url, stop = _serve(client.link.reactor, app)
    try:
        r = requests.get(url + "/a/path", timeout=10)
        assert (r.status_code, r.text, r.headers["X-Probe"]) == (201, "first second", "/a/path")
        assert body.closed.wait(5)
        # Kept alive: the next request on the same connection is answered too.
        with requests.Session() as s:
            assert [s.get(url + f"/{i}", timeout=10).headers["X-Probe"] for i in range(3)] == ["/0", "/1", "/2"]
    finally:
        stop()


def test_an_error_escaping_the_application_is_a_500(client):
    def app(environ, start_response):
        raise RuntimeError("escaped")

    url, stop = _serve(client.link.reactor, app)
    try:
        assert requests.get(url + "/", timeout=10).status_code == 500
        assert requests.get(url + "/", timeout=10).status_code == 500  # and the server still answers
    finally:
        stop()
