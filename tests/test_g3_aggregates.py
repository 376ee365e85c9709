"""The g3-reader's bucket statistics equal those of so3g's own samples.

An archive written by the tests (two feeds at two rates with spikes and a
gap, and a feed of integer, boolean, string and float fields) is indexed in
MariaDB and read back by so3g's ``HKArchiveScanner`` as the truth. Random
ranges, intervals and offsets, on the summaries' grid and off it, are
asked of the g3-reader, and each answer is compared with
:func:`sisock.aggregate.bucket_stats` on the truth: counts, first, last,
minimum and maximum and their times exactly, sums to 1e-9 relative.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import sqlalchemy as sa
from bridge_source import datasource_on, stop

from sisock import aggregate
from sisock.demo.g3 import Provider, append_frames, write_file
from sisock.g3.summary import LEVELS
from sisock.servers import g3_aggregates
from sisock.servers.g3_reader import G3Reader

from conftest import MARIADB, node_names
from g3_helpers import PROVIDERS, START, TYPED, archive, make_archive, scan, write_typed_file
from procs import wait_for

HOURS = 30
TYPED_START, TYPED_COUNT = START + 7 * 3600 + 0.25, 4000
ON_GRID = (60.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 86400.0)
OFF_GRID = (7.0, 45.0, 90.5, 1000.0, 5400.25)


def so3g_truth(paths) -> dict:
    """``{full name: (t, values)}`` as so3g's HKArchiveScanner reads the files."""
    import so3g

    scanner = so3g.hk.HKArchiveScanner()
    for path in paths:
        scanner.process_file(path)
    values, timelines = scanner.finalize().get_data()
    out = {}
    for tl in timelines.values():
        for field in tl["fields"]:
            out[field] = (np.asarray(tl["t"], dtype=np.float64), np.asarray(values[field]))
    return out


@pytest.fixture(scope="module")
def g3(tmp_path_factory, mariadb_server):
    name = f"sisock_test_{uuid.uuid4().hex[:12]}"
    with mariadb_server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))  # name is generated above
    env = {**MARIADB, "SQL_DB": name}
    data = tmp_path_factory.mktemp("aggregates") / "data"
    paths, _ = make_archive(data, hours=HOURS)
    typed_path = str(data / "typed" / f"{int(TYPED_START)}.g3")
    write_typed_file(typed_path, TYPED_START, TYPED_COUNT)
    scan(env, data)
    truth = so3g_truth([*paths, typed_path])
    assert {f"{TYPED}.state", f"{TYPED}.count", f"{TYPED}.ok"} <= set(truth)
    yield SimpleNamespace(env=env, data=data, truth=truth, names=sorted(truth), paths=paths)
    with mariadb_server.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


def assert_exact(got, truth, names, start, end, interval, offset):
    """``got`` (an answer) is bucket_stats of the truth, name by name."""
    want = {}
    for name in names:
        t, v = truth[name]
        found = aggregate.bucket_stats(t, v, start, end, interval, offset)
        if len(found["bucket"]):
            want[name] = found
    assert set(got) == set(want), (start, end, interval, offset)
    for name, answer in want.items():
        assert set(got[name]) == set(answer), name
        for key, column in answer.items():
            if key == "sum":
                np.testing.assert_allclose(got[name][key], column, rtol=1e-9, err_msg=name)
            else:
                assert np.asarray(got[name][key]).tolist() == np.asarray(column).tolist(), (name, key)
    return sum(int(a["n"].sum()) for a in want.values())


