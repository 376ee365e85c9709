"""Reading so3g housekeeping (HK) files into numpy arrays.

One reader for the scanner (which wants each field's first and last sample)
and the g3-reader (which wants the samples): both walk the file's frames
once, let so3g's HKTranslator bring old schemas to the current one, and keep
per provider block one time axis plus one array per field.

A file that stops in the middle of a frame (the aggregator is still writing
it, or it was cut short) yields every complete frame before the break and
reports the break in ``HKFile.error``; a file with no readable HK frame at
all raises :class:`UnreadableFile`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np

from sisock.g3 import native

#: G3 time ticks per second (spt3g stores times as int64 in units of 10 ns).
TICKS_PER_SECOND = 100_000_000
TICKS_PER_US = 100
CURRENT_SCHEMA = 2


class UnreadableFile(Exception):
    """Not an HK file, or not a single frame of one could be read."""


@dataclass
class Block:
    """Samples of the fields one provider sends together (one HK block)."""

    description: str
    prov_id: int
    name: str
    ticks: list = field(default_factory=list)
    values: dict = field(default_factory=dict)
    #: Per field: its kind (``float``, ``int``, ``bool``, ``string``) as
    #: written, and how many samples it has (padding for a field that joined
    #: late or left early is neither).
    kinds: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def add(self, ticks: np.ndarray, columns: dict):
        n_before = sum(len(t) for t in self.ticks)
        self.ticks.append(ticks)
        for name, column in columns.items():
            self.kinds[name] = kind_of(column)
            self.counts[name] = self.counts.get(name, 0) + len(column)
            chunks = self.values.get(name)
            if chunks is None:
                # A field that joins the block late has no samples before.
                chunks = self.values[name] = [_missing(n_before, column)] if n_before else []
            chunks.append(column)
        for name, chunks in self.values.items():
            if name not in columns:
                chunks.append(_missing(len(ticks), chunks[0] if chunks else np.zeros(0)))

    def arrays(self):
        """``(ticks, {field: values})`` with one array per field (joined once)."""
        if len(self.ticks) != 1 or any(len(chunks) != 1 for chunks in self.values.values()):
            self.ticks = [np.concatenate(self.ticks) if self.ticks else np.zeros(0, dtype=np.int64)]
            self.values = {name: [np.concatenate(chunks)] for name, chunks in self.values.items()}
        return self.ticks[0], {name: chunks[0] for name, chunks in self.values.items()}


def kind_of(values: np.ndarray) -> str:
    """What a column holds, in the index's words."""
    return {"f": "float", "i": "int", "u": "int", "b": "bool"}.get(np.asarray(values).dtype.kind, "string")


def _missing(n: int, like: np.ndarray) -> np.ndarray:
    if like.dtype.kind in "fc":
        return np.full(n, np.nan, dtype=like.dtype)
    if like.dtype.kind in "iub":
        return np.full(n, np.nan)
    return np.full(n, "", dtype=object)


@dataclass
class HKFile:
    path: str
    size: int
    mtime_ns: int
    blocks: dict = field(default_factory=dict)  # (description, block name) -> Block
    frames: int = 0
    error: str | None = None

    def field_ranges(self):
        """``{(prov_id, description, field): (first µs, last µs)}``."""
        out = {}
        for block in self.blocks.values():
            ticks, _ = block.arrays()
            if len(ticks) == 0:
                continue
            lo, hi = int(ticks.min()) // TICKS_PER_US, int(ticks.max()) // TICKS_PER_US
            for name in block.values:
                key = (block.prov_id, block.description, name)
                old = out.get(key)
                out[key] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        return out

    def field_facts(self):
        """``{(prov_id, description, field): (kind, samples)}``, the keys of
        :meth:`field_ranges`."""
        out = {}
        for block in self.blocks.values():
            if not any(len(t) for t in block.ticks):
                continue
            for name in block.values:
                key = (block.prov_id, block.description, name)
                kind, count = block.kinds.get(name, "float"), block.counts.get(name, 0)
                old = out.get(key)
                out[key] = (kind, count) if old is None else (old[0], old[1] + count)
        return out


def _plain(value):
    """A Python value from a G3 scalar (G3Int, G3String) or a plain one."""
    return getattr(value, "value", value)


def _column(vector) -> np.ndarray:
    # A view: numpy keeps the G3 vector alive through the array's base, and
    # the block's concatenation makes the one copy we need.
    array = np.asarray(vector)
    if array.dtype.kind in "US":
        return np.asarray(array, dtype=object)
    return array


@functools.cache
def _quiet_spt3g():
    """spt3g logs its own line for every bad file; we report those ourselves."""
    native.so3g()
    from spt3g import core

    core.set_log_level(core.G3LogLevel.LOG_FATAL)


def read_hk(path: str, providers=None) -> HKFile:
    """Every HK sample in ``path`` (only of ``providers``' descriptions, if given)."""
    so3g = native.so3g()
    from spt3g import core

    _quiet_spt3g()
    stat = os.stat(path)
    result = HKFile(path, stat.st_size, stat.st_mtime_ns)
    translator = so3g.hk.HKTranslator()
    active: dict[int, str] = {}
    housekeeping = core.G3FrameType.Housekeeping
    try:
        for raw in core.G3File(path):
            if raw.type != housekeeping:
                continue
            # Current-schema frames need no translation (the common case, and
            # the translator's pass-through is not free).
            current = raw.get("hkagg_version", 0) == CURRENT_SCHEMA
            for frame in (raw,) if current else translator(raw):
                if frame.type != housekeeping:
                    continue
                result.frames += 1
                kind = frame["hkagg_type"]
                if kind == so3g.HKFrameType.status:
                    active = {_plain(p["prov_id"]): str(_plain(p["description"])) for p in frame["providers"]}
                elif kind == so3g.HKFrameType.data:
                    _take_data(result, frame, active, providers)
    except Exception as exc:  # noqa: BLE001 - spt3g raises RuntimeError and others on bad input
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if result.frames == 0:
            raise UnreadableFile(f"{path}: {reason}") from None
        result.error = f"stopped after {result.frames} frames: {reason}"
    if result.frames == 0:
        raise UnreadableFile(f"{path}: no housekeeping frames")
    return result


def _take_data(result: HKFile, frame, active, providers):
    prov_id = int(_plain(frame["prov_id"]))
    description = active.get(prov_id)
    if description is None:
        description = f"prov_{prov_id}"  # data before any status frame: keep it, named by id
    if providers is not None and description not in providers:
        return
    for name, block in zip(frame["block_names"], frame["blocks"], strict=True):
        ticks = np.asarray(block.times, dtype=np.int64)
        if len(ticks) == 0:
            continue
        key = (description, str(name))
        target = result.blocks.get(key)
        if target is None:
            target = result.blocks[key] = Block(description, prov_id, str(name))
        target.add(ticks, {str(k): _column(block[k]) for k in block.keys()})
