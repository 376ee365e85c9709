"""Synthetic HK archives read back through so3g exactly as written.

The g3 scanner and reader tests trust ``g3_demo.expected`` as ground truth,
so this checks it against so3g's own reader, for every schema, rather than
against the writer's code."""

from __future__ import annotations

import os

import numpy as np
import pytest

so3g = pytest.importorskip("so3g")
from spt3g import core  # noqa: E402

from sisock.demo import g3 as g3_demo  # noqa: E402
from sisock.demo.g3 import Provider  # noqa: E402

from g3_helpers import garbage_file, truncate_file  # noqa: E402

START = 1_700_000_000
END = START + 1500
PROVIDERS = [
    Provider("observatory.LSA22YE.feeds.temperatures", ["Channel_01_T", "Channel_02_T", "Channel_03_T"]),
    Provider("observatory.pfeiffer.feeds.pressures", ["p1", "p2"], rate=10 / 3, block="pressures"),
]
LAYOUT = dict(file_seconds=600, frame_seconds=120, spike_every=300, seed=3)


def read_back(paths, flush_after=True):
    scanner = so3g.hk.HKArchiveScanner()
    for p in paths:
        scanner.process_file(p, flush_after=flush_after)
    data, timelines = scanner.finalize().get_data()
    out = {}
    for tl in timelines.values():
        for f in tl["fields"]:
            out[f] = (tl["t"], data[f])
    return out


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for name, (t, v) in want.items():
        assert len(t) > 0
        assert np.array_equal(got[name][0], t), name
        assert np.array_equal(got[name][1], v), name


@pytest.mark.parametrize("schema", [2, 1, 0])
def test_round_trip_exact(tmp_path, schema):
    gaps = [(START + 100.5, START + 400)]
    paths = g3_demo.write_archive(str(tmp_path), START, END, PROVIDERS, schema=schema, gaps=gaps, **LAYOUT)
    want = g3_demo.expected(PROVIDERS, START, END, schema=schema, gaps=gaps, **LAYOUT)
    assert_same(read_back(paths), want)
    assert_same(read_back(paths, flush_after=False), want)
    assert len(want["observatory.LSA22YE.feeds.temperatures.Channel_01_T"][0]) == 1500 - 299  # 101 .. 399 dropped
    for p in paths:
        versions = {f["hkagg_version"] for f in core.G3File(p)}
        assert versions == {schema}


def test_schemas_agree_on_samples():
    v2 = g3_demo.expected(PROVIDERS, START + 0.37, END, **LAYOUT)
    v0 = g3_demo.expected(PROVIDERS, START + 0.37, END, schema=0, **LAYOUT)
    for name in v2:
        assert np.array_equal(v2[name][1], v0[name][1])
        assert np.allclose(v2[name][0], v0[name][0], rtol=0, atol=1e-7)


