"""Multi-resolution summaries: computed right at scan time, served exactly."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from m4_check import assert_m4

from sisock.demo.g3 import append_frames, expected, write_file
from sisock.downsample import bucket_width
from sisock.g3 import index as g3_index
from sisock.g3.summary import LEVELS, STATS, Summary, choose_level, summarize
from sisock.servers.g3_reader import G3Reader

from g3_helpers import PROVIDERS, START, archive, make_archive, open_index, scan, window


def _brute(t, v, level):
    """Per bucket of ``level`` s: the statistics computed the slow, obvious way."""
    out = {}
    for b in np.unique(np.floor(t / level)):
        sel = (np.floor(t / level) == b) & ~np.isnan(v)
        tb, vb = t[sel], v[sel]
        out[b] = None if not len(vb) else {
            "n": len(vb), "sum": vb.sum(), "t_first": tb[0], "first": vb[0], "t_last": tb[-1], "last": vb[-1],
            "t_min": tb[np.argmin(vb)], "min": vb.min(), "t_max": tb[np.argmax(vb)], "max": vb.max()}
    return out


def test_summaries_match_brute_force_at_every_level():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(START, START + 7200, 5000))
    values = {"a": rng.normal(0, 1, 5000), "b": np.cumsum(rng.normal(0, 1, 5000)),
              "n": rng.integers(-5, 5, 5000), "flag": rng.random(5000) > 0.5,
              "text": np.array(["x"] * 5000, dtype=object)}
    values["a"][rng.choice(5000, 20, replace=False)] = np.nan
    summaries = summarize(t, values)
    assert [s.level for s in summaries] == list(LEVELS)
    for summary in summaries:
        decoded = Summary.decode(summary.encode())
        assert set(decoded.fields) == {"a", "b", "n", "flag"}  # strings are never summarized
        for name in decoded.fields:
            v = np.asarray(values[name], dtype=np.float64)
            brute = _brute(t, v, summary.level)
            assert sorted(brute) == decoded.bucket.tolist()
            for i, b in enumerate(sorted(brute)):
                want, got = brute[b], decoded.fields[name][:, i]
                if want is None:
                    assert got[0] == 0
                    continue
                for j, stat in enumerate(STATS):
                    if stat == "sum":
                        assert got[j] == pytest.approx(want[stat], rel=1e-12, abs=1e-12)
                    else:
                        assert got[j] == want[stat], (stat, i)


def test_an_older_summary_format_is_not_decoded():
    summary = summarize(np.arange(100.0) + START, {"a": np.arange(100.0)})[0]
    blob = summary.encode().replace(b'"format": 3', b'"format": 2')
    assert Summary.decode(blob) is None


def test_level_choice():
    assert choose_level(None) is None and choose_level(43.2) is None and choose_level(479) is None
    assert choose_level(480) == 60 and choose_level(1209.6) == 60 and choose_level(4799) == 60
    assert choose_level(5184) == 600 and choose_level(63072) == 3600


def _check_panel(reply_t, reply_v, t, v, start, end, stride):
    """An exact M4 answer on the grid the reader chose for ``stride``."""
    width = bucket_width(stride)
    assert_m4(t, v, reply_t, reply_v, start, end, width, choose_level(width))
    assert len(reply_t) <= (end - start) / stride + 4  # + the partial buckets at both edges


@pytest.mark.parametrize("stride", [45.0, 86.4, 700.0, 5000.0])
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
    arch.panel([name], START + 1805, START + 12 * 3600, 300.0)  # 1805: inside a 60 s summary bucket
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


def _panel_check(reader, truth, names, a, b, stride):
    reply = reader.answer_get_data(names, a, b, stride)
    for name in names:
        t, v = window(truth, name, a, b)
        _check_panel(np.array(reply["timeline"].get(name, {}).get("t", [])), np.array(reply["data"][name]), t, v,
                     a, b, stride)
    return reply


def test_long_panels_read_rollups_not_every_files_summary(tmp_path, index_env):
    from sisock.g3.summary import ROLLUP_LEVELS

    data = tmp_path / "data"
    _, truth = make_archive(data, hours=30, gaps=())
    assert scan(index_env, data).rollups > 0
    index = open_index(index_env)
    assert index.counts()["rollups"] > 0 and index.rollup_work() == []
    index.dispose()
    arch = archive(index_env, data)
    asked = []
    summaries = arch.summaries
    arch.summaries = lambda feeds, level: asked.append((set(feeds), level)) or summaries(feeds, level)
    names = sorted(truth)
    a, b = START + 1234.5, START + 30 * 3600 - 1
    stride = 2500.0  # answer buckets of 5000 s: the 600 s level, a rollup level
    assert choose_level(bucket_width(stride)) in ROLLUP_LEVELS
    _panel_check(G3Reader(archive=arch), truth, names, a, b, stride)
    files_read = set().union(*(feeds for feeds, _ in asked)) if asked else set()
    assert len(files_read) <= 3 * len(PROVIDERS)  # the edges and the newest file, not 30 per provider


def test_rollups_follow_removed_and_rewritten_files(tmp_path, index_env):
    import os

    data = tmp_path / "data"
    paths, truth = make_archive(data, hours=12, gaps=())
    scan(index_env, data)
    names = sorted(truth)
    a, b, stride = START, START + 12 * 3600, 2500.0
    removed = paths[5]
    os.remove(removed)
    lo, hi = START + 5 * 3600, START + 6 * 3600
    kept = {name: (t[(t < lo) | (t >= hi)], v[(t < lo) | (t >= hi)]) for name, (t, v) in truth.items()}
    stats = scan(index_env, data)
    assert stats.removed == 1 and stats.rollups > 0
    _panel_check(G3Reader(archive=archive(index_env, data)), kept, names, a, b, stride)


def test_a_rollup_not_rebuilt_yet_is_answered_from_the_files(tmp_path, index_env):
    from sisock.components.g3_scanner import Scanner

    data = tmp_path / "data"
    _, truth = make_archive(data, hours=12, gaps=())
    index = open_index(index_env)
    scanner = Scanner(index, str(data))
    scanner._rollups = lambda stats: None  # killed before the rebuild
    scanner.scan_once()
    assert index.rollup_work() and index.counts()["rollups"] == 0
    names = sorted(truth)
    reader = G3Reader(archive=archive(index_env, data))
    before = _panel_check(reader, truth, names, START + 100, START + 12 * 3600 - 7, 2500.0)
    assert Scanner(index, str(data)).scan_once().rollups > 0  # the next pass does what was left
    assert index.rollup_work() == []
    after = _panel_check(G3Reader(archive=archive(index_env, data)), truth, names, START + 100,
                         START + 12 * 3600 - 7, 2500.0)
    assert before == after
    index.dispose()


def test_sparse_data_is_kept_as_samples_and_served_exactly(tmp_path, index_env):
    from sisock.demo.g3 import Provider
    from sisock.g3.summary import SAMPLES_LEVEL

    sparse = [Provider("observatory.slow1.feeds.hk", ["a", "b"], rate=1 / 300, block="hk")]
    data = tmp_path / "data"
    _, truth = make_archive(data, hours=72, providers=sparse, gaps=(), spike_every=6 * 3600)
    scan(index_env, data)
    index = open_index(index_env)
    with index.engine.connect() as conn:
        levels = dict(conn.execute(sa.select(g3_index.summaries.c.level, sa.func.count())
                                   .group_by(g3_index.summaries.c.level)).all())
    index.dispose()
    # 12 samples an hour: only the hourly level holds enough per bucket; the
    # finer ones are one summary of samples per file.
    assert levels == {3600: 72, SAMPLES_LEVEL: 72}
    reader = G3Reader(archive=archive(index_env, data))
    names = sorted(truth)
    for stride in (50.0, 400.0, 2500.0, 20000.0):  # raw, 60 s from samples, 600 s from samples, 3600 s
        _panel_check(reader, truth, names, START + 777.5, START + 72 * 3600 - 1, stride)


def _rollup_field_by_field(parts, level, chunk):
    """The rollup merged one field at a time, each in its own time order:
    what :func:`rollup`'s single pass must give."""
    from sisock.downsample import m4_merge
    from sisock.g3.summary import CHUNK_BUCKETS, MIN_SAMPLES_PER_BUCKET

    lo, hi = chunk * CHUNK_BUCKETS, (chunk + 1) * CHUNK_BUCKETS
    gathered = {}
    for part in parts:
        keys = part.keys(level)
        inside = (keys >= lo) & (keys < hi)
        for name, stats in part.fields.items():
            gathered.setdefault(name, []).append((keys[inside], stats[:, inside],
                                                  part.bucket[inside] if part.samples else None))
    out = {}
    for name, pieces in gathered.items():
        keys = np.concatenate([p[0] for p in pieces])
        stats = np.concatenate([p[1] for p in pieces], axis=1)
        if not len(keys):
            continue
        order = np.lexsort((stats[STATS.index("t_first")], keys))
        merged_keys, merged = m4_merge(keys[order], stats[:, order][:, None, :])
        has = merged[0, 0] > 0
        if all(p[2] is not None for p in pieces) and stats.shape[1] < MIN_SAMPLES_PER_BUCKET * has.sum():
            t = np.concatenate([p[2] for p in pieces])[order]
            present = stats[0, order] > 0
            out[name] = (True, t[present], stats[:, order][:, present])
        else:
            out[name] = (False, merged_keys[has], merged[:, 0, has])
    return out


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("overlap", [False, True])
def test_a_rollup_merges_every_field_at_once_as_field_by_field(overlap, sparse):
    """Files of one provider with fields joining and leaving, missing
    samples, dense and (every third, or with ``sparse`` all) sparse files
    (summaries of buckets, of samples), files sharing a bucket and (with
    ``overlap``) files overlapping in time. Each file gives the summary the
    index would: its own at the level, or its summary of samples."""
    from sisock.g3.summary import rollup

    rng = np.random.default_rng(7)
    files = []
    for i in range(12):
        start = 100_000.0 + i * 3600 - (1800 if overlap and i % 4 == 3 else 0)
        n = 30 if sparse or i % 3 == 2 else 3600  # a sample every two minutes, or 1 Hz
        t = np.sort(start + rng.uniform(0, 3600, n))
        fields = {f"f{k}": np.round(rng.normal(0, 3, n)) for k in range(6) if (i + k) % 5}  # ties; fields come and go
        for v in fields.values():
            v[rng.random(n) < 0.05] = np.nan
        files.append({summary.level: summary for summary in summarize(t, fields)})
    forms = []
    for level in (60, 600):
        usable = [by_level.get(level) or by_level[0] for by_level in files]
        for chunk in sorted({int(k // 1024) for p in usable for k in p.keys(level)}):
            got = rollup(usable, level, chunk)
            want = _rollup_field_by_field(usable, level, chunk)
            assert set(got) == set(want)
            for name, (samples, bucket, stats) in want.items():
                summary = got[name]
                forms.append(summary.samples)
                assert summary.samples == samples and summary.level == level
                assert np.array_equal(summary.bucket, bucket)
                assert np.array_equal(summary.fields[name], stats, equal_nan=True)
                assert np.array_equal(np.signbit(summary.fields[name]), np.signbit(stats))
    assert any(forms) == sparse and not all(forms)  # rollups of samples where every file kept samples
