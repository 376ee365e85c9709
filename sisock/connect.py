"""Connecting to the router: TLS trust, serializers, reconnect with backoff.

One implementation for every process. A session is made afresh by the
factory on each (re)connection, so a router restart is healed by the
ClientService without anything else noticing except the session's own
``onJoin`` running again.

A process on its way down (SIGTERM, Ctrl-C, ``Client.close``) leaves the
realm with a GOODBYE and stops reconnecting before its connection closes:
otherwise the closing connection looks like a lost router, and the log of a
stack being stopped fills with reconnect attempts.
"""

from __future__ import annotations

import os
import sys

import txaio
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig
from service_identity import VerificationError
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, ssl
from twisted.internet.endpoints import SSL4ClientEndpoint, UNIXClientEndpoint

from sisock.config import ConfigError, Settings

txaio.use_twisted()

#: msgpack first (binary, faster for arrays of floats), JSON for old peers.
SERIALIZERS = (MsgPackSerializer, JsonSerializer)

#: Reconnect delays: 0.5 s, growing by 1.6 up to RETRY_MAX_DELAY, plus up to
#: 1 s of jitter so a restarted router is not hit by every client at once.
#: The cap bounds how long a client can sleep after the router is back:
#: everything must be serving again within 10 s of a router restart, however
#: long the router was away. An attempt against a dead router costs one
#: refused TCP connection, so trying every few seconds is cheap.
RETRY_INITIAL_DELAY = 0.5
RETRY_MAX_DELAY = 3.0

#: How long a stopping process waits for the router to answer its GOODBYE
#: before it just closes the connection.
LEAVE_TIMEOUT = 3.0

#: WebSocket settings: large replies allowed, dead routers noticed within ~15 s.
WEBSOCKET_OPTIONS = {
    "maxFramePayloadSize": 0,
    "maxMessagePayloadSize": 0,
    "autoFragmentSize": 65536,
    "autoPingInterval": 10.0,
    "autoPingTimeout": 5.0,
    "openHandshakeTimeout": 5.0,
    "tcpNoDelay": True,
}


def load_trust(settings: Settings) -> ssl.Certificate:
    """The router certificate we trust; a clear error when it is missing."""
    path = settings.cert
    try:
        with open(path, "rb") as f:
            return ssl.Certificate.loadPEM(f.read())
    except FileNotFoundError:
        raise ConfigError(
            f"router certificate {path} not found: run `sisock tls` or set SISOCK_CERT"
        ) from None
    except Exception as exc:  # noqa: BLE001 - OpenSSL raises several types
        raise ConfigError(f"router certificate {path} is not a PEM certificate: {exc}") from None


def client_tls(settings: Settings):
    """TLS options that verify the router's certificate *and* its host name."""
    return ssl.optionsForClientTLS(settings.crossbar_host, trustRoot=load_trust(settings))


def router_endpoint(settings: Settings, reactor):
    """``(endpoint, WebSocket URL)`` of the router: its UNIX socket when one
    is configured (the same host, no TLS), else its TLS port."""
    if settings.router_socket:
        return UNIXClientEndpoint(reactor, settings.router_socket), "ws://localhost/ws"
    endpoint = SSL4ClientEndpoint(reactor, settings.crossbar_host, settings.tls_port, client_tls(settings))
    return endpoint, settings.router_url


