"""The same samples in a g3 archive and in a real InfluxDB.

The archive is written by the test's own so3g writers (the current OCS HK
schema, providers ``observatory.<instance>.feeds.<feed>``). InfluxDB gets
the very same samples the way the OCS InfluxDB publisher writes them: every
provider's samples become OCS feed messages (``{block: {"block_name",
"timestamps", "data"}}`` plus the feed's description), turned into line
protocol by ``ocs.common.influxdb_drivers.format_data`` and written with the
``influxdb`` PyPI client at nanosecond precision. So measurement, tags,
fields and time stamps are exactly the publisher's, not our idea of them.

Why the sample times are whole or half seconds (1 Hz, 0.5 Hz and 2 Hz grids
starting on a whole second): the three time representations involved must
name the same instant, or the two systems would be compared on different
data. g3 stores ticks of 1e-8 s; sisock hands out ``ticks / 1e8`` as float
seconds; the publisher stores ``int(t * 1e9)`` nanoseconds, a truncation of
a float product. For ``t = n / 2`` at present-day ctimes, ``t * 1e8`` and
``t * 1e9`` are integers below 2**53 times a power of two, so every one of
these conversions is exact and ``int(t * 1e9)`` is the true instant. A time
such as ``n + 0.1`` is not: its float is off by up to ~1e-7 s and the
truncation can land one nanosecond early, which would make the same sample
fall on either side of a bucket edge in the two systems.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from sisock.demo.g3 import Provider, expected, write_archive

START = 1_700_000_000  # 2023-11-14T22:13:20Z, a whole second
HOURS = 4
END = START + HOURS * 3600
DATABASE = "ocs_feeds"  # the OCS InfluxDB publisher's default database name
LAYOUT = {"file_seconds": 3600, "frame_seconds": 300, "spike_every": 1800, "spike_size": 1000.0,
          "gaps": ((START + 5000, START + 6500),)}
PROVIDERS = [
    Provider("observatory.therm1.feeds.temperatures", ["ch1_t", "ch2_t", "ch3_t"], rate=1.0, block="temps"),
    Provider("observatory.therm1.feeds.diagnostics", ["heater", "ch1_t"], rate=0.1, block="diag"),
    Provider("observatory.gauge2.feeds.pressures", ["p_main", "p_aux"], rate=0.5, block="press"),
    Provider("observatory.fast3.feeds.fast", ["x", "y"], rate=2.0, block="fast"),
]
#: The typed provider (integer, boolean, string and float fields) of
#: ``g3_helpers.write_typed_file``: one file, 2 s samples, starting here.
TYPED_START, TYPED_N = START + 600, 1800


def agent_address(description: str) -> str:
    return description.split(".feeds.", 1)[0]


def feed_name(description: str) -> str:
    return description.split(".feeds.", 1)[1]


def feed_info(description: str, agent_class: str = "FakeDataAgent") -> dict:
    """The feed half of an OCS feed message, as ``ocs.ocs_feed.Feed.encoded()`` sends it."""
    address = agent_address(description)
    return {"agent_address": address, "agg_params": {}, "feed_name": feed_name(description),
            "address": description, "record": True, "session_id": 0, "agent_session_id": "0",
            "agent_class": agent_class}


def block_message(block: str, t: np.ndarray, columns: dict, influxdb_tags: dict | None = None) -> dict:
    """The data half of an OCS feed message: plain Python numbers, as they arrive over WAMP;
    with ``influxdb_tags`` as FakeDataAgent adds them (``{channel: {"_field": .., tag: ..}}``)."""
    body = {"block_name": block, "timestamps": [float(x) for x in t],
            "data": {name: np.asarray(v).tolist() for name, v in columns.items()}}
    if influxdb_tags:
        body["influxdb_tags"] = influxdb_tags
    return {block: body}


def messages(description: str, block: str, t: np.ndarray, columns: dict, chunk: int = 300,
             influxdb_tags: dict | None = None):
    """``(data, feed)`` messages of ``chunk`` samples each, in time order."""
    feed = feed_info(description)
    for lo in range(0, len(t), chunk):
        yield (block_message(block, t[lo:lo + chunk], {k: v[lo:lo + chunk] for k, v in columns.items()},
                             influxdb_tags), feed)


def archive_messages(providers: Sequence[Provider], truth: dict):
    """The archive's samples as the OCS feed messages that produced them."""
    for p in providers:
        names = p.full_names()
        t = truth[names[0]][0]
        yield from messages(p.description, p.block, t, {f: truth[n][1] for f, n in zip(p.fields, names, strict=True)})


def typed_messages(truth: dict):
    from g3_helpers import TYPED

    t = next(iter(truth.values()))[0]
    columns = {name.rsplit(".", 1)[1]: values for name, (_, values) in truth.items()}
    yield from messages(TYPED, "status", t, columns)