def _cases(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        grid = i % 3 != 2
        interval = float(rng.choice(ON_GRID if grid else OFF_GRID))
        if grid:
            offset = float(rng.choice([0.0, 60.0, 1200.0, -3600.0]))
        else:
            offset = float(rng.choice([0.0, 13.5, -20.0]))
        span = float(rng.uniform(300, HOURS * 3600 + 1200)) if interval >= 600 else float(rng.uniform(300, 8 * 3600))
        a = START + float(rng.uniform(-900, HOURS * 3600 - span / 3))
        if i % 4 == 0:
            a = np.floor(a / 3600) * 3600  # a range starting on every level's grid
        out.append((a, a + span, interval, offset))
    return out


def test_answers_from_summaries_and_samples_are_exact(g3):
    reader = G3Reader(archive=archive(g3.env, g3.data))
    samples = summarized = 0
    for a, b, interval, offset in _cases(36, seed=11):
        interval_ns, offset_ns = aggregate.grid(interval, offset)
        summarized += g3_aggregates.summary_level(interval_ns, offset_ns) is not None
        got = aggregate.from_wire(reader.answer_get_aggregates(g3.names, a, b, interval, offset))
        samples += assert_exact(got, g3.truth, g3.names, a, b, interval, offset)
    assert summarized >= 20 and samples > 1_000_000
    print(f"\n{samples} samples in 36 answers ({summarized} from summaries) equal so3g's")


def test_the_whole_archive_and_ranges_on_every_grid(g3):
    reader = G3Reader(archive=archive(g3.env, g3.data))
    end = START + HOURS * 3600
    for a, b in ((START - 3600, end + 3600), (START, end), (START + 3600, end - 3600), (START + 59.999, end - 0.001)):
        for interval, offset in ((60.0, 0.0), (3600.0, 0.0), (86400.0, 0.0), (7200.0, 600.0), (120.0, 60.0)):
            got = aggregate.from_wire(reader.answer_get_aggregates(g3.names, a, b, interval, offset))
            assert_exact(got, g3.truth, g3.names, a, b, interval, offset)


def _files_read(g3, names, a, b, interval):
    """The files one answer decodes (from an empty cache)."""
    arch = archive(g3.env, g3.data)
    opened = set()
    decode, decode_many = arch._decode, arch._decode_providers
    arch._decode = lambda full, provider: opened.add(full) or decode(full, provider)
    # A file asked for several of its providers is decoded once for all of them.
    arch._decode_providers = lambda full, providers: opened.add(full) or decode_many(full, providers)
    assert_exact(g3_aggregates.answer(arch, names, a, b, interval), g3.truth, names, a, b, interval, 0.0)
    return opened


def test_on_the_grid_the_summaries_are_read_not_the_files(g3):
    names = [n for n in g3.names if not n.startswith(TYPED)]
    a, b = START + 1234.5, START + HOURS * 3600 - 1
    # The file cut by the start, the file cut by the end and the newest file.
    assert len(_files_read(g3, names, a, b, 3600.0)) <= 3
    assert len(_files_read(g3, names, a, b, 3599.0)) == len(g3.paths)  # off the grid: every file's samples


def test_summaries_and_samples_give_the_same_numbers(g3):
    arch = archive(g3.env, g3.data)
    for a, b, interval, offset in _cases(12, seed=5):
        interval_ns, offset_ns = aggregate.grid(interval, offset)
        level = g3_aggregates.summary_level(interval_ns, offset_ns)
        if level is None:
            continue
        with arch.one_request():
            summarized = g3_aggregates.from_summaries(arch, g3.names, a, b, level, interval, offset)
            raw = aggregate.series_stats(arch.series(g3.names, a, b), a, b, interval, offset)
        assert summarized is not None and set(summarized) == set(raw)
        for name in raw:
            for key in raw[name]:
                if key == "sum":
                    np.testing.assert_allclose(summarized[name][key], raw[name][key], rtol=1e-9)
                else:
                    assert np.array_equal(summarized[name][key], raw[name][key]), (name, key)


def test_levels_and_refusals(g3):
    assert g3_aggregates.summary_level(*aggregate.grid(7200.0, 600.0)) == 600
    assert g3_aggregates.summary_level(*aggregate.grid(86400.0, 0.0)) == max(LEVELS)
    assert g3_aggregates.summary_level(*aggregate.grid(3600.0, 30.0)) is None
    assert g3_aggregates.summary_level(*aggregate.grid(90.0)) is None
    arch = archive(g3.env, g3.data)
    with arch.one_request():  # hourly summary buckets straddle minute buckets: the summaries cannot answer
        assert g3_aggregates.from_summaries(arch, g3.names, START, START + 7200, 3600, 60.0) is None
        assert g3_aggregates.from_summaries(arch, g3.names, START, START + 7200, 60, 3600.0) is not None
    reader = G3Reader(archive=arch)
    # 1 ms buckets over the whole archive: more statistics than one reply carries.
    assert reader.answer_get_aggregates(g3.names, START, START + HOURS * 3600, 0.001) is False
    # 1 ms buckets over ten minutes: as many buckets as samples, which fit.
    got = aggregate.from_wire(reader.answer_get_aggregates(g3.names, START + 60, START + 660, 0.001))
    assert_exact(got, g3.truth, g3.names, START + 60, START + 660, 0.001, 0.0)
    assert reader.answer_get_aggregates(["no.such.field"], START, START + 3600, 60.0) == {"fields": {}}


def _grown(index_env, tmp_path):
    data = tmp_path / "data"
    first = write_file(str(data / "17000" / "1700000000.g3"), PROVIDERS, START, START + 3600)
    last = write_file(str(data / "17000" / "1700003600.g3"), PROVIDERS, START + 3600, START + 5400,
                      grid_start=START)
    scan(index_env, data)
    append_frames(last, PROVIDERS, START + 5400, START + 7200, grid_start=START)
    return data, so3g_truth([first, last])


def test_a_newest_file_grown_since_its_scan(tmp_path, mariadb_env):
    data, truth = _grown(mariadb_env, tmp_path)
    reader = G3Reader(archive=archive(mariadb_env, data))
    names = sorted(truth)
    assert max(t[-1] for t, _ in truth.values()) > START + 7000
    for a, b, interval in ((START, START + 7200, 600.0), (START - 60, START + 9000, 60.0), (START + 30, START + 7000,
                                                                                           1800.0)):
        got = aggregate.from_wire(reader.answer_get_aggregates(names, a, b, interval))
        assert_exact(got, truth, names, a, b, interval, 0.0)


def test_rollups_not_rebuilt_and_sparse_samples(tmp_path, mariadb_env):
    from sisock.components.g3_scanner import Scanner
    from sisock.g3.index import Index, database_url

    sparse = [Provider("observatory.slow1.feeds.hk", ["a", "b"], rate=1 / 300, block="hk"), PROVIDERS[0]]
    data = tmp_path / "data"
    paths, _ = make_archive(data, hours=14, providers=sparse, gaps=(), spike_every=6 * 3600)
    truth = so3g_truth(paths)
    index = Index(database_url(mariadb_env))
    scanner = Scanner(index, str(data))
    scanner._rollups = lambda stats: None  # stopped before the rollups were rebuilt
    scanner.scan_once()
    assert index.rollup_work() and index.counts()["rollups"] == 0
    names = sorted(truth)
    cases = ((START + 100, START + 14 * 3600 - 7, 3600.0), (START, START + 14 * 3600, 600.0),
             (START + 3600, START + 12 * 3600, 60.0))
    for a, b, interval in cases:
        got = aggregate.from_wire(G3Reader(archive=archive(mariadb_env, data)).answer_get_aggregates(
            names, a, b, interval))
        assert_exact(got, truth, names, a, b, interval, 0.0)
    assert Scanner(index, str(data)).scan_once().rollups > 0
    for a, b, interval in cases:
        got = aggregate.from_wire(G3Reader(archive=archive(mariadb_env, data)).answer_get_aggregates(
            names, a, b, interval))
        assert_exact(got, truth, names, a, b, interval, 0.0)
    index.dispose()


def test_through_the_router_and_the_bridge(stack, client, g3):
    reader = stack.proc("g3-reader-aggregates", "sisock-g3-reader-server",
                        env={**g3.env, "DATA_DIRECTORY": str(g3.data)}).start()
    ds = datasource_on(client)
    try:
        wait_for(lambda: "g3_reader" in node_names(client), 60, "g3_reader to register")
        names = [g3.names[0], f"{TYPED}.state", f"{TYPED}.count", "observatory.unknown.feeds.x.y"]
        for a, b, interval, offset in ((START, START + HOURS * 3600, 3600.0, 0.0),
                                       (START + 100.5, START + 20000, 600.0, 60.0),
                                       (START + 100.5, START + 20000, 450.0, 0.0)):
            got = ds.aggregates("g3_reader", names, a, b, interval, offset)
            assert_exact(got, g3.truth, names[:3], a, b, interval, offset)
        assert "g3_reader" not in ds._no_aggregates
    finally:
        stop(client, ds)
        reader.stop()
