"""Authentication and the anonymous role's limits, against the real router."""

import pytest
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ClientEndpoint

from sisock.base import uri
from sisock.client import Client
from sisock.config import Settings
from sisock.link import NotConnected


def test_wrong_secret_refused(stack):
    settings = Settings.from_env({**stack.env, "WAMP_SECRET": "wrong"})
    with pytest.raises(NotConnected, match="refused"):
        Client(settings, timeout=20)


def test_unknown_user_refused(stack):
    settings = Settings.from_env({**stack.env, "WAMP_USER": "mallory"})
    with pytest.raises(NotConnected, match="refused"):
        Client(settings, timeout=20)


def test_plain_websocket_on_tls_port_refused(stack, client):
    outcome = _anonymous_probe(client.link.reactor, stack.tls_port, timeout=5)
    assert outcome.get("joined") is not True


class _Probe(ApplicationSession):
    """Joins anonymously (as OCS agents do) and tries what it must not."""

    def onConnect(self):
        self.join(self.config.realm)

    @defer.inlineCallbacks
    def onJoin(self, details):
        results = self.config.extra["results"]
        results["joined"] = True
        results["role"] = details.authrole
        attempts = {
            "call_add": lambda: self.call(uri("data_node.add"), "intruder", "x", details.session),
            "call_subtract": lambda: self.call(uri("data_node.subtract"), "apex_archive"),
            "register_consumer": lambda: self.register(lambda *a: None, uri("consumer.intruder.get_data")),
            "register_add": lambda: self.register(lambda *a: None, uri("data_node.add")),
            "register_data_node": lambda: self.register(lambda *a: None, uri("data_node.intruder")),
            "publish_ocs": lambda: self.publish("observatory.probe.feeds.test", 1,
                                                options=__import__("autobahn").wamp.types.PublishOptions(
                                                    acknowledge=True)),
            "subscribe_ocs": lambda: self.subscribe(lambda *a: None, "observatory.probe.feeds.test"),
        }
        for name, attempt in attempts.items():
            try:
                yield attempt()
                results[name] = "allowed"
            except ApplicationError as exc:
                results[name] = exc.error
        self.leave()

    def onDisconnect(self):
        d = self.config.extra["done"]
        if not d.called:
            d.callback(None)


def _anonymous_probe(reactor, port, timeout=20):
    from autobahn.wamp.types import ComponentConfig

    results = {}

    def start():
        done = defer.Deferred()
        factory = WampWebSocketClientFactory(
            lambda: _Probe(ComponentConfig("test_realm", {"results": results, "done": done})),
            url=f"ws://127.0.0.1:{port}/ws",
        )
        d = TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
        d.addErrback(lambda f: done.callback(None) if not done.called else None)
        done.addTimeout(timeout, reactor)
        return done

    try:
        threads.blockingCallFromThread(reactor, start)
    except Exception as exc:  # noqa: BLE001 - a refused handshake ends here
        results["error"] = repr(exc)
    return results


def test_anonymous_ocs_role_is_confined(stack, client, weather):
    results = _anonymous_probe(client.link.reactor, stack.ocs_port)
    assert results["joined"] and results["role"] == "anonymous"
    for forbidden in ("call_add", "call_subtract", "register_consumer", "register_data_node"):
        assert results[forbidden] == "wamp.error.not_authorized", (forbidden, results)
    # While the hub holds data_node.add the router may answer "already exists"
    # before checking roles; either way the registration must fail.
    assert results["register_add"] in ("wamp.error.not_authorized", "wamp.error.procedure_already_exists")
    assert results["publish_ocs"] == "allowed" and results["subscribe_ocs"] == "allowed"
    assert "intruder" not in {n["name"] for n in client.data_nodes()}
