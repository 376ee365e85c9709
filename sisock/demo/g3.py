"""Synthetic so3g housekeeping archives for tests, benchmarks and the local demo.

The g3 scanner and g3-reader must be exercised on files that look like what
the OCS aggregator writes (same folder layout, same frame sequence, same
schema), but with data whose exact content the tests know in advance.  So
every sample value here is a pure function of ``(seed, field name, sample
time)``: :func:`expected` recomputes any range without touching the files,
and a file written in pieces (:func:`append_frames`) holds the same numbers as
one written at once.

Only IEEE-exact numpy operations (integer arithmetic, ``+ - * /``) produce the
values.  Transcendental functions such as ``np.sin`` are avoided on purpose:
numpy may evaluate them with SIMD kernels for the bulk of an array and libm for
the tail, so the same time stamp could give a different last bit depending on
how the samples were chunked into frames, and the round-trip tests compare
floats exactly.

Time is handled in G3 ticks (``core.G3Units.s`` = 1e8 per second) as int64;
floats are made only at the edge, so sample grids, file and frame boundaries
and spikes never drift.
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sisock.g3 import native
from sisock.g3.files import TICKS_PER_SECOND  # checked against spt3g's core.G3Units.s on first write

DEMO_MARKER = ".g3_demo.json"
DEMO_SPIKE = 50.0  # visible in a plot without flattening the rest of the curve


@dataclass
class Provider:
    """One OCS feed: every field is sampled on the provider's single timeline."""

    description: str  # e.g. "observatory.LSA22YE.feeds.temperatures"
    fields: list[str]  # e.g. ["Channel_01_T", ...]
    rate: float = 1.0  # samples per second
    block: str = "temps"  # block name (v2 schema)
    offset: float = 0.0  # values = offset + scale * (signal + spikes): realistic magnitudes for the demo
    scale: float = 1.0

    @property
    def period_ticks(self) -> int:
        """Sample spacing, rounded to whole ticks so the grid is exact integers."""
        p = round(TICKS_PER_SECOND / self.rate)
        if p <= 0:
            raise ValueError(f"rate {self.rate} is too high for the G3 time resolution")
        return p

    def full_names(self) -> list[str]:
        return [f"{self.description}.{f}" for f in self.fields]


# ---------------------------------------------------------------- time helpers


def to_ticks(t: float) -> int:
    """Seconds -> ticks, rounded from the float's exact value (``t * 1e8`` in
    floating point is off by up to 16 ticks at present-day ctimes)."""
    return round(Fraction(t) * TICKS_PER_SECOND)


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def _gap_ticks(gaps: Iterable[Sequence[float]]) -> list[tuple[int, int]]:
    return [(to_ticks(g0), to_ticks(g1)) for g0, g1 in gaps]


def _sample_ticks(provider: Provider, start: float, a: int, b: int, gaps=()) -> np.ndarray:
    """The provider's sample times in ticks within ``[a, b)`` ticks.

    The grid is ``start + i * period`` for the whole archive, whatever range is
    asked for, so files, frames and :func:`expected` all agree on it.
    """
    t0 = to_ticks(start)
    p = provider.period_ticks
    i0 = max(0, _ceil_div(a - t0, p))
    i1 = max(i0, _ceil_div(b - t0, p))
    ticks = t0 + p * np.arange(i0, i1, dtype=np.int64)
    for g0, g1 in _gap_ticks(gaps):
        ticks = ticks[(ticks < g0) | (ticks >= g1)]
    return ticks


# --------------------------------------------------------------- the signal


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays: a counter-based noise source,
    so a sample's noise depends on its time stamp only, not on draw order."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def _hash(*parts) -> int:
    """Stable across processes (unlike ``hash()``), and well mixed."""
    key = zlib.crc32("\x1f".join(str(p) for p in parts).encode())
    return int(_mix64(np.array([key], dtype=np.uint64))[0])


