"""The g3-reader's tiles (a file's answer buckets, cached) give exactly what
M4 over the range's raw samples gives: ranges cutting buckets, ranges inside
one bucket, buckets shared by two files, integer, boolean and string fields,
before and after the tiles are cached."""

from __future__ import annotations

import time

import numpy as np

from sisock.downsample import m4_indices

from g3_helpers import START, archive, make_archive, scan, write_typed_file


def m4_of_raw(reader, names, a, b, width):
    out = {}
    for name, (t, v) in reader.series(names, a, b).items():
        keep = m4_indices(t, v, width)
        out[name] = (t[keep], np.asarray(v)[keep])
    return out


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        (t1, v1), (t2, v2) = got[name], want[name]
        assert np.array_equal(t1, t2), name
        assert np.asarray(v1).dtype.kind == np.asarray(v2).dtype.kind, name
        assert list(np.asarray(v1)) == list(np.asarray(v2)), name


def test_tiles_equal_m4_of_the_raw_samples(index_env, tmp_path):
    data = tmp_path / "data"
    _, truth = make_archive(data, hours=4)
    typed = write_typed_file(str(data / "typed" / "1700003000.g3"), START + 3000, 900)
    scan(index_env, data)
    names = sorted(truth) + sorted(typed)
    reader = archive(index_env, data)
    rng = np.random.default_rng(7)
    cases = [(START, START + 4 * 3600, 60.0), (START + 3590, START + 3610, 40.0),  # across a file boundary
             (START + 1000.5, START + 1000.7, 30.0)]  # inside one bucket
    for _ in range(40):
        a = START + rng.uniform(-600, 4 * 3600)
        b = a + rng.uniform(1, 3 * 3600)
        cases.append((a, b, float(rng.choice([7.0, 43.4, 120.0, 900.0]))))
    kinds = set()
    for a, b, width in cases:
        want = m4_of_raw(reader, names, a, b, width)
        kinds |= {np.asarray(v).dtype.kind for _, v in want.values()}
        assert_same(reader.series(names, a, b, width), want)  # tiles computed
        assert_same(reader.series(names, a, b, width), want)  # tiles from the cache
    assert kinds == {"f", "i", "b", "O"}  # every kind of field was checked
    # The cache holds tiles after the first pass, and a tile is far smaller than its samples.
    loc = reader.locate([names[0]], START, START + 3600)[0][0]
    tiles, _ = reader.tiles(loc.path, loc.provider, 120.0)
    block, row = tiles.where[loc.field]
    keys, stats, starts, t = tiles.blocks[block]
    assert tiles.kinds[loc.field] == "f" and len(keys) == len(starts) < len(t) / 10
    assert stats.shape[0] == 10 and stats.shape[2] == len(keys)


def test_prefetch_decodes_the_newest_files_within_its_share(index_env, tmp_path, monkeypatch):
    data = tmp_path / "data"
    _, truth = make_archive(data, hours=4)
    scan(index_env, data)
    names = sorted(truth)
    reader = archive(index_env, data)
    decoded, read = [], []  # (file, provider) decoded for a request; (file, providers) read by the prefetch
    real, real_many = reader._decode, reader._decode_providers
    monkeypatch.setattr(reader, "_decode", lambda full, provider: decoded.append(full) or real(full, provider))
    monkeypatch.setattr(reader, "_decode_providers",
                        lambda full, providers: read.append((full, set(providers))) or real_many(full, providers))
    reader.plan_prefetch(names, 2 * 3600)
    assert reader.prefetch(0.0) and read == []  # no share of the cache: nothing to do
    reader.plan_prefetch(names, 2 * 3600)
    assert not reader.prefetch(0.25, until=time.monotonic()) and read == []  # out of time
    # The last two hours of 4 hourly files: the newest two (or three, when a
    # provider's last sample sits on the hour) files, each read once, the
    # newest two for both providers at once.
    assert reader.prefetch(0.25)  # goes on where it stopped
    assert 2 <= len(read) <= 3 and len({f for f, _ in read}) == len(read)
    assert all(len(providers) == 2 for _, providers in read[:2])
    read.clear()
    reader.plan_prefetch(names, 2 * 3600)
    assert reader.prefetch(0.25) and read == []  # planned again: nothing decoded twice
    end = START + 4 * 3600
    got = reader.series(names, end - 2 * 3600, end, 43.4)
    assert decoded == [] and set(got) == set(names)  # answered from memory
    reader.series(names, START, START + 600, 43.4)
    # Older files are still read when asked for: once for both providers.
    assert len(read) == 1 and len(read[0][1]) == 2 and decoded == []


def test_prefetch_reads_the_newest_rollups_once_the_files_are_decoded(index_env, tmp_path, monkeypatch):
    data = tmp_path / "data"
    _, truth = make_archive(data, hours=4)
    scan(index_env, data)
    names = sorted(truth)
    end = START + 4 * 3600
    fresh = archive(index_env, data)
    want = fresh.panel(names, end - 4 * 3600, end, 300.0)  # 600 s buckets: from the 60 s rollups

    reader = archive(index_env, data)
    asked = []
    real = reader.index.rollups
    monkeypatch.setattr(reader.index, "rollups", lambda *a: asked.append(a[0]) or real(*a))
    reader.plan_prefetch(names, 2 * 3600)
    assert reader.prefetch(0.0) and asked == []  # no share of the cache: not even rollups
    reader.plan_prefetch(names, 2 * 3600)
    assert reader.prefetch(0.25, quiet=0.0) and asked == []  # once joined (quiet): files only
    reader.plan_prefetch(names, 2 * 3600)
    assert reader.prefetch(0.25)  # before joining
    assert sorted(n for batch in asked for n in batch) == names  # every name, once, after the files
    asked.clear()
    assert_same(reader.panel(names, end - 4 * 3600, end, 300.0), want)
    assert asked == []  # the week's rollups were already in memory
