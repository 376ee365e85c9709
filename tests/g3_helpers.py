"""Shared pieces of the g3 tests: archives, scans, index snapshots, and
the damage done to files on purpose (only tests break files, so that lives
here rather than beside the demo writer in the package)."""

from __future__ import annotations

import os
import signal

import numpy as np
import psutil

from sisock.cache import ByteLRU
from sisock.components.g3_scanner import Scanner
from sisock.demo.g3 import Provider, expected, write_archive
from sisock.g3.index import OK, Index, database_url
from sisock.servers.g3_reader import Archive

START = 1_700_000_000.0
PROVIDERS = [
    Provider("observatory.therm1.feeds.temperatures", ["ch1_t", "ch2_t", "ch3_t"], rate=1.0, block="temps"),
    Provider("observatory.gauge2.feeds.pressures", ["p_main", "p_aux"], rate=0.5, block="press"),
]
GAP = (START + 5000.0, START + 6500.0)


def make_archive(directory, hours=4, schema=2, start=START, providers=PROVIDERS, gaps=(GAP,), **kw):
    args = {"file_seconds": 3600, "frame_seconds": 300, "schema": schema, "gaps": gaps, "spike_every": 1800, **kw}
    paths = write_archive(str(directory), start, start + hours * 3600, providers, **args)
    return paths, expected(providers, start, start + hours * 3600, **args)


def open_index(env) -> Index:
    return Index(database_url(env))


def scan(env, data_dir):
    index = open_index(env)
    try:
        return Scanner(index, str(data_dir)).scan_once()
    finally:
        index.dispose()


def archive(env, data_dir, cache_bytes=64 * 1024 * 1024) -> Archive:
    return Archive(open_index(env), str(data_dir), ByteLRU(cache_bytes))


def snapshot(index: Index) -> dict:
    """``{path: {(provider, field): (start, end)}}`` of the fully indexed files."""
    import sqlalchemy as sa

    from sisock.g3 import index as g

    query = (
        sa.select(g.files.c.path, g.feeds.c.description, g.fields.c.field, g.fields.c.start, g.fields.c.end)
        .select_from(g.fields).join(g.feeds, g.fields.c.feed_id == g.feeds.c.id)
        .join(g.files, g.feeds.c.file_id == g.files.c.id).where(g.files.c.status == OK)
    )
    out: dict = {}
    with index.engine.connect() as conn:
        for path, prov, field, lo, hi in conn.execute(query):
            out.setdefault(path, {})[(prov, field)] = (lo, hi)
        ok_files = [row[0] for row in conn.execute(sa.select(g.files.c.path).where(g.files.c.status == OK))]
    for path in ok_files:
        out.setdefault(path, {})
    return out


def meta_rows(index: Index) -> list[tuple[str, str]]:
    """Every ``(name, value)`` row of ``sisock_meta``, sorted."""
    import sqlalchemy as sa

    from sisock.g3 import index as g

    with index.engine.connect() as conn:
        return sorted(conn.execute(sa.select(g.meta.c.name, g.meta.c.value)).all())


def assert_index_complete(env, reference, counts):
    """The index of ``env`` is what one lone scan of the archive makes: each
    file once with the ranges of ``reference``, the row ``counts`` of
    :meth:`Index.counts`, one schema version row (the current one), one
    generation row and the bound on a file's length."""
    from sisock.g3.index import SCHEMA_VERSION

    index = open_index(env)
    try:
        assert snapshot(index) == reference
        got = index.counts()
        assert got == counts, (got, counts)
        rows = meta_rows(index)
        assert [name for name, _ in rows] == ["generation", "longest_us", "schema_version"], rows
        assert dict(rows)["schema_version"] == str(SCHEMA_VERSION)
    finally:
        index.dispose()


def expected_file_ranges(paths, data_dir, truth, providers=PROVIDERS, file_seconds=3600):
    """What the index must say of each file, from the samples written."""
    out = {}
    for path in paths:
        t0 = float(os.path.basename(path)[:-3])
        entry = {}
        for p in providers:
            for field in p.fields:
                t, _ = truth[f"{p.description}.{field}"]
                inside = t[(t >= t0) & (t < t0 + file_seconds)]
                if len(inside):
                    entry[(p.description, field)] = (int(round(inside[0] * 1e6)), int(round(inside[-1] * 1e6)))
        out[os.path.relpath(path, data_dir)] = entry
    return out


