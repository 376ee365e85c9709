"""Which files hold a name over a time range, on both backends: the index's
answer must be every stored span that overlaps the range, whether the range
is recent or old and however long one file of a provider runs."""

from __future__ import annotations

import random

import sqlalchemy as sa

from sisock.g3 import index as g3_index
from sisock.g3.index import LONGEST, ScannedFile

from g3_helpers import open_index

HOUR_US = 3_600_000_000
NAMES = [(0, "obs.a.feeds.hk", "x"), (0, "obs.a.feeds.hk", "y"), (1, "obs.b.feeds.hk", "z")]


def _files(rng: random.Random):
    """Hourly files of two providers over ten days, a few of them much
    longer (a provider that kept one file open for days), one field or two
    missing here and there, or sent for part of a file only."""
    out, spans = [], []
    for hour in range(240):
        length = HOUR_US if rng.random() > 0.03 else rng.randint(2, 96) * HOUR_US
        lo = hour * HOUR_US + rng.randint(0, HOUR_US // 10)
        ranges = {}
        for prov_id, provider, field in NAMES:
            if rng.random() < 0.9:
                start, stop = lo + rng.randint(0, 1000), lo + length - rng.randint(0, 1000)
                if rng.random() < 0.2:  # a field sent for part of the file only
                    cut = rng.randint(0, length // 2)
                    start, stop = (start + cut, stop) if rng.random() < 0.5 else (start, stop - cut)
                ranges[(prov_id, provider, field)] = (start, stop)
        if ranges:
            out.append(ScannedFile(f"{hour:04d}.g3", 100, hour, ranges, known=False))
            spans.extend((f"{provider}.{field}", f"{hour:04d}.g3", a, b)
                         for (_, provider, field), (a, b) in ranges.items())
    return out, spans


def _expected(spans, names, t0, t1):
    return sorted((name, path) for name, path, a, b in spans if name in names and b >= t0 and a <= t1)


def _found(index, names, t0, t1):
    return sorted((loc.name, loc.path) for loc in index.locations(names, t0, t1))


def test_the_files_of_a_range_are_every_one_overlapping_it(index_env):
    rng = random.Random(15)
    scanned, spans = _files(rng)
    index = open_index(index_env)
    try:
        for i in range(0, len(scanned), 17):  # several transactions, the long files among them
            index.replace_files(scanned[i:i + 17])
        longest = max(b - a for _, _, a, b in spans)
        assert longest > 2 * HOUR_US  # the case the bound exists for
        assert index.longest_file_us() >= longest
        names = sorted({name for name, *_ in spans})
        end = max(b for *_, b in spans)
        for _ in range(200):
            width = rng.choice([60e6, HOUR_US, 6 * HOUR_US, 48 * HOUR_US])
            t0 = rng.randint(-HOUR_US, end)
            t1 = int(t0 + width)
            asked = rng.sample(names, rng.randint(1, len(names)))
            assert _found(index, asked, t0, t1) == _expected(spans, asked, t0, t1), (asked, t0, t1)
        # Deleting the longest file leaves a bound that is still one.
        longest_path = max(spans, key=lambda s: s[3] - s[2])[1]
        index.remove([longest_path])
        kept = [s for s in spans if s[1] != longest_path]
        assert index.longest_file_us() >= max(b - a for _, _, a, b in kept)
        for t0 in range(0, end, 7 * HOUR_US):
            assert _found(index, names, t0, t0 + HOUR_US) == _expected(kept, names, t0, t0 + HOUR_US)
    finally:
        index.dispose()


def test_an_index_of_schema_3_gets_the_bound_and_the_feeds_index(index_env):
    rng = random.Random(3)
    scanned, spans = _files(rng)
    index = open_index(index_env)
    try:
        index.replace_files(scanned)
        with index.engine.begin() as conn:  # as schema 3 left it: no bound row, an index on start alone
            conn.execute(g3_index.meta.delete().where(g3_index.meta.c.name == LONGEST))
            conn.execute(g3_index.meta.update().where(g3_index.meta.c.name == "schema_version").values(value="3"))
        with index.engine.begin() as conn:
            conn.execute(sa.text("CREATE INDEX ix_fields_start ON fields (start)"))  # not through the schema's metadata
            on = " ON feeds" if conn.dialect.name in ("mysql", "mariadb") else ""
            conn.execute(sa.text(f"DROP INDEX ix_feeds_start{on}"))  # schema 5's
    finally:
        index.dispose()
    index = open_index(index_env)  # upgrades
    try:
        with index.engine.connect() as conn:
            rows = dict(conn.execute(sa.select(g3_index.meta.c.name, g3_index.meta.c.value)).all())
        assert rows["schema_version"] == str(g3_index.SCHEMA_VERSION) == "5"
        assert int(rows[LONGEST]) == max(b - a for _, _, a, b in spans)
        assert "ix_fields_start" not in {i["name"] for i in sa.inspect(index.engine).get_indexes("fields")}
        assert "ix_feeds_start" in {i["name"] for i in sa.inspect(index.engine).get_indexes("feeds")}
        names = sorted({name for name, *_ in spans})
        for t0 in range(0, 240 * HOUR_US, 5 * HOUR_US):
            assert _found(index, names, t0, t0 + 60_000_000) == _expected(spans, names, t0, t0 + 60_000_000)
    finally:
        index.dispose()


def test_a_new_index_starts_with_a_bound_of_zero_and_raises_it(index_env):
    index = open_index(index_env)
    try:
        assert index.longest_file_us() == 0
        index.replace_files([ScannedFile("a.g3", 1, 1, {(0, "p", "f"): (10, 20)}, known=False)])
        assert index.longest_file_us() == 10
        index.replace_files([ScannedFile("b.g3", 1, 1, {(0, "p", "f"): (100, 105)}, known=False)])
        assert index.longest_file_us() == 10  # never lowered by a shorter file
        index.replace_files([ScannedFile("c.g3", 1, 1, {(0, "p", "f"): (200, 1200), (1, "q", "f"): (0, 50)},
                                         known=False)])
        assert index.longest_file_us() == 1000
    finally:
        index.dispose()


def _names_expected(spans, t0, t1):
    return sorted({name for name, _, a, b in spans if b >= t0 and a <= t1})


def test_the_names_of_a_window_are_those_with_a_sample_in_it(index_env, monkeypatch):
    """Both ways of answering: from the files of the window (small
    windows), and from every name's field rows (wide ones)."""
    rng = random.Random(5)
    scanned, spans = _files(rng)
    index = open_index(index_env)
    try:
        index.replace_files(scanned)
        end = max(b for *_, b in spans)
        windows = [(0, 2**62), (end + 1, end + HOUR_US), (-10 * HOUR_US, -HOUR_US)]
        for _ in range(60):
            t0 = rng.randint(-HOUR_US, end)
            windows.append((t0, int(t0 + rng.choice([1e6, 60e6, HOUR_US, 30 * HOUR_US, 200 * HOUR_US]))))
        for limit in (10**9, 0):  # always through the files, then always by name
            monkeypatch.setattr(g3_index, "WINDOW_FEEDS", limit)
            for t0, t1 in windows:
                kinds = index.kinds(t0, t1)
                assert sorted(kinds) == _names_expected(spans, t0, t1), (limit, t0, t1)
                assert set(kinds.values()) <= {"float"}
        everything = _names_expected(spans, 0, 2**62)
        partial = [w for w in windows if 0 < len(_names_expected(spans, *w)) < len(everything)]
        assert len(partial) >= 3  # windows where a name has no sample: the filter is what is tested
    finally:
        index.dispose()
