"""A bridge DataSource in the test process, on the test client's link:
the bridge's own code, calling real servers through the real router."""

from __future__ import annotations

from twisted.internet import threads

from sisock.components.http.datasource import DataSource


def datasource_on(client):
    """A DataSource built in the reactor (as the bridge builds it); call
    :func:`stop` when done."""
    reactor = client.link.reactor
    return threads.blockingCallFromThread(reactor, lambda: DataSource(client.link, call_timeout=60))


def stop(client, ds):
    threads.blockingCallFromThread(client.link.reactor, lambda: ds._refresher.running and ds._refresher.stop())
