"""The g3 archive path against real so3g files and real databases
(SQLite and MariaDB): scanner, index, reader."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import so3g

from sisock import contract
from sisock.cache import ByteLRU
from sisock.demo.g3 import Provider, append_frames, expected, write_file
from sisock.g3.index import ERROR, PARTIAL
from sisock.servers.g3_reader import Archive, G3Reader

from g3_helpers import (
    PROVIDERS,
    START,
    archive,
    assert_series_equal,
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

ALL = (0, 2**62)


def test_index_contents(index_env, tmp_path):
    data = tmp_path / "data"
    paths, truth = make_archive(data)
    stats = scan(index_env, data)
    assert (stats.seen, stats.read, stats.failed) == (len(paths), len(paths), 0)
    index = open_index(index_env)
    assert snapshot(index) == expected_file_ranges(paths, str(data), truth)
    assert index.names(*ALL) == sorted(truth)
    counts = index.counts()
    assert counts["files"] == len(paths) and counts["description"] == len(truth)
    assert counts["feeds"] == len(paths) * len(PROVIDERS)
    # Each name's first sample, from the index alone; a name never seen has none.
    names = sorted(truth)
    assert index.first_starts(names[1:] + ["observatory.nobody.feeds.none.x"]) == {
        name: int(round(truth[name][0][0] * 1e6)) for name in names[1:]}
    # Only the files overlapping a range are located (by the reader's own lookup).
    reader = Archive(index, str(data), ByteLRU(1 << 20))
    hour2, _ = reader.locate(sorted(truth), START + 3700, START + 3800)
    hour2 = [loc.path for loc in hour2]
    assert set(hour2) == {"17000/1700003600.g3"}
    # Past the end of the index, each name's newest file (it may have grown since) is still read.
    late, newest = reader.locate(sorted(truth), START + 5 * 3600, START + 6 * 3600)
    late = [loc.path for loc in late]
    assert set(newest) == set(truth)
    assert set(late) == {"17000/1700010800.g3"}
    index.dispose()


def test_incremental_rescan(index_env, tmp_path):
    data = tmp_path / "data"
    paths, truth = make_archive(data, hours=3)
    assert scan(index_env, data).read == 3
    again = scan(index_env, data)
    assert (again.read, again.unchanged, again.removed) == (0, 3, 0)

    # The aggregator keeps writing the last file, starts a new one, and an old one is deleted.
    append_frames(paths[-1], PROVIDERS, START + 3 * 3600, START + 3 * 3600 + 600, grid_start=START)
    new = write_file(str(data / "17000" / "1700011200.g3"), PROVIDERS, START + 3 * 3600 + 600,
                     START + 3 * 3600 + 1200, grid_start=START)
    os.remove(paths[0])
    third = scan(index_env, data)
    assert (third.read, third.unchanged, third.removed) == (2, 1, 1)

    index = open_index(index_env)
    snap = snapshot(index)
    assert "17000/1700000000.g3" not in snap
    grown = snap["17000/1700007200.g3"][(PROVIDERS[0].description, "ch1_t")]
    assert grown[1] == int((START + 3 * 3600 + 599) * 1e6)  # the end was extended
    assert os.path.relpath(new, data) in snap
    assert index.names(*ALL) == sorted(truth)  # the names of the deleted file are in others too
    index.dispose()

    # A file holding the only samples of some names: deleted, those names leave the index, the others stay.
    lone = Provider("observatory.lone3.feeds.misc", ["only_here"], rate=1.0, block="misc")
    write_file(str(data / "17000" / "1700014800.g3"), [lone], START + 4 * 3600 + 60, START + 4 * 3600 + 120)
    scan(index_env, data)
    assert open_index(index_env).names(*ALL) == sorted([*truth, f"{lone.description}.only_here"])
    os.remove(data / "17000" / "1700014800.g3")
    assert scan(index_env, data).removed == 1
    index = open_index(index_env)
    assert index.names(*ALL) == sorted(truth)
    assert index.counts()["description"] == len(truth)
    index.dispose()


def test_broken_files_are_skipped_and_retried(index_env, tmp_path):
    data = tmp_path / "data"
    paths, truth = make_archive(data, hours=3)
    shutil.copy(paths[1], data / "17000" / "1700099999.g3")
    truncate_file(str(data / "17000" / "1700099999.g3"), 0.6)
    garbage_file(str(data / "17000" / "1700088888.g3"), 5000)
    first = scan(index_env, data)
    assert (first.read, first.failed, first.partial) == (4, 1, 1)
    index = open_index(index_env)
    states = index.file_states()
    assert states["17000/1700088888.g3"][2] == ERROR and states["17000/1700099999.g3"][2] == PARTIAL
    assert "17000/1700088888.g3" not in snapshot(index)
    # The good files are served in full.
    reader = archive(index_env, data)
    name = f"{PROVIDERS[0].description}.ch2_t"
    end = START + 3 * 3600
    assert_series_equal(reader.series([name], START, end)[name], window(truth, name, START, end))
    second = scan(index_env, data)
    assert (second.failed, second.partial, second.unchanged) == (1, 1, 3)  # broken ones retried
    index.dispose()


def _hk_reference(paths, names, start, end):
    scanner = so3g.hk.HKArchiveScanner()
    for path in sorted(paths):
        scanner.process_file(path)
    data, timelines = scanner.finalize().get_data(names, start, end)
    out = {}
    for tl in timelines.values():
        for name in tl["fields"]:
            if len(tl["t"]):
                out[name] = (tl["t"], data[name])
    return out


@pytest.mark.parametrize("schema", [2, 0])
def test_reader_equals_hkarchivescanner(tmp_path, schema):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    paths, truth = make_archive(data, hours=4, schema=schema)
    scan(env, data)
    reader = archive(env, data)
    rng = np.random.default_rng(7 + schema)
    names = sorted(truth)
    for _ in range(25):
        a, b = np.sort(rng.uniform(START - 600, START + 4 * 3600 + 600, 2))
        chosen = list(rng.choice(names, size=rng.integers(1, len(names) + 1), replace=False))
        got = reader.series(chosen, a, b)
        want = _hk_reference(paths, chosen, a, b)
        assert sorted(got) == sorted(want)
        for name in want:
            assert_series_equal(got[name], want[name])
            assert_series_equal(got[name], window(truth, name, a, b))


def test_reader_on_mariadb_equals_sqlite(tmp_path, mariadb_env):
    data = tmp_path / "data"
    make_archive(data, hours=2)
    sqlite_env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    scan(sqlite_env, data)
    scan(mariadb_env, data)
    a, b = archive(sqlite_env, data), archive(mariadb_env, data)
    for lo, hi in [(START + 100.5, START + 5000.25), (START - 50, START + 9000)]:
        x, y = a.series(a.index.names(*ALL), lo, hi), b.series(b.index.names(*ALL), lo, hi)
        assert sorted(x) == sorted(y)
        for name in x:
            assert_series_equal(x[name], y[name])


def test_downsampled_answers_keep_each_bucket_extremes(tmp_path):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    _, truth = make_archive(data, hours=4)
    scan(env, data)
    server = G3Reader(archive=archive(env, data))
    start, end, stride = START + 10.5, START + 4 * 3600 - 3.25, 45.0
    names = sorted(truth)
    reply = server.answer_get_data(names, start, end, stride)
    from m4_check import assert_m4

    from sisock.downsample import bucket_width
    from sisock.g3.summary import choose_level

    width = bucket_width(stride)
    for name in names:
        t, v = window(truth, name, start, end)
        got_t = np.array(reply["timeline"][name]["t"])
        got_v = np.array(reply["data"][name])
        assert len(got_v) <= (end - start) / stride + 4
        assert_m4(t, v, got_t, got_v, start, end, width, choose_level(width))


def test_growing_file_is_served_and_answers_do_not_depend_on_history(tmp_path):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    path = write_file(str(data / "17000" / "1700000000.g3"), PROVIDERS, START, START + 1200)
    scan(env, data)
    cached = archive(env, data)
    name = f"{PROVIDERS[0].description}.ch1_t"
    before = cached.series([name], START, START + 3000)[name]
    assert before[0][-1] == START + 1199
    append_frames(path, PROVIDERS, START + 1200, START + 2400, grid_start=START)
    truth = expected(PROVIDERS, START, START + 2400, spike_every=6 * 3600)
    # Not rescanned yet: the index still says the file ends at +1199 s.
    after = cached.series([name], START + 1500, START + 3000)[name]
    assert_series_equal(after, window(truth, name, START + 1500, START + 3000))
    fresh = archive(env, data).series([name], START, START + 3000)[name]
    assert_series_equal(cached.series([name], START, START + 3000)[name], fresh)
    scan(env, data)
    assert_series_equal(archive(env, data).series([name], START, START + 3000)[name], fresh)


def test_cache_stays_within_its_bound(tmp_path):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    _, truth = make_archive(data, hours=4)
    scan(env, data)
    bound = 150_000  # smaller than one file's decoded provider: constant eviction
    reader = archive(env, data, cache_bytes=bound)
    rng = np.random.default_rng(3)
    for _ in range(40):
        a = rng.uniform(START, START + 4 * 3600)
        name = rng.choice(sorted(truth))
        got = reader.series([name], a, a + 4000)
        assert_series_equal(got[name], window(truth, name, a, a + 4000))
        assert reader.cache.bytes <= bound


def test_sql_metacharacters_do_no_harm(index_env, tmp_path):
    nasty = [
        Provider("observatory.x'; DROP TABLE fields; --.feeds.t", ["a\"b", "c'); DELETE FROM files; --"]),
        Provider("observatory.y.feeds.%_\\", ["50% of _ \\"]),
    ]
    data = tmp_path / "data"
    _, truth = make_archive(data, hours=1, providers=nasty, gaps=())
    assert scan(index_env, data).read == 1
    reader = archive(index_env, data)
    assert reader.index.names(*ALL) == sorted(truth)
    for name in truth:
        assert_series_equal(reader.series([name], START, START + 3600)[name], truth[name])
    assert reader.series(["observatory.y.feeds.%"], START, START + 3600) == {}  # no LIKE-style matching
    assert reader.index.counts()["files"] == 1


def test_max_points_and_unknown_fields(tmp_path):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    _, truth = make_archive(data, hours=2)
    scan(env, data)
    server = G3Reader(archive=archive(env, data), max_points=100)
    name = f"{PROVIDERS[0].description}.ch3_t"
    reply = server.answer_get_data([name, "no.such.field"], START, START + 7200)
    assert 50 <= len(reply["data"][name]) <= 100
    assert reply["data"]["no.such.field"] == [] and set(reply["timeline"]) == {name}
    assert max(reply["data"][name]) == truth[name][1].max()  # the spikes survive the cap
    unlimited = G3Reader(archive=archive(env, data), max_points=None)
    raw = unlimited.answer_get_data([name], START, START + 7200)["data"][name]
    assert np.array_equal(raw, window(truth, name, START, START + 7200)[1])  # unset: no cap, every sample


def test_reply_over_the_wire_limit_is_refused(tmp_path, monkeypatch):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    make_archive(data, hours=1)
    scan(env, data)
    server = G3Reader(archive=archive(env, data))
    name = f"{PROVIDERS[0].description}.ch1_t"
    reply = server.answer_get_data([name], START, START + 3600)
    monkeypatch.setattr(contract, "MAX_REPLY_VALUES", contract.reply_size(reply) - 1)
    assert server._bounded(reply) is False
    monkeypatch.setattr(contract, "MAX_REPLY_VALUES", contract.reply_size(reply))
    assert server._bounded(reply) is reply


def test_cache_computes_identical_concurrent_requests_once():
    import threading
    import time

    cache = ByteLRU(10_000)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return np.arange(10.0)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("k", slow))) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(calls) == 1 and len(results) == 8 and all(r is results[0] for r in results)


def _indexed_files(db_path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_scanner_killed_mid_scan_leaves_a_consistent_index(tmp_path):
    """kill -9 at random points of a first scan: every file the index calls
    scanned is complete, and the next pass finishes the job."""
    import random
    import subprocess
    import sys
    import time

    data = tmp_path / "data"
    providers = [Provider(f"observatory.agent{i}.feeds.hk", [f"f{j}" for j in range(6)]) for i in range(3)]
    paths, truth = make_archive(data, hours=20, providers=providers, file_seconds=300, gaps=())
    reference = expected_file_ranges(paths, str(data), truth, providers, file_seconds=300)
    state = tmp_path / "state"
    env = {**os.environ, "DATA_DIRECTORY": str(data), "SISOCK_STATE_DIR": str(state), "LOGLEVEL": "warn"}
    scanner = os.path.join(os.path.dirname(sys.executable), "sisock-g3-file-scanner")
    rng = random.Random(11)
    cut_short = []
    for _ in range(5):
        already = _indexed_files(state / "g3_index.sqlite")
        if already == len(paths):
            break  # the last kill came after the last batch (during the rollups): nothing left to cut
        target = already + rng.randint(1, max(1, (len(paths) - already) // 3))
        proc = subprocess.Popen([scanner, "--once"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and _indexed_files(state / "g3_index.sqlite") < target:
            time.sleep(0.002)
        assert proc.poll() is None, "the pass ended before the kill: make the archive larger"
        kill_scanner(proc)
        index = open_index({"SISOCK_STATE_DIR": str(state)})
        snap = snapshot(index)
        index.dispose()
        assert 0 < len(snap) <= len(paths)
        for path, ranges in snap.items():
            assert ranges == reference[path], path  # all or nothing, per file
        cut_short.append(len(snap) < len(paths))
    # Files are stored in batches, so a kill may come after the last one;
    # some kill must have come while files were still being stored.
    assert any(cut_short)
    subprocess.run([scanner, "--once"], env=env, check=True, timeout=300, stdout=subprocess.DEVNULL)
    index = open_index({"SISOCK_STATE_DIR": str(state)})
    assert snapshot(index) == reference
    index.dispose()
