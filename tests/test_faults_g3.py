"""Reliability of the g3 path under faults: the index database killed for
30 s during a scan and during queries, the scanner killed at random moments,
broken ``.g3`` files in the middle of an archive. The database is a private
MariaDB server (the shared one stays up for the other tests); the g3-reader
runs behind a private router, hub and bridge. Each test prints its figures.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import sqlalchemy as sa
from autobahn.wamp.exception import ApplicationError

from sisock.demo.g3 import Provider
from sisock.g3.index import database_url
from sisock.servers.g3_reader import GENERATION_TTL, INDEX_UNAVAILABLE

from conftest import Stack
from g3_helpers import (
    PROVIDERS,
    START,
    expected_file_ranges,
    garbage_file,
    kill_scanner,
    make_archive,
    open_index,
    scan,
    snapshot,
    truncate_file,
    window,
)
from mariadb_private import PrivateMariaDB
from procs import wait_for

#: How long the database stays down (the issue's figure).
OUTAGE = 30.0
#: The bridge's call timeout: a query must never wait longer than this.
CALL_TIMEOUT = 30.0
SCANNER = os.path.join(os.path.dirname(sys.executable), "sisock-g3-file-scanner")
#: Many small files, so a scan lasts long enough to be interrupted.
BIG_PROVIDERS = [Provider(f"observatory.agent{i}.feeds.hk", [f"f{j}" for j in range(6)]) for i in range(3)]
BIG_FILE_SECONDS = 60


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    server = PrivateMariaDB(str(tmp_path_factory.mktemp("mariadb"))).install().start()
    yield server
    server.stop()


_databases = iter(range(1000))


def fresh_database(db) -> dict:
    name = f"faults_{next(_databases)}"
    db.sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    return db.env(name)


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory):
    """~1000 files of three providers: a first scan takes seconds, not milliseconds."""
    data = tmp_path_factory.mktemp("big") / "data"
    paths, truth = make_archive(data, hours=16, providers=BIG_PROVIDERS, file_seconds=BIG_FILE_SECONDS, gaps=())
    reference = expected_file_ranges(paths, str(data), truth, BIG_PROVIDERS, file_seconds=BIG_FILE_SECONDS)
    return data, paths, reference


@pytest.fixture(scope="module")
def g3_stack(tmp_path_factory):
    s = Stack(str(tmp_path_factory.mktemp("g3-faults")))
    try:
        s.start_router()
        s.hub = s.proc("hub", "sisock-hub").start()
        s.bridge = s.proc("http", "sisock-http").start()
        yield s
    finally:
        s.stop_all()


@pytest.fixture(scope="module")
def client(g3_stack):
    from sisock.client import Client

    c = Client(g3_stack.settings, timeout=30)
    yield c
    c.close()


def indexed(engine) -> int:
    """Files the index holds (0 while the tables do not exist yet)."""
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM files")).scalar_one()
    except sa.exc.SQLAlchemyError:
        return 0


def run_scanner(env, data, log_path) -> subprocess.Popen:
    full = {**os.environ, **env, "DATA_DIRECTORY": str(data), "LOGLEVEL": "info", "SCAN_WORKERS": "2"}
    with open(log_path, "ab") as log:
        return subprocess.Popen([SCANNER, "--once"], env=full, stdout=log, stderr=subprocess.STDOUT)


def assert_index_is(env, reference):
    index = open_index(env)
    try:
        assert snapshot(index) == reference
    finally:
        index.dispose()


def start_reader(stack, client, env, data, tag):
    reader = stack.proc(tag, "sisock-g3-reader-server", env={**env, "DATA_DIRECTORY": str(data)}).start()
    wait_for(lambda: "g3_reader" in {n["name"] for n in client.data_nodes()}, 30, "g3_reader to register")
    return reader


def stop_reader(reader, client):
    reader.stop()
    wait_for(lambda: "g3_reader" not in {n["name"] for n in client.data_nodes()}, 10, "g3_reader to leave")


# -- the index database goes away ---------------------------------------------------


@pytest.mark.slow
def test_database_killed_during_a_scan(db, big_archive, tmp_path):
    data, paths, reference = big_archive
    env = fresh_database(db)
    engine = sa.create_engine(database_url(env), pool_pre_ping=True)
    log_path = tmp_path / "scanner.log"
    scanner = run_scanner(env, data, log_path)
    try:
        wait_for(lambda: indexed(engine) >= 20, 60, "the scan to get going", interval=0.01)
        engine.dispose()
        db.kill()
        killed = time.monotonic()
        at_kill = scanner.poll() is None
        assert at_kill, "the scan ended before the database was killed: make the archive larger"
        while time.monotonic() - killed < OUTAGE:
            assert scanner.poll() is None, f"the scanner gave up:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        db.start()
        back = time.monotonic()
        code = scanner.wait(300)
        finished = time.monotonic() - back
    finally:
        if scanner.poll() is None:
            scanner.kill()
        engine.dispose()
        if not db.alive:
            db.start()  # for the next tests, whatever happened here
    log = log_path.read_text()
    retries = log.count("index database unavailable while")
    print(f"\ndatabase down {OUTAGE:.0f} s mid-scan: {retries} retries logged; the scan finished "
          f"{finished:.2f} s after the database returned, {len(paths)} files indexed")
    assert code == 0, log[-3000:]
    assert retries >= 2 and "index database reachable again" in log
    assert_index_is(env, reference)


@pytest.mark.slow
def test_database_killed_during_queries(db, g3_stack, client, tmp_path):
    s = g3_stack
    data = tmp_path / "data"
    _, truth = make_archive(data, hours=3)
    env = fresh_database(db)
    scan(env, data)
    name = f"{PROVIDERS[0].description}.ch1_t"
    lo, hi = START + 600.5, START + 9000.25
    body = {"range": {"from": _iso(lo), "to": _iso(hi)}, "maxDataPoints": 200,
            "targets": [{"target": f"g3_reader::{name}", "refId": "A"}]}

    def bridge_points():
        r = requests.post(s.http + "/query", json=body, timeout=CALL_TIMEOUT + 5)
        return r.status_code == 200 and len(r.json()[0]["datapoints"]) > 0

    reader = start_reader(s, client, env, data, "g3-reader-db")
    try:
        wait_for(bridge_points, 30, "the bridge to serve g3 data")
        db.kill()
        # A request within GENERATION_TTL of the reader's last look at the
        # index is answered from what it holds, without the database.
        time.sleep(GENERATION_TTL)
        killed = time.monotonic()
        wamp, http, api = [], [], []
        while time.monotonic() - killed < OUTAGE:
            t0 = time.monotonic()
            with pytest.raises(ApplicationError) as caught:
                client.get_data("g3_reader", [name], lo, hi)
            wamp.append(time.monotonic() - t0)
            assert caught.value.error == INDEX_UNAVAILABLE
            assert "index database is unavailable" in caught.value.args[0]

            t0 = time.monotonic()
            r = requests.post(s.http + "/query", json=body, timeout=CALL_TIMEOUT + 5)
            http.append(time.monotonic() - t0)
            assert r.status_code == 502, r.text
            message = r.json()["message"]
            assert "g3_reader" in message and "index database is unavailable" in message and "\n" not in message

            t0 = time.monotonic()
            r = requests.get(s.http + "/api/v1/data", timeout=CALL_TIMEOUT + 5,
                             params={"target": f"g3_reader::{name}", "from": int(lo * 1000), "to": int(hi * 1000)})
            api.append(time.monotonic() - t0)
            assert r.status_code == 502 and "index database is unavailable" in r.json()["message"]
            # The field list is cached by the bridge: still there to pick from.
            assert f"g3_reader::{name}" in requests.post(s.http + "/search", json={}, timeout=5).json()
            time.sleep(1.0)
        db.start()
        back = time.monotonic()
        wait_for(bridge_points, 30, "the bridge to serve g3 data again", interval=0.02)
        recovered = time.monotonic() - back
        got = client.data("g3_reader", [name], lo, hi)[name]
        t, v = window(truth, name, lo, hi)
        assert np.array_equal(got.t, t) and np.array_equal(got.values, v)
    finally:
        if not db.alive:
            db.start()
        stop_reader(reader, client)
    out = reader.output()
    print(f"\ndatabase down {OUTAGE:.0f} s during queries: errors answered in at most {max(wamp):.3f} s (WAMP), "
          f"{max(http):.3f} s (/query 502), {max(api):.3f} s (/api/v1/data 502) over {len(wamp)} rounds; "
          f"queries served again {recovered:.2f} s after the database returned; the bridge said: {message!r}")
    assert max(http + api) < CALL_TIMEOUT
    assert out.count("the index database is unreachable") == 1 and "reachable again" in out


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(round((t % 1) * 1000)):03d}Z"


# -- the scanner killed -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["mariadb", "sqlite"])
def test_scanner_killed_at_random_moments(db, big_archive, tmp_path, backend):
    """kill -9 at random points of a first scan, five times: every file the
    index holds is complete, and the next pass finishes the index."""
    data, paths, reference = big_archive
    env = fresh_database(db) if backend == "mariadb" else {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    engine = sa.create_engine(database_url(env))
    rng = random.Random(5)
    figures = []
    try:
        for _ in range(5):
            already = indexed(engine)
            if already == len(paths):
                break  # the last kill came after the last batch (during the rollups): nothing left to cut
            target = already + rng.randint(1, max(1, (len(paths) - already) // 4))
            scanner = run_scanner(env, data, tmp_path / "scanner.log")
            # A kill a random fraction of a file's storing after the count is seen.
            while scanner.poll() is None and indexed(engine) < target:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.01))
            assert scanner.poll() is None, "the pass ended before the kill: make the archive larger"
            kill_scanner(scanner)
            index = open_index(env)
            snap = snapshot(index)
            index.dispose()
            assert 0 < len(snap) <= len(paths)
            for path, ranges in snap.items():
                assert ranges == reference[path], path  # all or nothing, per file
            figures.append(len(snap))
        # Files are stored in batches, so a kill may come after the last one;
        # some kill must have come while files were still being stored.
        assert min(figures) < len(paths)
        t0 = time.monotonic()
        scanner = run_scanner(env, data, tmp_path / "scanner.log")
        assert scanner.wait(300) == 0
        finish = time.monotonic() - t0
    finally:
        engine.dispose()
    print(f"\nscanner killed 5 times ({backend}) with {', '.join(map(str, figures))} of {len(paths)} files "
          f"consistently indexed; the next pass completed the index in {finish:.2f} s")
    assert_index_is(env, reference)


# -- broken files ---------------------------------------------------------------------------


def _span(path) -> tuple[float, float]:
    t0 = float(os.path.basename(path)[:-3])
    return t0, t0 + 3600


def test_broken_files_are_skipped_end_to_end(g3_stack, client, tmp_path):
    """A truncated file and one full of garbage in the middle of the archive,
    then a third damaged after it was indexed: each is skipped with a log
    line and everything else is served, through the router and the bridge."""
    s = g3_stack
    data = tmp_path / "data"
    paths, truth = make_archive(data, hours=6, gaps=())
    truncated, garbage, later = paths[1], paths[3], paths[4]
    truncate_file(truncated, 0.6)
    size = os.path.getsize(garbage)
    garbage_file(garbage, size, seed=3)  # same name and size, nothing readable
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    log_path = tmp_path / "scanner.log"
    scanner = run_scanner(env, data, log_path)
    assert scanner.wait(120) == 0
    log = log_path.read_text()
    rel = {p: os.path.relpath(p, data) for p in paths}
    assert f"skipping unreadable file {rel[garbage]}" in log
    assert f"indexed {rel[truncated]} up to a damaged or unfinished frame" in log

    names = sorted(truth)
    reader = start_reader(s, client, env, data, "g3-reader-broken")
    try:
        lost = [_span(garbage)]
        check_served(client, s, truth, names, lost, _span(truncated))
        # Damaged after the scan: the index still lists it, the reader finds garbage.
        shutil.copy(garbage, later)
        lost.append(_span(later))
        served = check_served(client, s, truth, names, lost, _span(truncated))
        wait_for(lambda: f"skipping unreadable file {later}" in reader.output(), 10, "the reader's log line")
    finally:
        stop_reader(reader, client)
    print(f"\nbroken files: 1 truncated, 1 garbage, 1 damaged after indexing out of {len(paths)}; "
          f"{served} samples served, each skip logged")


def check_served(client, stack, truth, names, lost, truncated) -> int:
    """What the reader serves over the whole archive: the truth, minus the
    ``lost`` spans, and a non-empty prefix of the ``truncated`` span (the
    frames written before the cut). Checked on the WAMP reply and on the
    bridge's REST answer; returns the number of samples served."""
    lo, hi = START, START + 6 * 3600
    got = client.data("g3_reader", names, lo, hi)
    params = [("target", f"g3_reader::{n}") for n in names]
    params += [("from", int(lo * 1000)), ("to", int(hi * 1000)), ("format", "columns"), ("maxDataPoints", 100000)]
    r = requests.get(stack.http + "/api/v1/data", params=params, timeout=CALL_TIMEOUT + 5)
    assert r.status_code == 200, r.text
    bridge = {s["field"]: s for s in r.json()["series"]}
    total = 0
    for name in names:
        t, v = window(truth, name, lo, hi)
        keep = np.ones(len(t), dtype=bool)
        for a, b in lost:
            keep &= (t < a) | (t >= b)
        t, v = t[keep], v[keep]
        inside = (t >= truncated[0]) & (t < truncated[1])
        gt, gv = got[name]
        g_inside = (gt >= truncated[0]) & (gt < truncated[1])
        n = int(g_inside.sum())
        assert 0 < n < int(inside.sum()), (name, n)
        assert np.array_equal(gt[~g_inside], t[~inside]) and np.array_equal(gv[~g_inside], v[~inside])
        assert np.array_equal(gt[g_inside], t[inside][:n]) and np.array_equal(gv[g_inside], v[inside][:n])
        assert np.array_equal(np.asarray(bridge[name]["time"]), gt * 1000.0)
        assert np.array_equal(np.asarray(bridge[name]["value"], dtype=float), gv)
        total += len(gt)
    return total
