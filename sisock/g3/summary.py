"""Multi-resolution summaries of HK blocks, computed once at scan time.

The scanner decodes every sample of a file anyway; keeping per bucket the
first and last sample time and, per field, min/max/first/last/mean (plus
whether the min came before the max) at a few fixed resolutions lets the
g3-reader answer a week-long panel from a few thousand buckets instead of
millions of samples, with every spike still there (it is some bucket's max).

Buckets are aligned on multiples of their width since the epoch, so a
coarser answer grid that is a multiple of the width nests exactly: the min
and max of an answer bucket are then the true min and max of its samples.

Summaries live in the index database, one blob per (file, provider, block,
level), written in the same transaction as the file's index rows: they can
never disagree with the index, a killed scanner leaves none half-written,
and a reader on another host needs nothing but the database.
"""

from __future__ import annotations

import json
import struct

import numpy as np

#: Bucket widths in seconds, finest first. Nothing finer than a minute: for
#: 1 Hz data a 10 s bucket with six statistics per field is barely smaller
#: than the samples themselves, and panels that fine read raw data quickly.
LEVELS = (60, 600, 3600)
#: Statistics kept per field and bucket, in blob order.
STATS = ("min", "max", "first", "last", "mean", "min_first")
_HEADER = struct.Struct("<I")


class Summary:
    """One level of one block: bucket times and per-field statistics."""

    __slots__ = ("level", "t_first", "t_last", "count", "fields", "n_valid", "matrices")

    def __init__(self, level: int, t_first, t_last, count, fields: dict):
        self.level = level
        self.t_first = t_first
        self.t_last = t_last
        self.count = count
        self.fields = fields  # name -> {stat: array}
        self.n_valid = None  # per field and bucket, while computing coarser levels
        self.matrices = None  # stat -> (field, bucket) array, likewise

    @property
    def nbytes(self) -> int:
        return (3 + len(STATS) * len(self.fields)) * 8 * len(self.t_first)

    def encode(self) -> bytes:
        names = list(self.fields)
        rows = [self.t_first, self.t_last, self.count.astype(np.float64)]
        for name in names:
            rows.extend(np.asarray(self.fields[name][s], dtype=np.float64) for s in STATS)
        header = json.dumps({"level": self.level, "fields": names, "n": len(self.t_first)}).encode()
        return _HEADER.pack(len(header)) + header + np.vstack(rows).tobytes()

    @classmethod
    def decode(cls, blob: bytes) -> Summary:
        (size,) = _HEADER.unpack_from(blob)
        header = json.loads(blob[_HEADER.size:_HEADER.size + size])
        n, names = header["n"], header["fields"]
        matrix = np.frombuffer(blob, dtype=np.float64, offset=_HEADER.size + size).reshape(-1, n)
        fields = {}
        for i, name in enumerate(names):
            base = 3 + i * len(STATS)
            fields[name] = {s: matrix[base + j] for j, s in enumerate(STATS)}
        return cls(header["level"], matrix[0], matrix[1], matrix[2].astype(np.int64), fields)


def _numeric(values: dict) -> dict:
    return {name: v for name, v in values.items() if v.dtype.kind in "fiub"}


def summarize(t: np.ndarray, values: dict, levels=LEVELS) -> list[Summary]:
    """Summaries of one block (``t`` sorted seconds, numeric fields only).

    The finest level is computed from the samples, each coarser one from the
    level below it (levels divide each other), which is several times cheaper.
    """
    values = _numeric(values)
    if len(t) == 0 or not values:
        return []
    names = list(values)
    matrix = np.vstack([np.asarray(values[n], dtype=np.float64) for n in names])
    ones = np.ones_like(matrix, dtype=bool)
    finest = _reduce(names, levels[0], t, t, np.ones(len(t), dtype=np.int64), matrix, matrix, matrix, matrix,
                     np.where(np.isnan(matrix), 0.0, matrix), (~np.isnan(matrix)).astype(np.int64), ones)
    out = [finest]
    for level in levels[1:]:
        prev = out[-1]
        lo, hi, first, last, mean, lo_first = (prev.matrices[s] for s in STATS)
        n_valid = prev.n_valid
        total = np.where(n_valid > 0, mean * n_valid, 0.0)
        out.append(_reduce(names, level, prev.t_first, prev.t_last, prev.count, lo, hi, first, last, total, n_valid,
                           lo_first.astype(bool)))
    return out


def _reduce(names, level, t_first, t_last, count, lo, hi, first, last, total, n_valid, lo_first) -> Summary:
    """Merge buckets (or samples) into buckets of ``level`` seconds."""
    bucket = np.floor(t_first / level)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(t_first)]
    size = ends - starts
    b_lo = np.fmin.reduceat(lo, starts, axis=1)
    b_hi = np.fmax.reduceat(hi, starts, axis=1)
    b_total = np.add.reduceat(total, starts, axis=1)
    b_valid = np.add.reduceat(n_valid, starts, axis=1)
    i_lo = _first_match(lo == np.repeat(b_lo, size, axis=1), starts)
    i_hi = _first_match(hi == np.repeat(b_hi, size, axis=1), starts)
    flag = np.take_along_axis(lo_first, np.minimum(i_lo, lo.shape[1] - 1), axis=1)
    b_lo_first = np.where(i_lo == i_hi, flag, i_lo < i_hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = b_total / b_valid
    stats = {"min": b_lo, "max": b_hi, "first": first[:, starts], "last": last[:, ends - 1], "mean": mean,
             "min_first": b_lo_first.astype(np.float64)}
    summary = Summary(level, t_first[starts], np.asarray(t_last)[ends - 1], np.add.reduceat(count, starts),
                      {name: {s: stats[s][k] for s in STATS} for k, name in enumerate(names)})
    summary.n_valid = b_valid
    summary.matrices = stats
    return summary


def _first_match(mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per row and bucket, the first column where ``mask`` holds."""
    n = mask.shape[1]
    positions = np.where(mask, np.arange(n), n)
    return np.minimum.reduceat(positions, starts, axis=1)


def choose_level(min_stride, levels=LEVELS):
    """The coarsest level finer than ``min_stride``; None means raw samples."""
    if not min_stride:
        return None
    finer = [level for level in levels if level < min_stride]
    return max(finer) if finer else None
