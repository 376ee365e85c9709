"""Every point sisock returns is a real archive sample, at every zoom.

The archive is written by the tests (so3g files: two feeds with spikes every
half hour, gaps, two rates, plus a feed of integer, boolean, string and float
fields), indexed in MariaDB, and read back by so3g's own ``HKArchiveScanner``
as the truth. Random ranges and zooms are then asked of the g3-reader in
process and, through a real router and bridge, in every dialect: SimpleJson
timeseries and tables, the REST API's rows and columns, and the Python
client. Each answer is checked sample by sample: its times equal the
archive's (times ms equal ``t * 1000.0`` bit for bit on HTTP), its values
equal, each answer bucket's minimum and maximum sample present, every
spike at its own time.
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import requests
import sqlalchemy as sa
from m4_check import assert_exact_samples, assert_m4

from sisock.downsample import bucket_width, stride_for_points
from sisock.g3.summary import LEVELS, choose_level
from sisock.servers import g3_reader
from sisock.servers.g3_reader import REACTOR_POINTS, G3Reader, NotInMemory

from conftest import MARIADB, node_names
from g3_helpers import START, TYPED, archive, make_archive, scan, write_typed_file
from procs import wait_for

HOURS = 30
SPIKE = 500.0  # the demo's spikes add 1000 to a signal of order 100 at most
SPIKE_EVERY = 1800.0  # make_archive's spacing of spikes
SPANS = (120.0, 900.0, 3600.0, 6 * 3600.0, 24 * 3600.0, HOURS * 3600.0)
MAX_POINTS = (20, 50, 300, 1000, 4000)
TYPED_START, TYPED_COUNT = START + 3 * 3600 + 0.5, 3000


@pytest.fixture(scope="module")
def exact(tmp_path_factory, mariadb_server):
    import so3g

    name = f"sisock_test_{uuid.uuid4().hex[:12]}"
    with mariadb_server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))  # name is generated above
    env = {**MARIADB, "SQL_DB": name}
    data = tmp_path_factory.mktemp("exact") / "data"
    paths, _ = make_archive(data, hours=HOURS)
    typed = write_typed_file(str(data / "17000" / f"{int(TYPED_START)}.g3"), TYPED_START, TYPED_COUNT)
    scan(env, data)
    scanner = so3g.hk.HKArchiveScanner()
    for path in [*paths, str(data / "17000" / f"{int(TYPED_START)}.g3")]:
        scanner.process_file(path)
    hk = scanner.finalize()
    numbers = sorted(n for n in hk.get_fields()[0] if not n.startswith(TYPED))
    values, timelines = hk.get_data(numbers)
    truth = {}
    for tl in timelines.values():
        for field in tl["fields"]:
            truth[field] = (np.asarray(tl["t"], dtype=np.float64), np.asarray(values[field], dtype=np.float64))
    yield SimpleNamespace(env=env, data=data, truth=truth, typed=typed, names=numbers)
    with mariadb_server.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


def _cases(n, seed):
    """Random ``(start, end, stride)`` over the archive, as Grafana asks them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        span = float(rng.choice(SPANS)) * float(rng.uniform(0.7, 1.0))
        a = float(START + rng.uniform(-600, HOURS * 3600 - span / 2)) + 0.001 * int(rng.integers(0, 1000))
        out.append((a, a + span, stride_for_points(span, int(rng.choice(MAX_POINTS)))))
    return out


def _check_series(truth, name, a, b, stride, t, v):
    tt, tv = truth[name]
    width = bucket_width(stride)
    assert_m4(tt, tv, t, v, a, b, width, choose_level(width))
    if width >= SPIKE_EVERY:  # several spikes share a bucket: only its highest can be its maximum
        return len(t), 0
    inside = (tt >= a) & (tt <= b)
    spikes = set(zip(tt[inside & (tv > SPIKE)].tolist(), tv[inside & (tv > SPIKE)].tolist(), strict=True))
    assert spikes <= set(zip(np.asarray(t).tolist(), np.asarray(v).tolist(), strict=True)), "a spike is missing"
    return len(t), len(spikes)


def test_reader_answers_are_exact_samples_at_every_zoom(exact):
    reader = G3Reader(archive=archive(exact.env, exact.data))
    points = spikes = 0
    levels = set()
    for a, b, stride in _cases(80, seed=2026):
        reply = reader.answer_get_data(exact.names, a, b, stride)
        levels.add(choose_level(bucket_width(stride)))
        for name in exact.names:
            got = _check_series(exact.truth, name, a, b, stride, reply["timeline"].get(name, {}).get("t", []),
                                reply["data"][name])
            points, spikes = points + got[0], spikes + got[1]
    assert {None, *LEVELS[:2]} <= levels, f"zooms exercised only {levels}"
    assert points > 100_000 and spikes > 100
    print(f"\n{points} points and {spikes} spikes checked against so3g, at levels {sorted(levels, key=str)}")


