"""The router's UNIX socket (``SISOCK_ROUTER_SOCKET``), against the real
router: the same realm and principal as the TLS port, no certificate needed,
nothing anonymous admitted."""

import os

import pytest
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from test_security import _Probe
from twisted.internet import defer, threads
from twisted.internet.endpoints import UNIXClientEndpoint

from sisock.client import Client
from sisock.config import Settings
from sisock.link import NotConnected

from conftest import node_names
from procs import wait_for

RAMP = os.path.join(os.path.dirname(__file__), "servers", "ramp.py")


def _on_socket(stack, **extra) -> dict:
    """The stack's environment for a client of the socket, with a
    certificate path that does not exist: the socket must not need one."""
    return {**stack.env, "SISOCK_ROUTER_SOCKET": stack.socket, "SISOCK_CERT": "/nonexistent/cert.pem", **extra}


def test_server_on_the_socket_serves_clients_on_tls_and_the_other_way(stack, client, weather):
    ramp = stack.python("ramp-socket", RAMP, env=_on_socket(stack, NAME="ramp_socket")).start()
    try:
        # Registered over the socket, listed by the hub and called over TLS.
        wait_for(lambda: "ramp_socket" in node_names(client), 30, "ramp_socket to register")
        assert "cannot reach the router" not in ramp.output()
        over_tls = client.data("ramp_socket", ["value"], -600, 0)["value"]
        assert len(over_tls.t) > 500
        with Client(Settings.from_env(_on_socket(stack)), timeout=20) as local:
            # The same answers over the socket, from a node on each transport.
            over_socket = local.data("ramp_socket", ["value"], over_tls.t[0], over_tls.t[-1])["value"]
            assert list(over_socket.t) == list(over_tls.t) and list(over_socket.values) == list(over_tls.values)
            assert local.fields("apex_archive") == client.fields("apex_archive")
    finally:
        ramp.stop()


def test_wrong_secret_refused_on_the_socket(stack):
    with pytest.raises(NotConnected, match="refused"):
        Client(Settings.from_env(_on_socket(stack, WAMP_SECRET="wrong")), timeout=20)


class _Knocking(_Probe):
    """The anonymous probe, noting that its transport reached the router."""

    def onConnect(self):
        self.config.extra["results"]["connected"] = True
        super().onConnect()


def test_anonymous_cannot_join_on_the_socket(stack, client):
    results = {}

    def start():
        done = defer.Deferred()
        factory = WampWebSocketClientFactory(
            lambda: _Knocking(ComponentConfig("test_realm", {"results": results, "done": done})),
            url="ws://localhost/ws",
        )
        d = UNIXClientEndpoint(client.link.reactor, stack.socket).connect(factory)
        d.addErrback(lambda f: done.callback(None) if not done.called else None)
        done.addTimeout(10, client.link.reactor)
        return done

    threads.blockingCallFromThread(client.link.reactor, start)
    assert results.get("connected") is True and results.get("joined") is not True, results


def test_missing_socket_is_reported_and_retried_until_it_appears(stack, client, tmp_path):
    """A client started before its router (hosts reboot in any order) waits
    for the socket, saying where it looks, and joins once it is there."""
    missing = str(tmp_path / "not-yet.sock")
    ramp = stack.python("ramp-nosocket", RAMP, env=_on_socket(stack, NAME="ramp_nosocket",
                                                             SISOCK_ROUTER_SOCKET=missing)).start()
    try:
        wait_for(lambda: f"cannot reach the router at unix:{missing}" in ramp.output(), 30, "the report")
        assert ramp.alive
        os.symlink(stack.socket, missing)  # the router is up: its socket appears
        wait_for(lambda: "ramp_nosocket" in node_names(client), 30, "ramp_nosocket to join once the socket exists")
    finally:
        ramp.stop()