@dataclass(frozen=True)
class _FieldSignal:
    period: int  # ticks
    phase: int  # ticks
    level: float
    amplitude: float
    noise_key: int
    spike_offset: int  # ticks within the spike period; -1: no spikes


def _field_signals(provider: Provider, seed: int, spike_ticks: int) -> tuple[_FieldSignal, ...]:
    return _signals(provider.description, tuple(provider.fields), seed, spike_ticks)


@functools.lru_cache(maxsize=256)
def _signals(description: str, fields: tuple[str, ...], seed: int, spike_ticks: int) -> tuple[_FieldSignal, ...]:
    # Cached: the parameters are re-derived for every frame otherwise, and
    # hashing dominated the write time.
    n = len(fields)
    base = _hash(seed, description, "spikes")
    out = []
    for j, name in enumerate(fields):
        h = [_hash(seed, description, name, k) for k in range(5)]
        period = (1200 + h[0] % 20400) * TICKS_PER_SECOND  # 20 min .. 6 h
        spike = -1
        if spike_ticks > 0:
            # Spread evenly within the provider so its fields never spike on
            # the same sample (when spike_every / n_fields >= one sample).
            spike = (base + j * (spike_ticks // n)) % spike_ticks
        out.append(_FieldSignal(
            period=period,
            phase=h[1] % period,
            level=(h[2] % 1000) / 10.0,
            amplitude=1.0 + (h[3] % 900) / 100.0,
            noise_key=h[4],
            spike_offset=spike,
        ))
    return tuple(out)


def _values(sig: _FieldSignal, provider: Provider, ticks: np.ndarray, spike_ticks: int,
            spike_size: float) -> np.ndarray:
    # A smooth (C1) periodic bump (1 - u^2)^2 built from exact arithmetic only.
    x = ((ticks + sig.phase) % sig.period) / float(sig.period)
    u = 2.0 * x - 1.0
    w = 1.0 - u * u
    wave = w * w - 0.5
    bits = _mix64(ticks.astype(np.uint64) ^ np.uint64(sig.noise_key)) >> np.uint64(11)
    noise = (bits.astype(np.float64) * (1.0 / (1 << 53)) - 0.5) * (0.02 * sig.amplitude)
    v = sig.level + sig.amplitude * wave + noise
    if sig.spike_offset >= 0:
        hit = (ticks - sig.spike_offset) % spike_ticks < provider.period_ticks
        v[hit] += spike_size
    return provider.offset + provider.scale * v


def _spike_ticks(spike_every) -> int:
    return to_ticks(spike_every) if spike_every else 0


def _field_arrays(provider: Provider, ticks: np.ndarray, *, spike_every, spike_size, seed):
    st = _spike_ticks(spike_every)
    if st and st < provider.period_ticks:
        raise ValueError("spike_every must be at least one sample period")
    return [_values(s, provider, ticks, st, spike_size) for s in _field_signals(provider, seed, st)]


def expected(providers: Sequence[Provider], start: float, end: float, *, spike_every=6 * 3600,
             spike_size=1000.0, gaps=(), seed=0, schema=2, file_seconds=None, frame_seconds=None
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What :func:`write_archive` with the same arguments puts in the files,
    as ``{"<description>.<field>": (t, values)}`` with ``t`` in float seconds
    exactly as ``HKArchive.get_data`` returns them (int64 ticks / 1e8).

    ``file_seconds`` and ``frame_seconds`` are accepted (and ignored) so one
    kwargs dict can drive both calls: the layout never changes the samples.
    ``schema`` matters only for schema 0, whose float time stamps so3g's
    translator truncates to ticks; that conversion is mirrored here.
    """
    out = {}
    a, b = to_ticks(start), to_ticks(end)
    for p in providers:
        ticks = _sample_ticks(p, start, a, b, gaps)
        values = _field_arrays(p, ticks, spike_every=spike_every, spike_size=spike_size, seed=seed)
        if schema == 0:
            ticks = (_v0_times(ticks) * float(TICKS_PER_SECOND)).astype(np.int64)
        t = ticks / float(TICKS_PER_SECOND)
        for name, v in zip(p.full_names(), values, strict=True):
            out[name] = (t, v)
    return out


def _v0_times(ticks: np.ndarray) -> np.ndarray:
    return ticks / float(TICKS_PER_SECOND)


# ---------------------------------------------------------------- frames


def _core():
    native.so3g()  # registers the HK frame types with spt3g
    from spt3g import core

    if int(core.G3Units.s) != TICKS_PER_SECOND:
        raise RuntimeError("unexpected G3 time unit")
    return core


def _session_id(start: float, seed: int) -> int:
    # HKSessionHelper's default mixes in the PID; ours must be reproducible.
    return (int(start) << 28) | (_hash(seed, "session") & 0xFFFFFFF)


class _Session:
    """Frame factory for one aggregator session (shared by every file it writes)."""

    def __init__(self, providers: Sequence[Provider], start: float, schema: int, seed: int,
                 session_id: int | None = None, prov_ids: Sequence[int] | None = None):
        native.so3g()
        from so3g.hk.session import HKSessionHelper

        if schema not in (0, 1, 2):
            raise ValueError(f"unknown HK schema {schema}")
        self.core = _core()
        self.schema = schema
        if session_id is None:
            session_id = _session_id(start, seed)
        self.helper = HKSessionHelper(session_id=session_id, start_time=float(start),
                                      hkagg_version=schema, description="sisock g3_demo")
        self.prov_ids = [self.helper.add_provider(p.description) for p in providers]
        if prov_ids is not None:
            self.prov_ids = list(prov_ids)

    def header(self, timestamp: float):
        return [self.helper.session_frame(), self.helper.status_frame(timestamp=float(timestamp))]

    def data_frame(self, prov_index: int, provider: Provider, ticks: np.ndarray, values, timestamp: float):
        so3g = native.so3g()

        core = self.core
        f = core.G3Frame(core.G3FrameType.Housekeeping)
        f["hkagg_version"] = self.schema
        f["hkagg_type"] = so3g.HKFrameType.data
        f["session_id"] = self.helper.session_id
        f["prov_id"] = self.prov_ids[prov_index]
        f["timestamp"] = float(timestamp)
        blocks = core.G3VectorFrameObject()
        if self.schema == 0:
            blk = so3g.IrregBlockDouble()
            blk.prefix = ""
            blk.t = core.G3VectorDouble(_v0_times(ticks))
            for name, v in zip(provider.fields, values, strict=True):
                blk.data[name] = v
        else:
            blk = core.G3TimesampleMap()
            blk.times = core.G3VectorTime(ticks)
            for name, v in zip(provider.fields, values, strict=True):
                blk[name] = core.G3VectorDouble(v)
        blocks.append(blk)
        f["blocks"] = blocks
        if self.schema >= 2:
            f["block_names"] = core.G3VectorString([provider.block])
        return f


def _data_frames(session: _Session, providers, start, a: int, b: int, *, frame_seconds, gaps,
                 spike_every, spike_size, seed):
    """Data frames for ``[a, b)`` ticks: one per provider per ``frame_seconds``
    window, in time order, the way the aggregator interleaves its feeds.
    Windows with no sample (gaps) produce no frame: so3g's scanner indexes
    ``times[0]`` of every block and cannot take an empty one."""
    step = to_ticks(frame_seconds)
    if step <= 0:
        raise ValueError("frame_seconds must be positive")
    w0 = a
    while w0 < b:
        w1 = min(w0 + step, b)
        for k, p in enumerate(providers):
            ticks = _sample_ticks(p, start, w0, w1, gaps)
            if len(ticks) == 0:
                continue
            values = _field_arrays(p, ticks, spike_every=spike_every, spike_size=spike_size, seed=seed)
            yield session.data_frame(k, p, ticks, values, w1 / TICKS_PER_SECOND)
        w0 = w1


def _write(path: str, frames, append: bool = False) -> None:
    core = _core()
    writer = core.G3Writer(path, append=append)
    for f in frames:
        writer.Process(f)
    # EndProcessing closes the file (it is not written into it).
    writer.Process(core.G3Frame(core.G3FrameType.EndProcessing))
    del writer


def archive_path(directory: str, file_start: float) -> str:
    """``<dir>/<first 5 digits of ctime>/<ctime>.g3``, the aggregator's layout."""
    name = str(int(file_start))
    return os.path.join(directory, name[:5], name + ".g3")


# ---------------------------------------------------------------- public writers


def write_archive(directory: str, start: float, end: float, providers: Sequence[Provider], file_seconds=3600,
                  frame_seconds=300, schema=2, spike_every=6 * 3600, spike_size=1000.0, gaps=(), seed=0, *,
                  atomic=True) -> list[str]:
    """Write one aggregator session covering ``[start, end)``; return the
    file paths in time order.

    Every file starts with a session and a status frame (as the aggregator
    writes on each rotation), so each can be read on its own.  A file whose
    whole span falls in a gap still gets those two frames: the aggregator
    keeps rotating files while its feeds are silent.

    With ``atomic`` each file is written under ``<name>.g3.part`` and renamed
    when complete, so a scanner running meanwhile never sees a partial file
    (use :func:`append_frames` when a growing file is what is wanted).
    """
    if to_ticks(file_seconds) < TICKS_PER_SECOND:
        raise ValueError("file_seconds must be at least 1 s (file names are whole ctimes)")
    session = _Session(providers, start, schema, seed)
    a, b = to_ticks(start), to_ticks(end)
    step = to_ticks(file_seconds)
    paths = []
    f0 = a
    while f0 < b:
        f1 = min(f0 + step, b)
        path = archive_path(directory, f0 / TICKS_PER_SECOND)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        frames = [*session.header(f0 / TICKS_PER_SECOND),
                  *_data_frames(session, providers, start, f0, f1, frame_seconds=frame_seconds, gaps=gaps,
                                spike_every=spike_every, spike_size=spike_size, seed=seed)]
        target = path + ".part" if atomic else path
        _write(target, frames)
        if atomic:
            os.replace(target, path)
        paths.append(path)
        f0 = f1
    return paths


def write_file(path: str, providers: Sequence[Provider], start: float, end: float, *, frame_seconds=300,
               schema=2, spike_every=6 * 3600, spike_size=1000.0, gaps=(), seed=0,
               grid_start: float | None = None) -> str:
    """One HK file (header + data for ``[start, end)``) at an arbitrary path.

    ``grid_start`` anchors the sample grid (default ``start``); pass the same
    value to :func:`append_frames` and :func:`expected` (as ``start``) so the
    pieces line up.
    """
    grid = start if grid_start is None else grid_start
    session = _Session(providers, grid, schema, seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    frames = [*session.header(start),
              *_data_frames(session, providers, grid, to_ticks(start), to_ticks(end), frame_seconds=frame_seconds,
                            gaps=gaps, spike_every=spike_every, spike_size=spike_size, seed=seed)]
    _write(path, frames)
    return path


def append_frames(path: str, providers: Sequence[Provider], start: float, end: float, *, frame_seconds=300,
                  spike_every=6 * 3600, spike_size=1000.0, gaps=(), seed=0, grid_start: float | None = None) -> str:
    """Append data frames for ``[start, end)`` to an existing HK file, in
    place, the way a live aggregator's file grows.

    spt3g's ``G3Writer(path, append=True)`` opens the file for appending, so
    the bytes already there are untouched and byte offsets a scanner recorded
    stay valid.  Schema, session id and each provider's ``prov_id`` are taken
    from the file's own session and status frames (providers are matched by
    description), so the appended frames belong to the session that opened
    the file.  ``grid_start`` is the start the file was written with, so the
    sample grid continues unbroken (default ``start``).
    """
    core = _core()
    reader = core.G3Reader(path)
    head = []
    while len(head) < 2:
        frames = reader.Process(None)
        if not frames:
            raise ValueError(f"{path}: no session and status frame to append to")
        head.append(frames[0])
    del reader
    session_frame, status = head
    ids = {p["description"].value: p["prov_id"].value for p in status["providers"]}
    missing = [p.description for p in providers if p.description not in ids]
    if missing:
        raise ValueError(f"{path}: providers not in its status frame: {missing}")
    grid = start if grid_start is None else grid_start
    session = _Session(providers, grid, session_frame.get("hkagg_version", 0), seed,
                       session_id=session_frame["session_id"], prov_ids=[ids[p.description] for p in providers])
    frames = _data_frames(session, providers, grid, to_ticks(start), to_ticks(end), frame_seconds=frame_seconds,
                          gaps=gaps, spike_every=spike_every, spike_size=spike_size, seed=seed)
    _write(path, frames, append=True)
    return path


# ---------------------------------------------------------------- demo archive


def demo_providers() -> list[Provider]:
    return [
        Provider("observatory.LSA22YE.feeds.temperatures", [f"Channel_{i:02d}_T" for i in range(1, 5)],
                 block="temps"),
        Provider("observatory.pfeiffer.feeds.pressures", ["pressure_ch1", "pressure_ch2"], block="pressures",
                 offset=1e-3, scale=1e-5),
        Provider("observatory.ptc1.feeds.ptc_status",
                 ["CoolantInTemp", "CoolantOutTemp", "OilTemp", "HeliumTemp"], block="ptc", offset=10.0),
    ]


def demo_archive(directory: str, days: float = 3, end: float | None = None) -> list[str]:
    """A few days of 1 Hz data from three feeds (10 fields), hourly v2 files,
    ending at ``end`` (default: now, down to the minute).

    Idempotent because it is meant to run at every start of the local demo
    stack: rewriting days of files each time would cost seconds and make the
    g3 scanner re-index files it already has.  A marker file
    (``.g3_demo.json``, written last) records what was written; when it is
    less than an hour (one file) behind ``end`` nothing is done, otherwise
    only the missing span is added, as a new aggregator session (at most
    ``days`` long; anything older becomes a gap).  A run interrupted before
    the marker leaves no marker, so the next run writes everything again
    (possibly beside the partial files: delete the folder first).  Returns
    the files written (empty when up to date).
    """
    if end is None:
        end = float(int(time.time()) // 60 * 60)
    marker = os.path.join(directory, DEMO_MARKER)
    start = end - days * 86400
    state = None
    try:
        with open(marker) as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        pass
    if state is not None and state.get("version") == 1:
        if state["end"] >= end - 3600:
            return []
        start = max(start, float(state["end"]))
    os.makedirs(directory, exist_ok=True)
    paths = write_archive(directory, start, end, demo_providers(), file_seconds=3600, frame_seconds=300, schema=2,
                          spike_size=DEMO_SPIKE)
    tmp = marker + ".part"
    with open(tmp, "w") as fh:
        json.dump({"version": 1, "start": (state or {}).get("start", start), "end": end}, fh)
    os.replace(tmp, marker)
    return paths


def archive_files(directory: str) -> list[str]:
    """Archive files in time order (names are ctimes of equal width for centuries)."""
    return sorted(glob.glob(os.path.join(directory, "[0-9]" * 5, "*.g3")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sisock.demo.g3",
                                     description="Write (or top up) a demo so3g housekeeping archive.")
    parser.add_argument("directory")
    parser.add_argument("--days", type=float, default=3.0, help="days of data (default 3)")
    parser.add_argument("--end", type=float, default=None, help="end ctime (default: now, to the minute)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    paths = demo_archive(args.directory, days=args.days, end=args.end)
    if paths:
        size = sum(os.path.getsize(p) for p in paths)
        print(f"wrote {len(paths)} files ({size / 1e6:.1f} MB) in {time.monotonic() - t0:.1f} s to {args.directory}")
    else:
        print(f"{args.directory}: demo archive already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
