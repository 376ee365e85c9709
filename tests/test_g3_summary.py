"""Multi-resolution summaries: computed right at scan time, served exactly."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from sisock.demo.g3 import append_frames, expected, write_file
from sisock.downsample import grid_width
from sisock.g3 import index as g3_index
from sisock.g3.summary import LEVELS, STATS, Summary, choose_level, summarize
from sisock.servers.g3_reader import G3Reader

from g3_helpers import PROVIDERS, START, archive, make_archive, open_index, scan, window


def _brute(t, v, level):
    """Per bucket of ``level`` s: the statistics computed the slow, obvious way."""
    out = {}
    for b in np.unique(np.floor(t / level)):
        sel = np.floor(t / level) == b
        tb, vb = t[sel], v[sel]
        out[b] = {"t_first": tb[0], "t_last": tb[-1], "count": len(tb), "min": np.nanmin(vb),
                  "max": np.nanmax(vb), "first": vb[0], "last": vb[-1], "mean": np.nanmean(vb),
                  "min_first": float(np.nanargmin(vb) <= np.nanargmax(vb))}
    return out


def test_summaries_match_brute_force_at_every_level():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(START, START + 7200, 5000))
    values = {"a": rng.normal(0, 1, 5000), "b": np.cumsum(rng.normal(0, 1, 5000))}
    values["a"][rng.choice(5000, 20, replace=False)] = np.nan
    summaries = summarize(t, values)
    assert [s.level for s in summaries] == list(LEVELS)
    for summary in summaries:
        decoded = Summary.decode(summary.encode())
        for name, v in values.items():
            brute = _brute(t, v, summary.level)
            assert len(brute) == len(decoded.t_first)
            for i, b in enumerate(sorted(brute)):
                want = brute[b]
                assert decoded.t_first[i] == want["t_first"] and decoded.t_last[i] == want["t_last"]
                assert decoded.count[i] == want["count"]
                for stat in STATS:
                    got = decoded.fields[name][stat][i]
                    if stat == "mean":
                        assert got == pytest.approx(want[stat], rel=1e-12, abs=1e-12)
                    else:
                        assert got == want[stat] or (np.isnan(got) and np.isnan(want[stat])), (stat, i)


def test_level_choice():
    assert choose_level(None) is None and choose_level(30) is None
    assert choose_level(86.4) == 60 and choose_level(604.8) == 600 and choose_level(7200) == 3600
    assert grid_width(86.4, 60) == 180 and grid_width(604.8, 600) == 1800


def _check_panel(reply_t, reply_v, t, v, start, end, stride):
    """Points inside the range, each value a sample of its own answer bucket,
    and each answer bucket's true min and max present."""
    level = choose_level(stride)
    width = grid_width(stride, level)
    assert np.all((reply_t >= start) & (reply_t <= end))
    assert len(reply_t) <= (end - start) / stride + 4  # + the partial buckets at both edges
    buckets = np.floor(t / width)
    got_b = np.floor(reply_t / width)
    assert set(np.unique(got_b)) == set(np.unique(buckets))
    for b in np.unique(buckets):
        raw = v[buckets == b]
        kept = reply_v[got_b == b]
        assert raw.min() in kept and raw.max() in kept
        assert set(kept.tolist()) <= set(raw.tolist())


@pytest.mark.parametrize("stride", [61.0, 86.4, 700.0, 5000.0])
def test_summary_panels_are_exact_per_bucket(tmp_path, stride):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    _, truth = make_archive(data, hours=12)
    scan(env, data)
    reader = G3Reader(archive=archive(env, data))
    names = sorted(truth)
    for start, end in [(START + 1000.5, START + 11 * 3600 + 17.25), (START - 100, START + 13 * 3600)]:
        reply = reader.answer_get_data(names, start, end, stride)
        for name in names:
            t, v = window(truth, name, start, end)
            _check_panel(np.array(reply["timeline"][name]["t"]), np.array(reply["data"][name]), t, v,
                         start, end, stride)


def test_summary_path_reads_only_edge_and_newest_files(tmp_path):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    make_archive(data, hours=12, gaps=())
    scan(env, data)
    arch = archive(env, data)
    opened = []
    decode = arch._decode
    arch._decode = lambda full, provider: opened.append(full) or decode(full, provider)
    name = f"{PROVIDERS[0].description}.ch1_t"
    arch.panel([name], START + 1800, START + 12 * 3600, 100.0)
    assert len(set(opened)) == 2  # the file cut by the start, and the newest file


def test_grown_file_served_by_summary_path_and_rebuilt_on_rescan(tmp_path):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    first = write_file(str(data / "17000" / "1700000000.g3"), PROVIDERS, START, START + 3600)
    last = write_file(str(data / "17000" / "1700003600.g3"), PROVIDERS, START + 3600, START + 5400,
                      grid_start=START)
    scan(env, data)
    append_frames(last, PROVIDERS, START + 5400, START + 7200, grid_start=START)
    truth = expected(PROVIDERS, START, START + 7200, spike_every=6 * 3600)
    reader = G3Reader(archive=archive(env, data))
    name = f"{PROVIDERS[0].description}.ch2_t"
    reply = reader.answer_get_data([name], START, START + 7200, 90.0)
    t, v = window(truth, name, START, START + 7200)
    _check_panel(np.array(reply["timeline"][name]["t"]), np.array(reply["data"][name]), t, v,
                 START, START + 7200, 90.0)
    assert reply["timeline"][name]["t"][-1] >= START + 7100  # the appended half hour is there
    scan(env, data)
    index = open_index(env)
    with index.engine.connect() as conn:
        levels = conn.execute(
            sa.select(g3_index.summaries.c.level, sa.func.count()).group_by(g3_index.summaries.c.level)
        ).all()
    assert dict(levels) == {level: 2 * len(PROVIDERS) for level in LEVELS}
    index.dispose()
    assert first  # both files still indexed


def test_old_index_is_upgraded_and_rescanned(tmp_path):
    data = tmp_path / "data"
    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    make_archive(data, hours=2)
    scan(env, data)
    index = open_index(env)
    with index.engine.begin() as conn:  # what a version-1 index looks like
        conn.execute(g3_index.summaries.delete())
        conn.execute(g3_index.meta.update().values(value="1"))
    index.dispose()
    assert open_index(env).counts()["summaries"] == 0
    assert scan(env, data).read == 2  # the upgrade marked every file for a rescan
    assert open_index(env).counts()["summaries"] == 2 * len(PROVIDERS) * len(LEVELS)
