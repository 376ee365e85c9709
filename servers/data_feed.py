"""The data-feed DataNodeServer: the live feed of one OCS agent.

It subscribes to ``observatory.<TARGET>.feeds.<FEED>`` and keeps the last
``BUFFER_TIME`` seconds of every channel in time-bounded numpy buffers, one
per OCS block (one timeline per block). Channel names are lower-cased with
spaces turned into underscores, as the original did, so dashboards built for
it keep working.

The buffers belong to the process, not to the WAMP session: a router
restart reconnects and resubscribes without losing what was received.
Anything unexpected in a message is logged once per kind and skipped; a
live feed must never take the server down.
"""

from __future__ import annotations

import functools
import os
import threading
import time

import numpy as np

from sisock import config, contract, runtime
from sisock.base import DataNodeServer
from sisock.ring import TimeRing
from sisock.runtime import Setting

DEFAULT_BUFFER_TIME = 3600.0


def channel_name(name) -> str:
    return str(name).lower().replace(" ", "_")


class FeedBuffer:
    """Every block of one feed, plus the bookkeeping of what was refused."""

    def __init__(self, topic: str, buffer_time: float, log=None):
        self.topic = topic
        self.agent_address = topic.rsplit(".feeds.", 1)[0]
        self.buffer_time = buffer_time
        self.blocks: dict[str, TimeRing] = {}
        self.field_block: dict[str, str] = {}
        #: How the OCS InfluxDB publisher would write each field (measurement,
        #: tags, field key), from the feed's messages: the bridge's InfluxDB
        #: API shows the live feed in the same layout.
        self.influxdb: dict[str, dict] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self.log = log

    def _warn_once(self, kind: str, message: str, **kw):
        if kind not in self._warned:
            self._warned.add(kind)
            if self.log is not None:
                self.log.warn(message + " (logged once)", **kw)

    def handle(self, *args, **kwargs):
        """Take one OCS feed message ``[blocks, feed]``; never raises."""
        try:
            self._handle(*args)
        except Exception as exc:  # noqa: BLE001 - a malformed message is skipped, never fatal
            self._warn_once(f"error:{type(exc).__name__}", "skipping a message that could not be read: {e}", e=exc)

    def _handle(self, *args):
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])
        if len(args) != 2 or not isinstance(args[0], dict) or not isinstance(args[1], dict):
            self._warn_once("layout", "skipping a message that is not [blocks, feed]")
            return
        blocks, feed = args
        address = feed.get("agent_address")
        if address is not None and address != self.agent_address:
            self._warn_once(f"agent:{address}", "ignoring messages from agent {a} on {t}", a=address, t=self.topic)
            return
        for key, block in blocks.items():
            self._take_block(key, block, feed)

    def _influxdb_layout(self, feed: dict, block: dict, channel: str) -> dict:
        """What ``ocs.common.influxdb_drivers.format_data`` makes of one channel."""
        address = str(feed.get("agent_address") or self.agent_address)
        tags = {"feed": str(feed.get("feed_name") or self.topic.rsplit(".feeds.", 1)[-1])}
        measurement, key = address, str(channel)
        field_tags = block.get("influxdb_tags")
        if isinstance(field_tags, dict) and field_tags:
            measurement = str(feed.get("agent_class") or address)
            root, _, instance = address.partition(".")
            shared = {**tags, "address_root": root, "instance_id": instance}
            own = field_tags.get(channel)
            if isinstance(own, dict):
                key = str(own.get("_field") or channel)
                tags = {str(k): str(v) for k, v in own.items() if k != "_field"}
            tags.update(shared)  # the publisher's shared tags win over a field's own
        # ``source``: the channel's OCS name, as the g3 archive of the same
        # feed names it, so the bridge shows both in the same layout.
        source = f"{address}.feeds.{tags['feed']}.{channel}"
        return {"measurement": measurement, "tags": tags, "field": key, "source": source}

    def _take_block(self, key, block, feed=None):
        if not isinstance(block, dict):
            self._warn_once("block", "skipping a block that is not an object")
            return
        name = str(block.get("block_name") or key)
        stamps = block.get("timestamps")
        data = block.get("data")
        if not isinstance(stamps, (list, tuple)) or not isinstance(data, dict):
            self._warn_once(f"block:{name}", "skipping block {b}: no timestamps/data", b=name)
            return
        t = np.asarray(stamps, dtype=np.float64)
        columns = {}
        for channel, values in data.items():
            field = channel_name(channel)
            owner = self.field_block.setdefault(field, name)
            if owner != name:
                self._warn_once(f"dup:{field}", "channel {f} of block {b} is already in block {o}; skipped",
                                f=field, b=name, o=owner)
                continue
            try:
                column = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError):
                self._warn_once(f"type:{field}", "channel {f} has non-numeric values; skipped", f=field)
                continue
            if column.shape != t.shape:
                self._warn_once(f"len:{field}", "channel {f}: {n} values for {m} timestamps; skipped",
                                f=field, n=len(column), m=len(t))
                continue
            columns[field] = column
            self.influxdb[field] = self._influxdb_layout(feed or {}, block, channel)
        if not columns:
            return
        with self._lock:
            ring = self.blocks.get(name)
            if ring is None:
                ring = self.blocks[name] = TimeRing(self.buffer_time)
        ring.extend(t, columns)

    def timelines(self, start: float, end: float) -> list[contract.Timeline]:
        cutoff = time.time() - self.buffer_time
        with self._lock:
            rings = list(self.blocks.items())
        out = []
        for name, ring in rings:
            ring.expire_before(cutoff)
            t, values = ring.snapshot(start, end)
            out.append(contract.Timeline(name, t, values, finalized_until=None))
        return out

    def fields(self) -> tuple[dict, dict]:
        with self._lock:
            rings = list(self.blocks.items())
        info, intervals = {}, {}
        for name, ring in rings:
            t, _ = ring.snapshot()
            intervals[name] = float(np.median(np.diff(t))) if len(t) > 2 else None
            for field in list(ring.channels):
                info[field] = contract.field_info(name, units=None)
                if field in self.influxdb:
                    info[field]["influxdb"] = self.influxdb[field]
        return contract.fields_reply(info, intervals)