def test_answers_from_memory_are_the_answers_or_refused(exact, monkeypatch):
    """What the reader answers in the reactor (from memory alone) is byte
    for byte what the answer thread computes; anything not in memory yet,
    and an index generation gone stale, is refused, never waited for."""
    monkeypatch.setattr(g3_reader, "GENERATION_TTL", 3600.0)  # read once, below, for the whole test
    reader = G3Reader(archive=archive(exact.env, exact.data))
    memory = reader.archive
    memory.fresh_generation()
    cases = _cases(30, seed=7)
    for a, b, stride in cases:
        with pytest.raises(NotInMemory, match="file lists|newest|first"), memory.from_memory():  # nothing listed yet
            reader.answer_get_data_packed(exact.names, a, b, stride)
    assert not memory.memory_only
    served = 0
    for a, b, stride in cases:
        want = reader.answer_get_data_packed(exact.names, a, b, stride)  # as the answer thread does
        try:
            with memory.from_memory():
                got = reader.answer_get_data_packed(exact.names, a, b, stride)
        except NotInMemory:  # an answer over REACTOR_POINTS
            assert memory.estimate(exact.names, a, b, stride) > REACTOR_POINTS
            continue
        assert got == want
        served += 1
    assert served > len(cases) // 2
    # Decoded files bucketed anew in the reactor (another width: no tiles
    # yet), within the allowance, give what a reader with nothing cached does.
    fresh = G3Reader(archive=archive(exact.env, exact.data))
    bucketed = 0
    for a, b, stride in cases:
        if not stride:
            continue
        try:
            with memory.from_memory():
                got = reader.answer_get_data_packed(exact.names, a, b, stride * 1.37)
        except NotInMemory:  # over the allowance, or another level's summaries not read yet
            continue
        assert got == fresh.answer_get_data_packed(exact.names, a, b, stride * 1.37)
        bucketed += 1
    assert bucketed > 0
    a, b, stride = cases[0]
    reader.answer_get_data_packed(exact.names, a, b, stride)
    monkeypatch.setattr(g3_reader, "GENERATION_TTL", 0.0)  # the generation must be read again
    with pytest.raises(NotInMemory, match="generation"), memory.from_memory():
        reader.answer_get_data_packed(exact.names, a, b, stride)


def test_raw_answers_equal_the_archive(exact):
    reader = G3Reader(archive=archive(exact.env, exact.data))
    a, b = START + 1000.25, START + 5 * 3600 - 0.5
    reply = reader.answer_get_data(exact.names, a, b)
    for name in exact.names:
        t, v = exact.truth[name]
        inside = (t >= a) & (t <= b)
        assert reply["timeline"][name]["t"] == t[inside].tolist()
        assert reply["data"][name] == v[inside].tolist()


def test_integer_boolean_and_string_fields_keep_their_type(exact):
    reader = G3Reader(archive=archive(exact.env, exact.data))
    field, _ = reader.answer_get_fields(START - 10, START + HOURS * 3600)
    assert {name: field[name]["type"] for name in exact.typed} == {
        f"{TYPED}.count": "number", f"{TYPED}.ok": "bool", f"{TYPED}.state": "string", f"{TYPED}.level": "number"}
    # Integers are numbers marked as integers; no other field carries the mark.
    assert {name for name in exact.typed if field[name].get("integer")} == {f"{TYPED}.count"}
    assert all(field[name].get("integer", True) is True for name in field)
    names = sorted(exact.typed)
    a, b = TYPED_START - 5, TYPED_START + 2 * TYPED_COUNT
    raw = reader.answer_get_data(names, a, b)
    for name in names:
        t, v = exact.typed[name]
        assert raw["timeline"][name]["t"] == t.tolist() and raw["data"][name] == v.tolist()
    assert all(type(x) is int for x in raw["data"][f"{TYPED}.count"])
    assert all(type(x) is bool for x in raw["data"][f"{TYPED}.ok"])
    assert all(type(x) is str for x in raw["data"][f"{TYPED}.state"])
    for stride in (7.0, 60.0, 700.0):  # raw, 10 s and 60 s summaries
        reply = reader.answer_get_data(names, a, b, stride)
        width = bucket_width(stride)
        for name in names:
            t, v = exact.typed[name]
            got_t, got_v = reply["timeline"][name]["t"], reply["data"][name]
            if name.endswith("state"):  # strings: each bucket's first and last reading, never numbers
                assert all(type(x) is str for x in got_v)
                assert_exact_samples(t, v, got_t, got_v)
                keys = np.floor(t / width)
                firsts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
                assert set(t[firsts].tolist()) <= set(got_t)
                continue
            assert_m4(t, v, got_t, got_v, a, b, width, choose_level(width))
            want = int if name.endswith("count") else bool if name.endswith("ok") else float
            assert all(type(x) is want for x in got_v), (name, stride)


