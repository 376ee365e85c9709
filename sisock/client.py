"""A blocking client for scripts and notebooks.

    >>> from sisock.client import Client
    >>> with Client() as c:
    ...     c.data_nodes()
    ...     t, v = c.data("apex_archive", ["apex_pressure"], -3600, 0)["apex_pressure"]

No Twisted code is needed by the caller: the reactor runs in a daemon thread
started on first use, and every call blocks until its answer arrives.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import numpy as np
from autobahn.wamp.exception import ApplicationError
from twisted.internet import threads

from sisock import contract
from sisock.config import Settings
from sisock.connect import Connection
from sisock.link import Link, LinkedSession, NotConnected

_start_lock = threading.Lock()


def _reactor():
    """The global reactor, running in a background thread."""
    from twisted.internet import reactor

    with _start_lock:
        if not reactor.running:
            thread = threading.Thread(
                target=reactor.run, kwargs={"installSignalHandlers": False},
                name="sisock-reactor", daemon=True,
            )
            thread.start()
            deadline = time.monotonic() + 10
            while not reactor.running and time.monotonic() < deadline:
                time.sleep(0.01)
    return reactor


class Series(NamedTuple):
    t: np.ndarray
    values: np.ndarray


class Client:
    """A connection to the router, ready once the constructor returns."""

    def __init__(self, settings: Settings | None = None, timeout: float = 15.0, call_timeout: float = 60.0):
        self.settings = settings or Settings.from_env()
        self.call_timeout = call_timeout
        reactor = _reactor()
        self.link = Link(reactor)

        def start():
            return Connection(
                LinkedSession, self.settings, reactor, extra={"link": self.link},
                stop_reactor_on_auth_failure=False,
            ).start()

        self._connection = threads.blockingCallFromThread(reactor, start)
        deadline = time.monotonic() + timeout
        while not self.link.wait(0.05):
            if self._connection.auth_failure:
                self.close()
                raise NotConnected(f"router refused the login ({self._connection.auth_failure})")
            if time.monotonic() > deadline:
                self.close()
                raise NotConnected(f"could not join the router at {self.settings.router_address} within {timeout:g} s")

    def close(self):
        reactor = self.link.reactor
        if reactor.running:
            threads.blockingCallFromThread(reactor, self._connection.stop)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, procedure: str, *args, **kwargs):
        return self.link.call(procedure, *args, timeout=self.call_timeout, **kwargs)

    def subscribe(self, topic: str, handler):
        """Call ``handler(*args, **kwargs)`` for each event on ``topic`` (in
        the client's reactor thread; keep it short). Lasts until the
        connection drops."""
        session = self.link.session
        if session is None:
            raise NotConnected("not connected to the WAMP router")
        return threads.blockingCallFromThread(self.link.reactor, session.subscribe, handler, topic)

    def data_nodes(self) -> list[dict]:
        """``[{"name", "description"}, ...]`` of the live DataNodeServers."""
        return self.call(contract.GET_DATA_NODE)

    def fields(self, node: str, start: float = 1, end: float = 0):
        """``(field, timeline)`` as the node's ``get_fields`` returns them."""
        field, timeline = self.call(contract.get_fields_procedure(node), start, end)
        return field, timeline

    def get_data(self, node: str, fields, start: float, end: float, min_stride=None) -> dict:
        """The node's raw ``get_data`` reply (lists, as on the wire)."""
        return self.call(contract.get_data_procedure(node), contract.field_list(fields), start, end, min_stride)

    def data(self, node: str, fields, start: float, end: float, min_stride=None) -> dict[str, Series]:
        """``{field: Series(t, values)}`` as numpy arrays; fields without data
        are left out. Asked packed (numbers as bytes, several times faster to
        move) where the node registers it, plainly otherwise."""
        fields = contract.field_list(fields)
        info, _ = self.fields(node, 1, 0)
        try:
            reply = self.call(contract.get_data_packed_procedure(node), fields, start, end, min_stride)
        except ApplicationError as exc:
            if exc.error != contract.NO_SUCH_PROCEDURE:
                raise
            reply = self.get_data(node, fields, start, end, min_stride)
        if reply is False:
            raise ValueError(f"{node} refused the request: it asks for more data than it ships at once")
        out = {}
        for name in fields:
            values = contract.unpack(reply["data"].get(name))
            tl = reply["timeline"].get((info.get(name) or {}).get("timeline"))
            if values is not None and len(values) and tl is not None:
                # Copies: unpacked arrays are views of the received bytes, read-only.
                out[name] = Series(np.array(contract.unpack(tl["t"]), dtype=np.float64), np.array(values))
        return out