REQUIRED = ("TARGET", "FEED", "NAME", "DESCRIPTION")


def settings_from_env(env=None, defaults=None) -> dict:
    """The server's own variables; a one-line error naming what is missing."""
    env = os.environ if env is None else env
    values = {key: env.get(key) or (defaults or {}).get(key) for key in REQUIRED}
    missing = [key for key, value in values.items() if not value]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}: set {' and '.join(missing)} in the environment")
    values["BUFFER_TIME"] = config.positive_number("BUFFER_TIME", DEFAULT_BUFFER_TIME, env)
    problem = contract.node_name_problem(values["NAME"])
    if problem is not None:
        raise ValueError(f"NAME {problem}: {values['NAME']!r}")
    return values


class DataFeedServer(DataNodeServer):
    """The data-feed DataNodeServer: the live feed of one OCS agent.

    Registers as ``NAME``. The buffer is made once per process, in
    :meth:`prepare`, so a reconnection resubscribes without losing what was
    received.
    """

    script = "sisock-data-feed-server"
    settings = (Setting("feed", settings_from_env),)

    @classmethod
    def prepare(cls, settings):
        feed = settings.feed
        buffer = FeedBuffer(f"observatory.{feed['TARGET']}.feeds.{feed['FEED']}", feed["BUFFER_TIME"])
        return {"buffer": buffer, "name": feed["NAME"], "description": feed["DESCRIPTION"]}

    def __init__(self, config=None, buffer: FeedBuffer | None = None, name: str = "data_feed",
                 description: str = "OCS data feed"):
        super().__init__(config)
        self.name = name
        self.description = description
        self.buffer = buffer

    def after_onJoin(self, details):
        self.buffer.log = self.log
        d = self.subscribe(self.buffer.handle, self.buffer.topic)
        d.addCallback(lambda _: self.log.info("subscribed to {t}", t=self.buffer.topic))
        return d

    def _get_fields_blocking(self, start, end):
        return self.buffer.fields()

    def _get_data_blocking(self, field, start, end, min_stride=None):
        return contract.data_reply(field, self.buffer.timelines(start, end), start, end, min_stride)


class ThermometryServer(DataFeedServer):
    """The data-feed DataNodeServer: the live feed of one OCS agent.

    With FEED defaulting to ``temperatures``: the deployment templates run
    ``sisock-thermometry-server`` without setting it.
    """

    script = "sisock-thermometry-server"
    settings = (Setting("feed", functools.partial(settings_from_env, defaults={"FEED": "temperatures"})),)


def main(argv=None):
    runtime.run(DataFeedServer, argv)


def thermometry_main(argv=None):
    runtime.run(ThermometryServer, argv)


if __name__ == "__main__":
    main()