def _iso(t):
    """``t`` rounded to the ms, in ISO 8601 (what Grafana sends)."""
    ms = round(t * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _ms(x):
    """Epoch ms as the bridge writes them: float seconds times 1000.0."""
    return np.asarray(x, dtype=np.float64) * 1000.0


def test_every_dialect_returns_exact_samples(stack, client, bridge, exact):
    reader = stack.proc("g3-reader-exact", "sisock-g3-reader-server",
                        env={**exact.env, "DATA_DIRECTORY": str(exact.data)}).start()
    try:
        wait_for(lambda: "g3_reader" in node_names(client), 60, "g3_reader to register")
        names = exact.names[:3] + [f"{TYPED}.state", f"{TYPED}.count"]

        def listed():
            found = requests.post(stack.http + "/search", json={"target": "g3_reader::"}, timeout=5).json()
            return {f"g3_reader::{n}" for n in names} <= set(found)

        wait_for(listed, 60, "the bridge to list the g3 fields")
        http = requests.Session()
        for a, b, _ in _cases(12, seed=7):
            max_points = 1000
            stride = stride_for_points(b - a, max_points)
            mine = client.data("g3_reader", names, a, b, min_stride=stride)
            for name in exact.names[:3]:
                _check_series(exact.truth, name, a, b, stride, mine[name].t, mine[name].values)
            body = {"range": {"from": _iso(a), "to": _iso(b)}, "maxDataPoints": max_points,
                    "targets": [{"target": f"g3_reader::{n}", "refId": n} for n in names]}
            # The ISO range is rounded to the ms; the bridge's stride is that of its own range.
            a_ms, b_ms = round(a * 1000) / 1000, round(b * 1000) / 1000
            again = client.data("g3_reader", names, a_ms, b_ms, min_stride=stride_for_points(b_ms - a_ms, 1000))
            want = {name: (_ms(again[name].t).tolist(), list(again[name].values)) for name in names if name in again}
            series = http.post(stack.http + "/query", json=body, timeout=30).json()
            for s in series:
                name = s["target"].split("::", 1)[1]
                got = ([p[1] for p in s["datapoints"]], [p[0] for p in s["datapoints"]])
                assert got == want.get(name, ([], [])), name
            tables = http.post(stack.http + "/query", timeout=30, json={
                **body, "targets": [{**t, "type": "table"} for t in body["targets"]]}).json()
            for tbl in tables:
                name = tbl["columns"][1]["text"].split("::", 1)[1]
                assert ([r[0] for r in tbl["rows"]], [r[1] for r in tbl["rows"]]) == want.get(name, ([], [])), name
            columns = http.get(stack.http + "/api/v1/data", timeout=30, params={
                "target": [f"g3_reader::{n}" for n in names], "from": _iso(a), "to": _iso(b),
                "maxDataPoints": max_points, "format": "columns"}).json()
            for s in columns["series"]:
                name = s["field"]
                assert (s["time"], s["value"]) == want.get(name, ([], [])), name
    finally:
        reader.stop()


class _FreshReader(G3Reader):
    name = "g3_reader_fresh"


def test_a_joined_reader_keeps_its_generation_fresh_while_idle(stack, client, exact):
    """Once joined, the reader reads the index's generation in the
    background, so a request after any idle time (a dashboard refreshing
    every 30 s, the first one after a restart) finds it fresh and may be
    answered from memory, in the reactor, without a database round trip."""
    from twisted.internet import threads

    from sisock.connect import Connection

    memory = archive(exact.env, exact.data)
    reactor = client.link.reactor

    def start():
        return Connection(lambda config: _FreshReader(config, archive=memory), stack.settings, reactor).start()

    connection = threads.blockingCallFromThread(reactor, start)
    try:
        wait_for(lambda: "g3_reader_fresh" in node_names(client), 60, "the reader to join")
        ages = []
        for _ in range(8):
            time.sleep(g3_reader.GENERATION_TTL / 2)
            ages.append(time.monotonic() - memory._generation[1])
            with memory.from_memory():  # raises NotInMemory("the index's generation") once stale
                memory.fresh_generation()
        assert max(ages) < g3_reader.GENERATION_TTL, ages
    finally:
        threads.blockingCallFromThread(reactor, connection.stop)
    time.sleep(2 * g3_reader.GENERATION_TTL)
    with pytest.raises(NotInMemory, match="generation"), memory.from_memory():  # left: nobody reads it
        memory.fresh_generation()


def test_what_a_prefetch_leaves_is_out_of_the_collectors_way_and_still_freed(exact):
    """After a prefetch what it left in the cache is frozen (the collector's
    full passes do not walk it: one of them took 60 ms of the first request
    after a restart), and what the cache drops is still freed."""
    import gc
    import weakref

    from sisock.g3.index import Location

    memory = archive(exact.env, exact.data)
    try:
        g3_reader._prefetch(memory, None, plan=True)
        listed = [loc for key, (value, _) in memory.cache._data.items() if key[0] == "files" for loc in value]
        assert listed and all(isinstance(loc, Location) for loc in listed), "the prefetch listed no file"
        tracked = {id(o) for o in gc.get_objects()}
        assert not any(id(loc) in tracked for loc in listed), "the collector still walks the prefetch's file lists"
        refs = [weakref.ref(loc) for loc in listed]
        del listed, tracked
        memory.cache.discard(lambda key: True)
        assert all(ref() is None for ref in refs), "frozen file lists the cache dropped were not freed"
    finally:
        gc.unfreeze()
