"""Load on a full local stack (`sisock up`: weather, sensors and the g3-reader
on its 1 Hz demo archive): many Grafana clients at once, a decade-long panel
at 1 s resolution, and answers too large to build. The tests print what they
measure; the only thresholds are the requirements (no errors, bounded answers,
refusals with a reason)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import orjson
import pytest
import requests

from procs import free_port, wait_for

CLIENTS = 50
SECONDS = 60.0
NODE = "apex_archive"
FIELDS = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]
YEAR = 365 * 86400
SEARCHES = ["", "apex", "temp", "g3_reader::", "sensors::", "LSA22YE", "pressure"]


def _children(pid) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    kids = [int(x) for x in out.split()]
    return kids + [d for k in kids for d in _children(k)]


def _cmdline(pid) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _rss_mib(pid) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


class Up:
    def __init__(self, http, proc):
        self.http = http
        self.proc = proc

    @property
    def bridge_pid(self) -> int:
        pids = [p for p in _children(self.proc.pid) if "sisock-http" in _cmdline(p)]
        assert pids, "no bridge process under sisock up"
        return pids[0]


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """``sisock up`` with its default servers, on free ports."""
    root = tmp_path_factory.mktemp("load-stack")
    ports = {"CROSSBAR_TLS_PORT": free_port(), "CROSSBAR_OCS_PORT": free_port(), "PORT": free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "WAMP_SECRET": "load-test-secret",
           "LOGLEVEL": "warn"}
    env.pop("SISOCK_CERT", None)
    log = open(root / "up.log", "wb")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "sisock"), "up",
                             "--state-dir", str(root / "state")],
                            env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    http = f"http://127.0.0.1:{ports['PORT']}"
    started = time.monotonic()
    try:
        def serving():
            names = requests.post(http + "/search", json={}, timeout=5).json()
            return (all(f"{NODE}::{f}" in names for f in FIELDS)
                    and any(n.startswith("g3_reader::") for n in names)
                    and any(n.startswith("sensors::") for n in names))

        wait_for(serving, 120, "sisock up to serve weather, sensors and g3_reader")
        g3 = _g3_fields(http)

        def g3_data():  # the first scan may still be indexing
            end = time.time()
            return _post(requests, http, "/query", _body(end - 6 * 3600, end, g3[:1], 100)).json()[0]["datapoints"]

        wait_for(g3_data, 120, "the g3 demo archive to be indexed")
        print(f"\nsisock up serving after {time.monotonic() - started:.1f} s")
        yield Up(http, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _g3_fields(http) -> list[str]:
    return sorted(n for n in requests.post(http + "/search", json={"target": "g3_reader::"}, timeout=10).json())


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _body(start, end, targets, max_points=None, interval_ms=None):
    body = {"range": {"from": _iso(start), "to": _iso(end)},
            "targets": [{"target": t, "refId": chr(65 + i % 26)} for i, t in enumerate(targets)]}
    if max_points is not None:
        body["maxDataPoints"] = max_points
    if interval_ms is not None:
        body["intervalMs"] = interval_ms
    return body


def _post(session, http, path, body, timeout=60):
    return session.post(http + path, data=orjson.dumps(body), headers={"Content-Type": "application/json"},
                        timeout=timeout)


# -- 50 SimpleJson clients for a minute ----------------------------------------------------------

class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = {"search": [], "query": []}
        self.errors = []
        self.points = 0
        self.bytes = 0

    def add(self, kind, seconds, size, points=0):
        with self.lock:
            self.latencies[kind].append(seconds)
            self.bytes += size
            self.points += points

    def error(self, what):
        with self.lock:
            self.errors.append(what)


def _client(http, seed, deadline, results: Results):
    rng = random.Random(seed)
    session = requests.Session()
    try:
        while time.monotonic() < deadline:
            if rng.random() < 0.3:
                kind, path, body = "search", "/search", {"target": rng.choice(SEARCHES)}
            else:
                end = float(int(time.time()))  # whole seconds: viewers of one dashboard ask the same
                span = rng.choice([6 * 3600, 24 * 3600])
                targets = [f"{NODE}::{f}" for f in rng.sample(FIELDS, rng.randint(1, len(FIELDS)))]
                max_points = rng.choice([800, 1000, 1200])
                kind, path, body = "query", "/query", _body(end - span, end, targets, max_points,
                                                            span * 1000 // max_points)
            started = time.perf_counter()
            try:
                r = _post(session, http, path, body)
            except requests.RequestException as exc:
                results.error(f"{path}: {exc!r}")
                continue
            elapsed = time.perf_counter() - started
            if r.status_code != 200:
                results.error(f"{path}: {r.status_code} {r.text[:200]}")
                continue
            answer = orjson.loads(r.content)
            points = 0
            if kind == "query":
                if [s["target"] for s in answer] != [t["target"] for t in body["targets"]]:
                    results.error(f"/query: wrong series {[s['target'] for s in answer]}")
                    continue
                for s in answer:
                    n = len(s["datapoints"])
                    if not 0 < n <= body["maxDataPoints"]:
                        results.error(f"/query: {s['target']} has {n} points (max {body['maxDataPoints']})")
                    points += n
            results.add(kind, elapsed, len(r.content), points)
    finally:
        session.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fifty_simplejson_clients_for_a_minute(up):
    rss_before = _rss_mib(up.bridge_pid)
    results = Results()
    deadline = time.monotonic() + SECONDS
    started = time.monotonic()
    clients = [threading.Thread(target=_client, args=(up.http, i, deadline, results)) for i in range(CLIENTS)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    elapsed = time.monotonic() - started
    every = results.latencies["search"] + results.latencies["query"]
    total = len(every)
    print(f"\n{CLIENTS} clients for {elapsed:.1f} s: {total} requests, {total / elapsed:.0f} requests/s, "
          f"{len(results.errors)} errors; {results.bytes / 1e6:.0f} MB and {results.points} points answered")
    for kind, lat in [("all", every), *results.latencies.items()]:
        if lat:
            ms = np.array(lat) * 1000
            p50, p99 = np.percentile(ms, [50, 99])
            print(f"  {kind:6s} n={len(ms):6d}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max {ms.max():7.1f} ms")
    rss_after = _rss_mib(up.bridge_pid)
    print(f"  bridge RSS {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")
    assert results.errors == [], results.errors[:10]
    assert len(results.latencies["query"]) > CLIENTS and len(results.latencies["search"]) > CLIENTS


# -- long ranges and oversized answers -----------------------------------------------------------

@pytest.mark.slow
def test_ten_years_at_one_hertz_is_quick_and_bounded(up):
    """A decade at Grafana's 1 s interval: the bridge caps the points per
    target, the servers decimate before anything crosses the wire, and the
    mostly empty range costs nothing."""
    g3 = _g3_fields(up.http)
    end = time.time()
    start = end - 10 * YEAR
    cases = [
        ("g3 field, intervalMs 1000", [g3[0]], None, 1000),
        ("weather field, intervalMs 1000", [f"{NODE}::apex_temperature"], None, 1000),
        ("g3 + weather, maxDataPoints 1000", [g3[0], f"{NODE}::apex_temperature"], 1000, 10 * YEAR * 1000 // 1000),
    ]
    for name, targets, max_points, interval_ms in cases:
        body = _body(start, end, targets, max_points, interval_ms)
        cold = time.perf_counter()
        r = _post(requests, up.http, "/query", body)
        elapsed = time.perf_counter() - cold
        assert r.status_code == 200, r.text
        answer = r.json()
        counts = [len(s["datapoints"]) for s in answer]
        print(f"\n10 years, {name}: {elapsed * 1000:.0f} ms, {len(r.content) / 1024:.0f} KiB, points {counts}")
        cap = max_points or 1_000_000
        assert all(0 < n <= cap for n in counts)
        assert len(r.content) < 10 * 1024 * 1024
    # The same through the REST API.
    params = {"target": g3[0], "from": str(int(start * 1000)), "to": str(int(end * 1000)), "intervalMs": "1000"}
    cold = time.perf_counter()
    r = requests.get(up.http + "/api/v1/data", params=params, timeout=60)
    elapsed = time.perf_counter() - cold
    assert r.status_code == 200, r.text
    print(f"10 years through /api/v1/data: {elapsed * 1000:.0f} ms, {len(r.content) / 1024:.0f} KiB, "
          f"{len(r.json())} rows")


@pytest.mark.slow
def test_answers_beyond_the_allowance_are_refused(up):
    g3 = _g3_fields(up.http)
    everything = [n for n in requests.post(up.http + "/search", json={}, timeout=10).json()]
    end = time.time()
    rss_before = _rss_mib(up.bridge_pid)
    # Judged on what the range holds: ten years hold the demo's three days,
    # which maxDataPoints 1,000,000 over ten years thins to a panel's worth.
    r = _post(requests, up.http, "/query", _body(end - 10 * YEAR, end, everything, 1_000_000))
    assert r.status_code == 200 and sum(len(s["datapoints"]) for s in r.json()) < 100_000
    days = 3 * 86400  # the demo archive: 1 Hz, all raw at these strides
    cases = [
        ("maxDataPoints 1,000,000 x every g3 field over 3 days", _body(end - days, end, g3, 1_000_000)),
        ("intervalMs 1 over 3 days x every g3 field", _body(end - days, end, g3, None, 1)),
        ("maxDataPoints 1,000,000 x 500 copies", _body(end - 86400, end, [g3[0]] * 500, 1_000_000)),
    ]
    for name, body in cases:
        started = time.perf_counter()
        r = _post(requests, up.http, "/query", body)
        elapsed = time.perf_counter() - started
        said = r.json()["message"] if r.status_code != 200 else f"{sum(len(x['datapoints']) for x in r.json())} points"
        print(f"\n{name} ({len(body['targets'])} targets): {r.status_code} in {elapsed * 1000:.0f} ms: {said}")
        assert r.status_code == 400
        message = r.json()["message"]
        assert _refused(message) and "\n" not in message
    # 500 copies of one field: the node sends it once, the answer would hold 500 of it.
    assert "more than the 2000000 one answer may hold" in message
    r = requests.get(up.http + "/api/v1/data", params={"target": "g3_reader::*", "maxDataPoints": "1000000",
                                                       "from": str(int((end - days) * 1000))}, timeout=60)
    assert r.status_code == 400 and _refused(r.json()["message"])
    many = _body(end - 3600, end, [f"x{i}::f" for i in range(1001)], 10)
    r = _post(requests, up.http, "/query", many)
    assert r.status_code == 400 and "1000 targets" in r.json()["message"]
    # At the allowance, the answer is built and stays bounded.
    body = _body(end - 3 * 86400, end, g3[:2], 1_000_000)
    started = time.perf_counter()
    r = _post(requests, up.http, "/query", body)
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    counts = [len(s["datapoints"]) for s in r.json()]
    print(f"2 g3 fields x 1,000,000 points over 3 days: {elapsed * 1000:.0f} ms, {len(r.content) / 1e6:.1f} MB, "
          f"points {counts}")
    assert all(0 < n <= 1_000_000 for n in counts)
    rss_after = _rss_mib(up.bridge_pid)
    print(f"bridge RSS {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")


def _refused(message: str) -> bool:
    """The bridge's allowance, or the data node's own estimate, said no."""
    return "one answer may hold" in message or "refused to send that much" in message


@pytest.mark.slow
def test_a_data_node_refusal_is_not_an_empty_answer(up):
    """Within the bridge's allowance a data node may still refuse a reply
    too large for the router (``contract.MAX_REPLY_VALUES``): seven 1 Hz g3
    fields over three days, raw. The panel must get data or a 4xx saying
    why, never empty series that look like missing data."""
    g3 = _g3_fields(up.http)
    end = time.time()
    r = _post(requests, up.http, "/query", _body(end - 3 * 86400, end, g3[:7], 280_000))
    if r.status_code == 200:
        counts = [len(s["datapoints"]) for s in r.json()]
        print(f"\nseven g3 fields x 280,000 points over 3 days: points {counts}")
        assert all(n > 0 for n in counts), counts
    else:
        assert r.status_code == 400 and "\n" not in r.json()["message"], r.text