def test_layout_and_frames(tmp_path):
    paths = g3_demo.write_archive(str(tmp_path), START, END, PROVIDERS, **LAYOUT)
    starts = [START, START + 600, START + 1200]
    assert paths == [os.path.join(str(tmp_path), str(s)[:5], f"{s}.g3") for s in starts]
    assert paths == g3_demo.archive_files(str(tmp_path))
    assert not [n for _, _, names in os.walk(tmp_path) for n in names if not n.endswith(".g3")]
    for path, file_start in zip(paths, starts, strict=True):
        frames = list(core.G3File(path))
        assert [f["hkagg_type"] for f in frames[:2]] == [so3g.HKFrameType.session, so3g.HKFrameType.status]
        provs = [(p["prov_id"].value, p["description"].value) for p in frames[1]["providers"]]
        assert provs == [(0, PROVIDERS[0].description), (1, PROVIDERS[1].description)]
        data = frames[2:]
        assert all(f["hkagg_type"] == so3g.HKFrameType.data for f in data)
        windows = -(-min(600, END - file_start) // 120)
        assert [f["prov_id"] for f in data] == [0, 1] * windows
        assert [list(f["block_names"]) for f in data[:2]] == [["temps"], ["pressures"]]
        first = data[0]["blocks"][0].times[0].time / core.G3Units.s
        assert first == file_start
    assert len({f["session_id"] for p in paths for f in core.G3File(p)}) == 1


def test_gaps(tmp_path):
    gaps = [(START + 50, START + 70), (START + 600, START + 1200)]
    paths = g3_demo.write_archive(str(tmp_path), START, END, PROVIDERS, gaps=gaps, **LAYOUT)
    got = read_back(paths)
    for t, _ in got.values():
        for g0, g1 in gaps:
            assert not np.any((t >= g0) & (t < g1))
        assert np.all(np.diff(t) > 0)
    t = got["observatory.LSA22YE.feeds.temperatures.Channel_01_T"][0]
    assert len(t) == 1500 - 20 - 600
    # The aggregator keeps rotating files while its feeds are silent.
    assert len(list(core.G3File(paths[1]))) == 2


def test_spikes(tmp_path):
    paths = g3_demo.write_archive(str(tmp_path), START, END, PROVIDERS, **LAYOUT)
    got = read_back(paths)
    for provider in PROVIDERS:
        positions = set()
        for name in provider.full_names():
            t, v = got[name]
            spikes = np.flatnonzero(v > 500)
            # 1500 s hold exactly 5 periods of 300 s: one spike each.
            assert len(spikes) == 5, name
            assert np.all(np.abs(np.diff(t[spikes]) - 300) < 1.0 / provider.rate)
            assert v[spikes].min() > 1000 and np.delete(v, spikes).max() < 200
            positions.add(float(t[spikes[0]]))
        assert len(positions) == len(provider.fields)
    quiet = g3_demo.expected(PROVIDERS, START, END, spike_every=None)
    assert all(v.max() < 200 for _, v in quiet.values())


def test_growing_file(tmp_path):
    path = str(tmp_path / "live.g3")
    g3_demo.write_file(path, PROVIDERS, START, START + 600, frame_seconds=120)
    before = open(path, "rb").read()
    first = read_back([path])
    g3_demo.append_frames(path, PROVIDERS, START + 600, START + 900, frame_seconds=120)
    after = open(path, "rb").read()
    assert len(after) > len(before) and after.startswith(before)
    second = read_back([path])
    assert_same(first, g3_demo.expected(PROVIDERS, START, START + 600))
    assert_same(second, g3_demo.expected(PROVIDERS, START, START + 900))
    name = PROVIDERS[0].full_names()[0]
    assert len(second[name][0]) == len(first[name][0]) + 300


def test_deterministic(tmp_path):
    a = g3_demo.write_archive(str(tmp_path / "a"), START, START + 600, PROVIDERS, **LAYOUT)
    b = g3_demo.write_archive(str(tmp_path / "b"), START, START + 600, PROVIDERS, **LAYOUT)
    assert [open(p, "rb").read() for p in a] == [open(p, "rb").read() for p in b]
    whole = g3_demo.expected(PROVIDERS, START, END, **LAYOUT)
    part = g3_demo.expected(PROVIDERS, START, END - 333, **LAYOUT)
    for name, (t, v) in part.items():
        assert np.array_equal(whole[name][0][: len(t)], t)
        assert np.array_equal(whole[name][1][: len(v)], v)
    other = g3_demo.expected(PROVIDERS, START, END, **{**LAYOUT, "seed": 4})
    assert not any(np.array_equal(other[n][1], whole[n][1]) for n in whole)


def test_truncated_file_keeps_complete_frames(tmp_path):
    path = g3_demo.write_file(str(tmp_path / "cut.g3"), PROVIDERS[:1], START, START + 600, frame_seconds=100)
    truncate_file(path, 0.5)
    scanner = so3g.hk.HKArchiveScanner()
    with pytest.raises(RuntimeError, match="Failed to read"):
        scanner.process_file(path)
    data, _ = scanner.finalize().get_data()
    name = PROVIDERS[0].full_names()[0]
    assert 0 < len(data[name]) < 600
    assert np.array_equal(data[name], g3_demo.expected(PROVIDERS[:1], START, START + 600)[name][1][: len(data[name])])


def test_garbage_file_raises(tmp_path):
    path = garbage_file(str(tmp_path / "17000" / "1700000000.g3"), 4096)
    assert os.path.getsize(path) == 4096
    with pytest.raises((RuntimeError, MemoryError)):
        so3g.hk.HKArchiveScanner().process_file(path)


def test_demo_archive_idempotent(tmp_path, capsys):
    d = str(tmp_path / "demo")
    end = 1_700_006_400.0
    paths = g3_demo.demo_archive(d, days=0.05, end=end)  # 72 minutes: 2 files
    assert len(paths) == 2 and paths == g3_demo.archive_files(d)
    assert g3_demo.demo_archive(d, days=0.05, end=end + 1800) == []
    # Topped up from where it stopped (not rewritten), as a new session.
    more = g3_demo.demo_archive(d, days=1, end=end + 3 * 3600)
    assert len(more) == 3 and more[0].endswith(f"{int(end)}.g3")
    got = read_back(g3_demo.archive_files(d))
    assert len(got) == 10
    t, v = next(iter(got.values()))
    assert t[-1] == end + 3 * 3600 - 1 and len(t) == 72 * 60 + 3 * 3600
    assert g3_demo.main([d, "--days", "0.05", "--end", str(end + 3 * 3600)]) == 0
    assert "up to date" in capsys.readouterr().out
