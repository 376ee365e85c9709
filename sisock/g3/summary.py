"""Multi-resolution summaries of HK blocks, computed once at scan time.

The scanner decodes every sample of a file anyway. Keeping, per bucket and
field, the first, last, minimum and maximum sample with their exact times
(M4) plus the count and sum of the samples, at a few fixed resolutions, lets
the g3-reader answer a week-long panel from a few thousand buckets instead of
millions of samples: every point it returns is still a real sample at its
real time, and every spike is some bucket's maximum. The counts and sums
give exact means, counts and sums of any union of buckets.

Buckets are aligned on multiples of their width since the epoch, and each
level's width divides the next, so buckets of one level nest exactly in the
next and a coarser level is merged from the finer one.

Summaries live in the index database, one blob per (file, provider, block,
level), written in the same transaction as the file's index rows: they can
never disagree with the index, a killed scanner leaves none half-written,
and a reader on another host needs nothing but the database.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from sisock.downsample import STATS, m4_merge, sample_stats

#: Bucket widths in seconds, finest first; each divides the next. A reader
#: uses a level only for answer buckets at least ``MIN_BUCKETS_PER_ANSWER``
#: times wider, so a 10 s level serves panels from about 12 h up.
LEVELS = (10, 60, 600, 3600)
#: How many summary buckets an answer bucket holds at least: answer buckets
#: are cut on the summary grid, so this bounds how far a bucket's width may
#: stray from the width asked for (here one eighth).
MIN_BUCKETS_PER_ANSWER = 8
#: Blob format; a reader meeting another one rereads the raw file.
FORMAT = 3
_HEADER = struct.Struct("<I")


class Summary:
    """One level of one block: bucket numbers and per-field statistics.

    ``fields[name]`` is an array ``(len(STATS), buckets)`` (see
    :data:`sisock.downsample.STATS`); ``bucket[i] * level`` is where bucket
    ``i`` starts. Buckets where a field has no sample have count 0 and NaN
    times and values for that field.
    """

    __slots__ = ("level", "bucket", "fields", "kinds")

    def __init__(self, level: int, bucket: np.ndarray, fields: dict, kinds: dict | None = None):
        self.level = level
        self.bucket = bucket
        self.fields = fields
        #: numpy's kind letter of each field as written (``f``, ``i``, ``u``,
        #: ``b``): statistics are floats, values are given back in their type.
        self.kinds = kinds or {}

    @property
    def nbytes(self) -> int:
        return (1 + len(STATS) * len(self.fields)) * 8 * len(self.bucket) + 100 * len(self.fields)

    def encode(self) -> bytes:
        names = list(self.fields)
        header = json.dumps({"format": FORMAT, "level": self.level, "fields": names,
                             "kinds": [self.kinds.get(name, "f") for name in names],
                             "n": len(self.bucket)}).encode()
        rows = [np.asarray(self.bucket, dtype=np.float64)[None, :]]
        rows.extend(np.asarray(self.fields[name], dtype=np.float64) for name in names)
        return _HEADER.pack(len(header)) + header + np.vstack(rows).tobytes()

    @classmethod
    def decode(cls, blob: bytes) -> Summary | None:
        """The summary in ``blob``, or None if it is of another format."""
        (size,) = _HEADER.unpack_from(blob)
        header = json.loads(blob[_HEADER.size:_HEADER.size + size])
        if header.get("format") != FORMAT:
            return None
        n, names = header["n"], header["fields"]
        matrix = np.frombuffer(blob, dtype=np.float64, offset=_HEADER.size + size).reshape(-1, n)
        width = len(STATS)
        fields = {name: matrix[1 + i * width:1 + (i + 1) * width] for i, name in enumerate(names)}
        return cls(header["level"], matrix[0], fields, dict(zip(names, header.get("kinds", ()), strict=False)))


def numeric(values: dict) -> dict:
    """The fields summaries are kept for: numbers and booleans, not strings."""
    return {name: v for name, v in values.items() if np.asarray(v).dtype.kind in "fiub"}


def summarize(t: np.ndarray, values: dict, levels=LEVELS) -> list[Summary]:
    """Summaries of one block (``t`` sorted seconds; strings are skipped).

    The finest level is merged from the samples, each coarser one from the
    level below it, which is several times cheaper than from the samples.
    """
    values = numeric(values)
    if len(t) == 0 or not values:
        return []
    names = list(values)
    kinds = {n: np.asarray(values[n]).dtype.kind for n in names}
    matrix = np.vstack([np.asarray(values[n], dtype=np.float64) for n in names])
    keys = np.floor(np.asarray(t, dtype=np.float64) / levels[0])
    stats = sample_stats(t, matrix)
    out, previous = [], None
    for level in levels:
        if previous is not None:
            keys = np.floor(keys / (level // previous))
        keys, stats = m4_merge(keys, stats)
        out.append(Summary(level, keys, {name: stats[:, i] for i, name in enumerate(names)}, kinds))
        previous = level
    return out


def restore_type(values: np.ndarray, kind: str | None) -> np.ndarray:
    """Values taken from statistics (floats) back in the field's own type."""
    if kind in ("i", "u"):
        return values.astype(np.int64)
    if kind == "b":
        return values.astype(bool)
    return values


def choose_level(width: float | None, levels=LEVELS) -> int | None:
    """The coarsest level at least :data:`MIN_BUCKETS_PER_ANSWER` times
    finer than answer buckets of ``width`` s; None means raw samples."""
    if not width:
        return None
    finer = [level for level in levels if level * MIN_BUCKETS_PER_ANSWER <= width]
    return max(finer) if finer else None