def window(truth, name, start, end):
    t, v = truth[name]
    keep = (t >= start) & (t <= end)
    return t[keep], v[keep]


def assert_series_equal(got, want):
    t, v = got
    wt, wv = want
    assert np.array_equal(t, wt), (len(t), len(wt))
    assert np.array_equal(v, wv)


def truncate_file(path: str, fraction: float = 0.5) -> int:
    """Cut a file to ``fraction`` of its size (almost surely mid-frame), as a
    crash or a copy in progress leaves it.  Returns the new size."""
    size = int(os.path.getsize(path) * fraction)
    os.truncate(path, size)
    return size


def garbage_file(path: str, nbytes: int = 4096, seed: int = 0) -> str:
    """Random bytes under a ``.g3`` name: what the scanner must survive when
    something else drops a file into the archive."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(np.random.default_rng(seed).bytes(nbytes))
    return path


def kill_scanner(proc) -> None:
    """SIGKILL a running scanner; its worker processes must die with it
    (they are told to by the kernel when their parent goes)."""
    workers = psutil.Process(proc.pid).children()
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    psutil.wait_procs(workers, timeout=10)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), "orphaned workers"


TYPED = "observatory.typed1.feeds.status"


def typed_truth(start: float, n: int, period: float = 2.0) -> dict:
    """What :func:`write_typed_file` writes: ``{full name: (t, values)}``
    with an integer, a boolean, a string and a float field."""
    ticks = (int(start * 1e8) + np.arange(n, dtype=np.int64) * int(period * 1e8))
    t = ticks / 1e8
    k = np.arange(n)
    return {
        f"{TYPED}.count": (t, (k * 7919) % 1000 - 500),
        f"{TYPED}.ok": (t, (k % 3) == 0),
        f"{TYPED}.state": (t, np.array([("idle", "ramp", "hold", "fault")[i % 4] for i in (k // 5)], dtype=object)),
        f"{TYPED}.level": (t, np.sin(k / 50.0)),
    }


def write_typed_file(path: str, start: float, n: int, period: float = 2.0) -> dict:
    """One HK file of a provider with int, bool, string and float fields,
    written with so3g as an aggregator would; returns :func:`typed_truth`."""
    from so3g.hk.session import HKSessionHelper
    from spt3g import core

    truth = typed_truth(start, n, period)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    helper = HKSessionHelper(session_id=int(start) << 20, start_time=start, hkagg_version=2, description="typed")
    prov = helper.add_provider(TYPED)
    writer = core.G3Writer(path)
    for frame in (helper.session_frame(), helper.status_frame(timestamp=start)):
        writer.Process(frame)
    t = next(iter(truth.values()))[0]
    for lo in range(0, n, 150):  # several frames, as an aggregator writes
        hi = min(n, lo + 150)
        block = core.G3TimesampleMap()
        block.times = core.G3VectorTime([core.G3Time(int(round(x * 1e8))) for x in t[lo:hi]])
        values = {name.rsplit(".", 1)[1]: v[lo:hi] for name, (_, v) in truth.items()}
        block["count"] = core.G3VectorInt([int(x) for x in values["count"]])
        block["ok"] = core.G3VectorBool([bool(x) for x in values["ok"]])
        block["state"] = core.G3VectorString(list(values["state"]))
        block["level"] = core.G3VectorDouble(values["level"])
        writer.Process(data_frame(helper, prov, block, "status", float(t[hi - 1])))
    writer.Process(core.G3Frame(core.G3FrameType.EndProcessing))
    del writer
    return truth


def data_frame(helper, prov: int, block, block_name: str, timestamp: float):
    """One HK data frame (schema 2) holding one block, as an aggregator writes it."""
    import so3g
    from spt3g import core

    frame = core.G3Frame(core.G3FrameType.Housekeeping)
    frame["hkagg_version"] = 2
    frame["hkagg_type"] = so3g.HKFrameType.data
    frame["session_id"] = helper.session_id
    frame["prov_id"] = prov
    frame["timestamp"] = timestamp
    blocks = core.G3VectorFrameObject()
    blocks.append(block)
    frame["blocks"] = blocks
    frame["block_names"] = core.G3VectorString([block_name])
    return frame
