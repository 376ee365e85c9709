"""The data-feed server's buffer, without a router: OCS message handling and
time-bounded numpy buffers."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from sisock.ring import TimeRing
from sisock.servers.data_feed import FeedBuffer, channel_name, settings_from_env

TOPIC = "observatory.fake1.feeds.temps"
T0 = float(int(time.time())) - 600  # recent: the buffer expires by wall-clock time too


def _message(t0, n=5, channels=("Channel 00", "Channel 01"), block="temps", agent="observatory.fake1"):
    t = t0 + np.arange(n) * 0.1
    data = {c: (t * (i + 1)).tolist() for i, c in enumerate(channels)}
    return [{block: {"block_name": block, "timestamps": t.tolist(), "data": data}},
            {"agent_address": agent, "feed_name": "temps", "record": True}]


class Log:
    def __init__(self):
        self.lines = []

    def warn(self, text, **kw):
        self.lines.append(text.format(**kw))


def test_channels_normalised_and_data_exact():
    buf = FeedBuffer(TOPIC, 3600)
    buf.handle(_message(T0))
    buf.handle(*_message(T0 + 0.5))  # both calling conventions of a subscription handler
    (tl,) = buf.timelines(0, T0 + 1000)
    assert tl.name == "temps" and set(tl.fields) == {"channel_00", "channel_01"}
    assert np.allclose(tl.t, T0 + np.arange(10) * 0.1)
    assert np.array_equal(tl.fields["channel_01"], tl.t * 2)
    field, timeline = buf.fields()
    assert set(field) == {"channel_00", "channel_01"} and timeline["temps"]["field"] == ["channel_00", "channel_01"]
    assert channel_name("Channel 07 R") == "channel_07_r"


def test_bad_messages_never_raise_and_are_logged_once():
    buf = FeedBuffer(TOPIC, 3600, log=Log())
    for bad in ["text", 42, None, [1, 2, 3], [{}, "x"], [{"b": "not a dict"}, {}],
                [{"b": {"timestamps": [1, 2], "data": {"x": [1]}}}, {}],
                [{"b": {"timestamps": [1, 2], "data": {"x": ["a", "b"]}}}, {}],
                [{"b": {"timestamps": "nope", "data": {}}}, {}]]:
        buf.handle(bad)
        buf.handle(bad)
    buf.handle(_message(T0, agent="observatory.intruder"))
    buf.handle(_message(T0 + 1, agent="observatory.intruder"))
    assert all(len(tl.t) == 0 for tl in buf.timelines(0, T0 + 1000))
    assert len(buf.log.lines) == len(set(buf.log.lines))
    assert any("intruder" in line for line in buf.log.lines)


def test_channel_appearing_later_has_nan_before():
    buf = FeedBuffer(TOPIC, 3600)
    buf.handle(_message(T0, channels=("a",)))
    buf.handle(_message(T0 + 1, channels=("a", "b")))
    (tl,) = buf.timelines(0, T0 + 1000)
    assert np.isnan(tl.fields["b"][:5]).all() and not np.isnan(tl.fields["b"][5:]).any()


def test_samples_older_than_the_buffer_time_are_gone():
    buf = FeedBuffer(TOPIC, 5.0)
    buf.handle(_message(time.time() - 8))
    buf.handle(_message(time.time() - 1))
    (tl,) = buf.timelines(0, time.time() + 10)
    assert len(tl.t) == 5 and tl.t[0] > time.time() - 5


def test_ring_evicts_by_time_and_stays_bounded():
    ring = TimeRing(span=10.0, capacity=16)
    sizes = set()
    for k in range(2000):
        t = 100.0 + k * 0.05 + np.arange(2) * 0.025  # 40 samples/s
        ring.extend(t, {"x": t})
        sizes.add(len(ring._t))
    t, values = ring.snapshot()
    assert t[-1] - t[0] <= 10.0 and len(t) <= 10.0 * 40 + 2
    assert np.array_equal(values["x"], t) and np.all(np.diff(t) > 0)
    assert max(sizes) <= 1024  # capacity follows the window, not the uptime


def test_ring_out_of_order_and_hard_cap():
    ring = TimeRing(span=1e9, max_samples=100)
    ring.extend([5.0, 6.0], {"x": [5.0, 6.0]})
    ring.extend([1.0, 2.0], {"x": [1.0, 2.0]})
    t, v = ring.snapshot()
    assert t.tolist() == [1.0, 2.0, 5.0, 6.0] and v["x"].tolist() == [1.0, 2.0, 5.0, 6.0]
    ring.extend(np.arange(10.0, 400.0), {"x": np.arange(10.0, 400.0)})
    assert len(ring) == 100 and ring.snapshot()[0][-1] == 399.0


def test_settings_errors_name_the_variables():
    with pytest.raises(ValueError, match="TARGET, NAME"):
        settings_from_env({"FEED": "x", "DESCRIPTION": "y"})
    cfg = settings_from_env({"TARGET": "t", "NAME": "n", "DESCRIPTION": "d"}, defaults={"FEED": "temperatures"})
    assert cfg["FEED"] == "temperatures" and cfg["BUFFER_TIME"] == 3600.0
    with pytest.raises(ValueError, match="BUFFER_TIME"):
        settings_from_env({"TARGET": "t", "FEED": "f", "NAME": "n", "DESCRIPTION": "d", "BUFFER_TIME": "soon"})


@pytest.mark.parametrize("script,missing", [("sisock-data-feed-server", "TARGET, FEED, NAME, DESCRIPTION"),
                                            ("sisock-thermometry-server", "TARGET, NAME, DESCRIPTION")])
def test_cli_exits_2_with_one_line(script, missing):
    env = {k: v for k, v in os.environ.items() if k not in ("TARGET", "FEED", "NAME", "DESCRIPTION")}
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), script)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and f"missing {missing}" in result.stderr
