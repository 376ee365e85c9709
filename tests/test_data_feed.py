"""The data-feed server against a real OCS FakeDataAgent through the router:
what the agent publishes is what /query returns, old samples expire, and
memory stays bounded under a fast feed."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import pytest
import requests

from sisock.components.ocs_site import AgentSpec

from conftest import node_names
from ocs_fixtures import OcsSite
from procs import wait_for

FEED = "false_temperatures"


def _iso(t, up=False):
    """ISO 8601 to the millisecond, rounded outwards so the range holds ``t``."""
    ms = int(np.ceil(t * 1000) if up else np.floor(t * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class Recorder:
    """What the agent published, as the test itself received it."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()

    def __call__(self, message, *args, **kwargs):
        blocks, _feed = message
        with self.lock:
            self.messages.append((time.time(), blocks))

    def samples(self, channel):
        with self.lock:
            chunks = [(b["timestamps"], b["data"][channel]) for _, blocks in self.messages for b in blocks.values()
                      if channel in b["data"]]
        t = np.concatenate([np.asarray(c[0], dtype=float) for c in chunks])
        v = np.concatenate([np.asarray(c[1], dtype=float) for c in chunks])
        return t, v


def _start(stack, tmp_path, agent_id, name, buffer_time, channels=2, rate=10.0):
    site = OcsSite(stack, tmp_path / "site", [AgentSpec(agent_id, "FakeDataAgent", [
        "--mode", "acq", "--num-channels", channels, "--sample-rate", rate, "--frame-length", 1])])
    feed = stack.proc(f"feed-{name}", "sisock-data-feed-server", env={
        "TARGET": agent_id, "FEED": FEED, "NAME": name, "DESCRIPTION": f"{agent_id} live",
        "BUFFER_TIME": str(buffer_time)})
    return site, feed


def _query(stack, name, channels, start, end, max_points=100_000):
    body = {"range": {"from": _iso(start), "to": _iso(end, up=True)}, "maxDataPoints": max_points,
            "targets": [{"target": f"{name}::{c}", "refId": c} for c in channels]}
    r = requests.post(stack.http + "/query", json=body, timeout=10)
    r.raise_for_status()
    return {s["target"].split("::")[1]: np.array(s["datapoints"], dtype=float).reshape(-1, 2) for s in r.json()}


def test_published_samples_come_back_exactly_and_expire(stack, client, bridge, tmp_path):
    agent, name, buffer_time = "fake-live1", "live_feed1", 25.0
    recorder = Recorder()
    site, feed = _start(stack, tmp_path, agent, name, buffer_time)
    try:
        client.subscribe(f"observatory.{agent}.feeds.{FEED}", recorder)
        feed.start()
        wait_for(lambda: name in node_names(client), 30, f"{name} to register")
        site.start(agent)
        site.wait_for_log(agent, "Starting acquisition")
        wait_for(lambda: len(recorder.messages) >= 3, 30, "three messages from the agent")

        channels = ["channel_00", "channel_01"]
        t_pub, v_pub = recorder.samples("channel_00")
        start, end = t_pub[0] - 1e-4, t_pub[-1] + 1e-4
        seen: list[int] = []

        def served():
            seen.append(len(_query(stack, name, channels, start, end)["channel_00"]))
            return seen[-1] >= len(t_pub)

        wait_for(served, 5, f"the bridge to serve the {len(t_pub)} samples published")
        got = _query(stack, name, channels, start, end)
        for channel in channels:
            t_pub, v_pub = recorder.samples(channel)
            sel = (t_pub >= start) & (t_pub <= end)
            points = got[channel]
            assert np.array_equal(points[:, 1], np.round(t_pub[sel] * 1000.0, 6)) or \
                np.allclose(points[:, 1], t_pub[sel] * 1000.0, rtol=0, atol=1e-3)
            assert np.array_equal(points[:, 0], v_pub[sel])

        # Latency: from the moment a message reaches us to the moment /query shows it.
        delays = []
        for _ in range(5):
            count = len(recorder.messages)
            wait_for(lambda count=count: len(recorder.messages) > count, 10, "the next message")
            received, blocks = recorder.messages[-1]
            last = max(max(b["timestamps"]) for b in blocks.values())

            def shown(last=last):
                pts = _query(stack, name, ["channel_00"], last - 5, last + 1)["channel_00"]
                return len(pts) and pts[-1, 1] >= last * 1000.0 - 1e-3

            wait_for(shown, 5, "the newest sample in /query", interval=0.005)
            delays.append(time.time() - received)
        print(f"\npublished -> visible in /query: median {np.median(delays) * 1e3:.0f} ms, "
              f"max {max(delays) * 1e3:.0f} ms over {len(delays)} messages")

        # Older than BUFFER_TIME: gone; the newest samples still there.
        first_t = recorder.samples("channel_00")[0][0]
        wait_for(lambda: time.time() > first_t + buffer_time + 2, buffer_time + 10, "the buffer to roll over")
        assert len(_query(stack, name, ["channel_00"], first_t - 1, first_t + 1)["channel_00"]) == 0
        assert len(_query(stack, name, ["channel_00"], time.time() - 5, time.time() + 1)["channel_00"]) > 0
        field, timeline = client.fields(name)
        assert set(channels) <= set(field) and all(field[c]["timeline"] in timeline for c in channels)
    finally:
        site.stop()
        feed.stop()


@pytest.mark.slow
def test_fast_feed_keeps_memory_bounded(stack, client, tmp_path):
    """200 Hz x 20 channels for 2 minutes: once the buffer is full, RSS
    must stop growing (under 50 MB more by the end)."""
    agent, name, buffer_time = "fake-fast1", "fast_feed1", 30.0
    site, feed = _start(stack, tmp_path, agent, name, buffer_time, channels=20, rate=200.0)
    try:
        feed.start()
        wait_for(lambda: name in node_names(client), 30, f"{name} to register")
        site.start(agent)
        site.wait_for_log(agent, "Starting acquisition")
        started = time.time()
        process = psutil.Process(feed.popen.pid)
        wait_for(lambda: time.time() > started + buffer_time + 5, buffer_time + 20, "the buffer to fill")
        full = process.memory_info().rss
        rss = []
        while time.time() < started + 120:
            rss.append(process.memory_info().rss)
            time.sleep(2)
        t, v = client.data(name, ["channel_00"], time.time() - 10, time.time())["channel_00"]
        growth = (max(rss) - full) / 2**20
        print(f"\nfast feed: RSS {full / 2**20:.0f} MB when the buffer was full, max {max(rss) / 2**20:.0f} MB "
              f"later (+{growth:.1f} MB); {len(t) / 10:.0f} samples/s served")
        assert growth < 50
        assert len(t) > 10 * 150  # the feed really ran at ~200 Hz
    finally:
        site.stop()
        feed.stop()