class Connection:
    """A reconnecting WAMP connection that builds sessions from ``make``.

    ``make`` is what ``ApplicationRunner.run`` accepts: a session class, a
    callable taking a ComponentConfig, or a session instance.
    """

    def __init__(self, make, settings: Settings | None = None, reactor=None, extra=None,
                 stop_reactor_on_auth_failure: bool = True):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.settings = settings or Settings.from_env()
        self.exit_code = 0
        self.auth_failure = None
        self._stop_reactor_on_auth_failure = stop_reactor_on_auth_failure
        self.log = txaio.make_logger()
        self._session = None
        self._stopping = None
        self._shutdown_trigger = None
        config_extra = {"settings": self.settings, **(extra or {})}

        def session_factory():
            self._session = make(ComponentConfig(self.settings.realm, config_extra, runner=self))
            return self._session

        endpoint, url = router_endpoint(self.settings, reactor)
        factory = WampWebSocketClientFactory(session_factory, url=url, serializers=[cls() for cls in SERIALIZERS])
        factory.setProtocolOptions(**WEBSOCKET_OPTIONS)
        factory.noisy = False
        self._reporting = _Reporting(endpoint, self.settings.router_address, self.log, self.settings)
        self.service = ClientService(
            self._reporting,
            factory,
            retryPolicy=backoffPolicy(initialDelay=RETRY_INITIAL_DELAY, maxDelay=RETRY_MAX_DELAY, factor=1.6),
            clock=reactor,
        )

    def start(self):
        warning = self.settings.secret_warning()
        if warning:
            self.log.warn(warning)
        self._stopping = None
        self._reporting.quiet = False
        self.service.startService()
        # Before the reactor closes every connection, which would otherwise
        # read as the router going away.
        self._shutdown_trigger = self.reactor.addSystemEventTrigger("before", "shutdown", self._on_shutdown)
        return self

    def stop(self):
        """Leave the realm, then stop reconnecting and close the connection;
        fires when it is closed. Safe to call more than once."""
        if self._shutdown_trigger is not None:
            self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if self._stopping is None:
            self._reporting.quiet = True
            self._stopping = self._leave()
            self._stopping.addBoth(lambda _: self.service.stopService())
        return self._stopping

    def _on_shutdown(self):
        self._shutdown_trigger = None  # firing now: removing it would warn
        return self.stop()

    def _leave(self):
        """Fires once the router has answered a GOODBYE (or did not within
        LEAVE_TIMEOUT), at once when no session is joined. The service is
        stopped in the same call that reads the answer, so the connection
        is still open then: the router closes it only after this side's
        WebSocket close, which is sent in that call too."""
        session = self._session
        if session is None or not session.is_attached():
            return defer.succeed(None)
        left = defer.Deferred()

        def on_leave(*_):
            if not left.called:
                left.callback(None)

        session.on("leave", on_leave)
        try:
            session.leave()
        except Exception:  # noqa: BLE001 - a transport closing under us: nothing left to leave
            on_leave()
        left.addTimeout(LEAVE_TIMEOUT, self.reactor)
        return left

    def on_auth_failure(self, reason):
        """Stop for good: retrying a refused login only fills the logs."""
        self.exit_code = 3
        self.auth_failure = reason
        self.stop()
        if self._stop_reactor_on_auth_failure and self.reactor.running:
            self.reactor.stop()


class _Reporting:
    """An endpoint that says why a connection attempt failed, once per
    distinct reason. Twisted's retry messages alone do not, and a refused
    TLS handshake (wrong certificate, wrong host name) happens after the TCP
    connection succeeded, so it is caught when that connection is lost
    before the WebSocket opened."""

    def __init__(self, endpoint, url, log, settings: Settings | None = None):
        self._endpoint, self._url, self._log = endpoint, url, log
        self._settings = settings
        self._last = None
        #: Set while the connection is being stopped: an attempt cancelled
        #: or a connection closed then is no news about the router.
        self.quiet = False

    def __repr__(self):
        return self._url

    def connect(self, factory):
        d = self._endpoint.connect(factory)
        d.addCallback(self._connected)
        d.addErrback(self._failed)
        return d

    def _connected(self, protocol):
        """``protocol`` is ClientService's proxy: the loss is seen on it, the
        WebSocket opening on the WAMP protocol inside."""
        inner = getattr(protocol, "_protocol", protocol)
        opened = []
        on_open, lost = inner.onOpen, protocol.connectionLost

        def open_(*args, **kwargs):
            opened.append(True)
            self._last = None
            return on_open(*args, **kwargs)

        def connection_lost(reason):
            if not opened:
                self._report(self._describe(reason))
            return lost(reason)

        inner.onOpen, protocol.connectionLost = open_, connection_lost
        return protocol

    def _describe(self, failure) -> str:
        text = failure.getErrorMessage()
        cert = self._settings.cert if self._settings else "SISOCK_CERT"
        if failure.check(VerificationError):
            host = self._settings.crossbar_host if self._settings else "CROSSBAR_HOST"
            return (f"the router's certificate does not name {host!r}: set CROSSBAR_HOST to a name the "
                    f"certificate holds, or remake it with `sisock tls --force --host {host}` and give every "
                    f"client the new certificate ({text})")
        if "certificate verify failed" in text:
            return (f"the router's certificate is not the one in {cert} (certificate verify failed): "
                    "copy the router's server_cert.pem there")
        return text

    def _failed(self, failure):
        self._report(failure.getErrorMessage())
        return failure

    def _report(self, reason):
        if self.quiet:
            return
        if reason != self._last:
            self._log.warn("cannot reach the router at {url}: {reason}; retrying", url=self._url, reason=reason)
            self._last = reason


def start_logging(settings: Settings):
    txaio.start_logging(level=settings.loglevel)


def run(make, settings: Settings | None = None) -> int:
    """Run one session (reconnecting forever) until the process is stopped.

    This is what every console script calls; it returns the exit code.
    """
    try:
        settings = settings or Settings.from_env()
        start_logging(settings)
        connection = Connection(make, settings)
    except ConfigError as exc:
        print(f"{os.path.basename(sys.argv[0])}: {exc}", file=sys.stderr)
        return 2
    connection.start()
    connection.reactor.run()
    return connection.exit_code
