"""The pair the InfluxQL tests query: a real InfluxDB and a sisock stack
holding the same samples (tests/influx_samples.py).

The stack is its own (router, hub, bridge, g3-reader on a MariaDB index,
data-feed server, nothing else), so ``SHOW MEASUREMENTS`` lists what both
databases hold and no more. Session-scoped: the differential test and the
fuzz test share it.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from influx_samples import (
    DATABASE,
    LIVE,
    LIVE_AGENT,
    LIVE_FEED,
    TAGGED_AGENT,
    archived_live,
    live_messages,
    load_both,
    messages,
    write_feed_file,
    write_influx,
)
from ocs_publisher import publish
from procs import wait_for


@pytest.fixture(scope="session")
def influxql_live_t0():
    """The live feed's first sample: a whole second, so its 2 Hz times are exact
    (see tests/influx_samples.py), and far enough back that all of it is past."""
    return int(time.time()) - 150


@pytest.fixture(scope="session")
def influxql_samples(influxdb, influxql_live_t0, tmp_path_factory):
    """The samples written: the g3 archive on disk and in InfluxDB, the live
    feeds' messages in InfluxDB; ``(archive directory, {topic: live messages})``.
    The plain feed's own archive (tests/influx_samples.py ``archived_live``)
    goes into both too: InfluxDB holds its overlap with the live messages once,
    as it holds any point written twice."""
    data = tmp_path_factory.mktemp("influxql") / "archive"
    client = influxdb.client(DATABASE)
    client.drop_database(DATABASE)
    _, lines = load_both(str(data), client)
    t, columns = archived_live(influxql_live_t0)
    write_feed_file(str(data / "live" / f"{int(t[0])}.g3"), LIVE, "temps", t, columns)
    lines += write_influx(client, DATABASE, messages(LIVE, "temps", t, columns, chunk=60))
    live = live_messages(influxql_live_t0)
    for batch in live.values():
        lines += write_influx(client, DATABASE, batch)
    client.close()
    print(f"\n{lines} lines written to InfluxDB through ocs format_data")
    return data, live


@pytest.fixture(scope="session")
def influxql_index(mariadb_server, influxql_samples):
    """The archive scanned into a MariaDB database of its own; its SQL_* variables."""
    import sqlalchemy as sa

    from conftest import MARIADB
    from g3_helpers import scan

    name = f"sisock_test_{uuid.uuid4().hex[:12]}"
    with mariadb_server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))  # generated name
    env = {**MARIADB, "SQL_DB": name}
    scan(env, influxql_samples[0])
    yield env
    with mariadb_server.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture(scope="session")
def influxql_pair(influxdb, influxql_samples, influxql_index, influxql_live_t0, tmp_path_factory):
    """``(influxdb server, sisock's InfluxDB URL)``, both holding the same samples."""
    from sisock.client import Client

    from conftest import Stack, node_names

    data, live = influxql_samples
    stack = Stack(str(tmp_path_factory.mktemp("influxql-stack")))
    stack.start_router()
    try:
        stack.proc("hub", "sisock-hub").start()
        stack.proc("http", "sisock-http").start()
        stack.proc("g3-reader", "sisock-g3-reader-server", env={**influxql_index, "DATA_DIRECTORY": str(data)}).start()
        for agent in (LIVE_AGENT, TAGGED_AGENT):
            stack.proc(f"feed-{agent}", "sisock-data-feed-server", env={
                "TARGET": agent, "FEED": LIVE_FEED, "NAME": agent, "DESCRIPTION": f"{agent} live feed",
                "BUFFER_TIME": "7200"}).start()
        with Client(stack.settings, timeout=30) as sisock:
            wait_for(lambda: {"g3_reader", LIVE_AGENT, TAGGED_AGENT} <= node_names(sisock), 60,
                     "the g3-reader and the feeds")
            for (topic, batch), agent in zip(live.items(), (LIVE_AGENT, TAGGED_AGENT), strict=True):
                publish(sisock.link.reactor, stack.ocs_port, stack.settings.realm, topic, batch)
                n = sum(len(block["timestamps"]) for message, _ in batch for block in message.values())

                def all_live(agent=agent, n=n):
                    t0 = influxql_live_t0
                    return len(sisock.data(agent, ["channel_00"], t0 - 1, t0 + 1000)["channel_00"].t) == n

                wait_for(all_live, 30, f"{agent} to hold every published sample")
        wait_for(lambda: requests.get(stack.http + "/influxdb/ping", timeout=2).status_code == 204, 60,
                 "the bridge's /influxdb/ping")

        # The feeds registered before anything was published, so the bridge
        # learns their channels on its periodic field refresh: wait for it.
        def listed(agent):
            found = requests.post(stack.http + "/search", json={"target": f"{agent}::"}, timeout=5).json()
            return len(found) == 2

        for agent in (LIVE_AGENT, TAGGED_AGENT):
            wait_for(lambda agent=agent: listed(agent), 90, f"the bridge to list {agent}'s channels")
        yield influxdb, stack.http + "/influxdb"
    finally:
        stack.stop_all()