def write_influx(client, database: str, batches: Iterable[tuple[dict, dict]], batch_lines: int = 20000) -> int:
    """Every message through the publisher's ``format_data`` into ``database``; lines written."""
    from ocs.common.influxdb_drivers import format_data

    client.create_database(database)
    pending, total = [], 0
    for data, feed in batches:
        pending.extend(format_data(data, feed, "line"))
        if len(pending) >= batch_lines:
            client.write_points(pending, database=database, time_precision="n", protocol="line",
                                batch_size=batch_lines)
            total += len(pending)
            pending = []
    if pending:
        client.write_points(pending, database=database, time_precision="n", protocol="line", batch_size=batch_lines)
        total += len(pending)
    return total


def write_g3(directory: str) -> dict:
    """The archive (the providers plus the typed file); ``{full name: (t, values)}`` of every field."""
    from g3_helpers import write_typed_file

    write_archive(str(directory), START, END, PROVIDERS, **LAYOUT)
    truth = expected(PROVIDERS, START, END, **LAYOUT)
    typed_path = os.path.join(str(directory), str(TYPED_START)[:5], f"{TYPED_START}.g3")
    truth.update(write_typed_file(typed_path, TYPED_START, TYPED_N))
    return truth


def load_both(directory: str, client, database: str = DATABASE) -> tuple[dict, int]:
    """Write the archive and the same samples into InfluxDB; ``(truth, lines written)``."""
    truth = write_g3(directory)
    typed = {name: v for name, v in truth.items() if name.startswith("observatory.typed1.")}
    lines = write_influx(client, database, [*archive_messages(PROVIDERS, truth), *typed_messages(typed)])
    return truth, lines


#: The live feeds: OCS-shaped feeds published on the router for data-feed
#: servers and written to InfluxDB from the same messages. The second one
#: carries FakeDataAgent's ``influxdb_tags``, so the publisher writes it as
#: measurement ``FakeDataAgent``, tags ``address_root``, ``instance_id``,
#: ``channel``, ``feed`` and one field ``temperature``.
LIVE_AGENT = "livefeed1"
LIVE_FEED = "false_temperatures"
LIVE = f"observatory.{LIVE_AGENT}.feeds.{LIVE_FEED}"
TAGGED_AGENT = "livetags1"
TAGGED = f"observatory.{TAGGED_AGENT}.feeds.{LIVE_FEED}"
TAGGED_CLASS = "FakeDataAgent"
LIVE_CHANNELS = ("channel_00", "channel_01")
LIVE_RATE, LIVE_N = 2.0, 240


def live_samples(t0: int, first: int = 0, last: int = LIVE_N) -> tuple[np.ndarray, dict]:
    """Samples ``first .. last - 1`` of the 2 Hz live grid from the whole second ``t0``
    (negative: before it), values from exact arithmetic on the sample number."""
    k = np.arange(first, last)
    t = t0 + k / LIVE_RATE
    return t, {"channel_00": (k % 37) * 0.25 - 3.0, "channel_01": 20.0 + (k * 7 % 11) / 8.0}


#: The plain live feed's aggregator archive: the same feed recorded from
#: ``ARCHIVED_BEFORE`` samples before the live feed's first one until
#: ``ARCHIVED_OVERLAP`` samples into it, so one InfluxDB series is held by
#: two sisock nodes (the g3-reader and the data-feed server), partly both.
ARCHIVED_BEFORE, ARCHIVED_OVERLAP = 600, 120


def archived_live(t0: int) -> tuple[np.ndarray, dict]:
    return live_samples(t0, -ARCHIVED_BEFORE, ARCHIVED_OVERLAP)


def write_feed_file(path: str, description: str, block: str, t: np.ndarray, columns: dict) -> str:
    """One HK file of one provider holding exactly these samples, as the aggregator writes a feed."""
    from so3g.hk.session import HKSessionHelper
    from spt3g import core

    from g3_helpers import data_frame

    os.makedirs(os.path.dirname(path), exist_ok=True)
    helper = HKSessionHelper(session_id=int(t[0]) << 20, start_time=float(t[0]), hkagg_version=2,
                             description="live archive")
    prov = helper.add_provider(description)
    writer = core.G3Writer(path)
    for frame in (helper.session_frame(), helper.status_frame(timestamp=float(t[0]))):
        writer.Process(frame)
    for lo in range(0, len(t), 120):
        hi = min(len(t), lo + 120)
        samples = core.G3TimesampleMap()
        samples.times = core.G3VectorTime([core.G3Time(int(round(x * 1e8))) for x in t[lo:hi]])
        for name, values in columns.items():
            samples[name] = core.G3VectorDouble(values[lo:hi])
        writer.Process(data_frame(helper, prov, samples, block, float(t[hi - 1])))
    writer.Process(core.G3Frame(core.G3FrameType.EndProcessing))
    del writer
    return path


def live_messages(t0: int) -> dict[str, list]:
    """``{topic: [(data, feed), ...]}`` of both live feeds, 20 samples a message."""
    t, columns = live_samples(t0)
    tags = {c: {"channel": int(c.split("_")[1]), "_field": "temperature"} for c in LIVE_CHANNELS}
    return {LIVE: list(messages(LIVE, "temps", t, columns, chunk=20)),
            TAGGED: [(data, {**feed, "agent_class": TAGGED_CLASS}) for data, feed in
                     messages(TAGGED, "temps", t, columns, chunk=20, influxdb_tags=tags)]}
