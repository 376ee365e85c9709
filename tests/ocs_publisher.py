"""Publishing OCS feed messages on the router, as an OCS agent does: an
anonymous WAMP session on the router's OCS port, one event per message
carrying ``[blocks, feed]`` on ``observatory.<instance>.feeds.<feed>``.

Used where the test must choose the samples itself (their exact times),
which a real FakeDataAgent, stamping ``time.time()``, cannot give."""

from __future__ import annotations

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig, PublishOptions
from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ClientEndpoint


class _Publisher(ApplicationSession):
    def onConnect(self):
        self.join(self.config.realm)

    @defer.inlineCallbacks
    def onJoin(self, details):
        extra = self.config.extra
        try:
            for data, feed in extra["messages"]:
                yield self.publish(extra["topic"], [data, feed], options=PublishOptions(acknowledge=True))
            extra["done"].callback(len(extra["messages"]))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting test
            extra["done"].errback(exc)
        self.leave()


def publish(reactor, port: int, realm: str, topic: str, messages, timeout: float = 30) -> int:
    """Publish every ``(data, feed)`` of ``messages`` on ``topic``; the number published."""
    messages = list(messages)

    def start():
        done = defer.Deferred()
        extra = {"messages": messages, "topic": topic, "done": done}
        factory = WampWebSocketClientFactory(lambda: _Publisher(ComponentConfig(realm, extra)),
                                             url=f"ws://127.0.0.1:{port}/ws")
        TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory).addErrback(
            lambda f: done.errback(f) if not done.called else None)
        done.addTimeout(timeout, reactor)
        return done

    return threads.blockingCallFromThread(reactor, start)
