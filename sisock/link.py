"""Calling WAMP from threads that are not the reactor's.

The HTTP bridge answers requests in a WSGI thread pool and the Python client
runs in a user's script; both hold a :class:`Link` to the current session and
call through it. The link follows reconnections: after the router comes back
the new session replaces the old one and callers never see the change.
"""

from __future__ import annotations

import threading

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, threads

from sisock.session import AuthenticatedSession


class NotConnected(RuntimeError):
    """No session with the router right now."""


class CallTimeout(RuntimeError):
    """The router or the called server did not answer in time."""


class Link:
    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.session = None
        self._joined = threading.Event()
        self._listeners = []

    # -- called in the reactor thread by LinkedSession ---------------------

    def attach(self, session):
        self.session = session
        self._joined.set()
        for listener in self._listeners:
            listener(session)

    def detach(self, session):
        if self.session is session:
            self.session = None
            self._joined.clear()

    def on_join(self, listener):
        """Run ``listener(session)`` in the reactor after every (re)join."""
        self._listeners.append(listener)

    # -- called from any thread -----------------------------------------------

    def wait(self, timeout: float) -> bool:
        return self._joined.wait(timeout)

    @property
    def connected(self) -> bool:
        return self.session is not None

    def call_in_reactor(self, procedure, *args, timeout: float = 30.0, **kwargs):
        """Deferred of one call, made in the reactor thread."""
        session = self.session
        if session is None:
            return defer.fail(NotConnected("not connected to the WAMP router"))
        d = session.call(procedure, *args, **kwargs)
        d.addTimeout(timeout, self.reactor)
        d.addErrback(_translate_timeout, procedure, timeout)
        return d

    def call(self, procedure, *args, timeout: float = 30.0, **kwargs):
        """Blocking call from a non-reactor thread."""
        return threads.blockingCallFromThread(
            self.reactor, self.call_in_reactor, procedure, *args, timeout=timeout, **kwargs
        )

    def gather(self, calls, timeout: float = 30.0):
        """Make several calls concurrently; returns results or exceptions.

        ``calls`` is a list of ``(procedure, args, kwargs)``. Each entry of the
        result is the call's result or the exception it raised, so one
        failing server never hides the others' answers.
        """

        return threads.blockingCallFromThread(self.reactor, self.gather_in_reactor, calls, timeout)

    def gather_in_reactor(self, calls, timeout: float = 30.0):
        """Deferred of :meth:`gather`'s list, made in the reactor thread."""
        ds = [self.call_in_reactor(p, *a, timeout=timeout, **k) for p, a, k in calls]
        d = defer.DeferredList(ds, consumeErrors=True)
        return d.addCallback(lambda results: [value if ok else value.value for ok, value in results])


def _translate_timeout(failure, procedure, timeout):
    failure.trap(defer.TimeoutError, defer.CancelledError)
    raise CallTimeout(f"{procedure} did not answer within {timeout:g} s")


class LinkedSession(AuthenticatedSession):
    """A session that hands itself to the :class:`Link` in ``extra["link"]``."""

    def onJoin(self, details):
        self.config.extra["link"].attach(self)

    def onLeave(self, details):
        self.config.extra["link"].detach(self)
        super().onLeave(details)

    def onDisconnect(self):
        self.config.extra["link"].detach(self)


__all__ = ["Link", "LinkedSession", "NotConnected", "CallTimeout", "ApplicationError"]
