"""The g3-reader as a real DataNodeServer: MariaDB index, router, bridge."""

import time

import numpy as np
import requests

from sisock.components.http.dispatch import REACTOR_POINTS

from conftest import node_names
from g3_helpers import START, make_archive, scan, window
from procs import wait_for


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(round((t % 1) * 1000)):03d}Z"


def test_g3_reader_through_router_and_bridge(stack, client, bridge, mariadb_env, tmp_path):
    data = tmp_path / "data"
    _, truth = make_archive(data, hours=5)
    scan(mariadb_env, data)
    reader = stack.proc("g3-reader", "sisock-g3-reader-server",
                        env={**mariadb_env, "DATA_DIRECTORY": str(data)}).start()
    try:
        wait_for(lambda: "g3_reader" in node_names(client), 30, "g3_reader to register")
        field, timeline = client.fields("g3_reader")
        assert sorted(field) == sorted(truth)
        assert all(timeline[name]["field"] == [name] for name in truth)  # one timeline per field

        names = sorted(truth)[:3]
        a, b = START + 1234.5, START + 9000.25
        got = client.data("g3_reader", names, a, b)
        for name in names:
            t, v = window(truth, name, a, b)
            assert np.array_equal(got[name].t, t) and np.array_equal(got[name].values, v)

        def listed():
            found = requests.post(stack.http + "/search", json={"target": "g3_reader::"}, timeout=5).json()
            return len(found) == len(truth)

        wait_for(listed, 30, "the bridge to list the g3 fields")
        body = {"range": {"from": _iso(a), "to": _iso(b)}, "maxDataPoints": 100,
                "targets": [{"target": f"g3_reader::{n}", "refId": n} for n in names]}
        series = requests.post(stack.http + "/query", json=body, timeout=30).json()
        for name, s in zip(names, series, strict=True):
            points = np.array(s["datapoints"], dtype=float)
            t, v = window(truth, name, a, b)
            assert 0 < len(points) <= 100
            assert v.max() in points[:, 0] and v.min() in points[:, 0]

        # Every sample of every field, too many points to be built in the
        # bridge's reactor: built in its WSGI pool, still every sample exact.
        everything = sorted(truth)
        a, b = START, START + 5 * 3600
        expected = {name: window(truth, name, a, b) for name in everything}
        assert sum(len(t) for t, _ in expected.values()) > REACTOR_POINTS
        body = {"range": {"from": _iso(a), "to": _iso(b)}, "maxDataPoints": 1_000_000,
                "targets": [{"target": f"g3_reader::{n}", "refId": n} for n in everything]}
        answer = requests.post(stack.http + "/query", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        for name, s in zip(everything, answer.json(), strict=True):
            t, v = expected[name]
            points = np.array(s["datapoints"], dtype=float)
            assert s["target"] == f"g3_reader::{name}"
            assert np.array_equal(points[:, 1], t * 1000.0) and np.array_equal(points[:, 0], v)
    finally:
        reader.stop()
