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

from sisock.downsample import STATS, m4_merge, sample_stats, samples_merge

#: Bucket widths in seconds, finest first; each divides the next. A reader
#: uses a level only for answer buckets at least ``MIN_BUCKETS_PER_ANSWER``
#: times wider, so the minute level serves panels from about 2.7 days up at
#: 1000 points. Nothing finer: at 1 Hz a 10 s level is as big as the samples
#: (ten statistics a bucket), and fetching it from the database costs more
#: than decoding the files, which is what shorter panels do.
LEVELS = (60, 600, 3600)
#: How many summary buckets an answer bucket holds at least: answer buckets
#: are cut on the summary grid, so this bounds how far a bucket's width may
#: stray from the width asked for (here one eighth).
MIN_BUCKETS_PER_ANSWER = 8
#: Levels also kept per name across files, in chunks of ``CHUNK_BUCKETS``
#: buckets (:func:`rollup`): the levels of week- to year-long panels,
#: which would otherwise read one summary per file.
ROLLUP_LEVELS = (60, 600, 3600)
CHUNK_BUCKETS = 1024
#: Statistics of buckets holding fewer samples than this on average take
#: more room than the samples (ten numbers a bucket, against two a sample):
#: such data is kept as its samples instead (a summary "of samples"), once
#: per file for every level where it is that sparse.
MIN_SAMPLES_PER_BUCKET = 4
#: The level under which a file's summary of samples is stored.
SAMPLES_LEVEL = 0
#: Blob format; a reader meeting another one rereads the raw file.
FORMAT = 3
_HEADER = struct.Struct("<I")
_FIRST = STATS.index("first")
_N, _SUM, _T_FIRST = STATS.index("n"), STATS.index("sum"), STATS.index("t_first")


class Summary:
    """One level of one block: bucket numbers and per-field statistics, or
    (``samples``) the samples themselves, each its own one-sample bucket.

    ``fields[name]`` is an array ``(len(STATS), rows)`` (see
    :data:`sisock.downsample.STATS`). With buckets, ``bucket[i] * level``
    is where row ``i`` starts; with samples, ``bucket`` holds their times.
    Rows where a field has no sample have count 0 and NaN times and values.
    """

    __slots__ = ("level", "bucket", "fields", "kinds", "samples")

    def __init__(self, level: int, bucket: np.ndarray, fields: dict, kinds: dict | None = None,
                 samples: bool = False):
        self.level = level
        self.bucket = bucket
        self.fields = fields
        #: numpy's kind letter of each field as written (``f``, ``i``, ``u``,
        #: ``b``): statistics are floats, values are given back in their type.
        self.kinds = kinds or {}
        self.samples = samples

    def keys(self, level: int) -> np.ndarray:
        """The bucket of ``level`` each row belongs to."""
        return np.floor(self.bucket / level) if self.samples else self.bucket

    @property
    def nbytes(self) -> int:
        return (1 + len(STATS) * len(self.fields)) * 8 * len(self.bucket) + 100 * len(self.fields)

    def encode(self) -> bytes:
        names = list(self.fields)
        header = json.dumps({"format": FORMAT, "level": self.level, "fields": names,
                             "kinds": [self.kinds.get(name, "f") for name in names],
                             "samples": self.samples, "n": len(self.bucket)}).encode()
        rows = [np.asarray(self.bucket, dtype=np.float64)[None, :]]
        if self.samples:  # a sample's statistics are its value: one row a field
            rows.extend(np.asarray(self.fields[name][_FIRST], dtype=np.float64)[None, :] for name in names)
        else:
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
        kinds = dict(zip(names, header.get("kinds", ()), strict=False))
        if header.get("samples"):
            stats = sample_stats(matrix[0], matrix[1:])
            fields = {name: stats[:, i] for i, name in enumerate(names)}
            return cls(header["level"], matrix[0], fields, kinds, samples=True)
        width = len(STATS)
        fields = {name: matrix[1 + i * width:1 + (i + 1) * width] for i, name in enumerate(names)}
        return cls(header["level"], matrix[0], fields, kinds)


def numeric(values: dict) -> dict:
    """The fields summaries are kept for: numbers and booleans, not strings."""
    return {name: v for name, v in values.items() if np.asarray(v).dtype.kind in "fiub"}


def summarize(t: np.ndarray, values: dict, levels=LEVELS) -> list[Summary]:
    """Summaries of one block (``t`` sorted seconds; strings are skipped):
    one per level where buckets hold enough samples, plus one of the
    samples (level :data:`SAMPLES_LEVEL`) if some level is too sparse.

    The finest level is merged from the samples, each coarser one from the
    level below it, which is several times cheaper than from the samples.
    """
    values = numeric(values)
    if len(t) == 0 or not values:
        return []
    names = list(values)
    kinds = {n: np.asarray(values[n]).dtype.kind for n in names}
    matrix = np.vstack([np.asarray(values[n], dtype=np.float64) for n in names])
    t = np.asarray(t, dtype=np.float64)
    keys, stats = samples_merge(np.floor(t / levels[0]), t, matrix)
    out, previous, sparse = [], None, False
    for level in levels:
        if previous is not None:
            keys, stats = m4_merge(np.floor(keys / (level // previous)), stats)
        if len(t) >= MIN_SAMPLES_PER_BUCKET * len(keys):
            out.append(Summary(level, keys, {name: stats[:, i] for i, name in enumerate(names)}, kinds))
        else:
            sparse = True
        previous = level
    if sparse:
        rows = sample_stats(t, matrix)
        out.append(Summary(SAMPLES_LEVEL, t, {name: rows[:, i] for i, name in enumerate(names)}, kinds,
                           samples=True))
    return out


def rollup(parts, level: int, chunk: int) -> dict[str, Summary]:
    """One chunk of a provider's rollups, from the summaries at ``level``
    (or of samples) of its files (``parts``, any order): ``{field: Summary}``
    of the buckets inside the chunk, merged across files (a bucket two files
    share is merged, as if one file held both halves). Where that would take
    more room than the samples and the files kept samples, the rollup keeps
    the samples.

    Every field of the provider is merged in one pass (a chunk of a sparse
    provider gathers a few hundred files of fifty fields each, and one
    merge per field was most of a first scan). Each file's rows come in the
    order of their first sample; a field whose own first samples would
    order two rows of one bucket otherwise (files overlapping in time) is
    merged again by itself (:func:`_rollup_one`), so the result is always
    that of merging each field's rows in its own time order."""
    lo, hi = chunk * CHUNK_BUCKETS, (chunk + 1) * CHUNK_BUCKETS
    pieces, names, kinds = [], {}, {}
    for part in parts:
        keys = part.keys(level)
        inside = _within(keys, lo, hi)
        if inside is None:
            continue
        pieces.append((part, keys[inside], inside))
        for name in part.fields:
            if name not in names:
                names[name] = len(names)
                kinds[name] = part.kinds.get(name, "f")
    if not pieces:
        return {}
    total = sum(len(k) for _, k, _ in pieces)
    stats = np.full((len(STATS), len(names), total), np.nan)
    stats[_N] = 0.0
    stats[_SUM] = -0.0  # adds nothing, not even a sign: a lone -0.0 stays -0.0
    member = np.zeros((len(names), total), dtype=bool)  # the row's file holds the field
    times = np.full(total, np.nan)
    sampled = np.zeros(total, dtype=bool)  # the row is a sample (its file kept samples)
    at = 0
    for part, keys, inside in pieces:
        rows = slice(at, at + len(keys))
        index = [names[name] for name in part.fields]
        stats[:, index, rows] = np.stack([part.fields[name][:, inside] for name in part.fields], axis=1)
        member[index, rows] = True
        if part.samples:
            times[rows], sampled[rows] = part.bucket[inside], True
        at += len(keys)
    keys = np.concatenate([k for _, k, _ in pieces])
    order = np.lexsort((np.fmin.reduce(stats[_T_FIRST], axis=0), keys))
    keys, stats, member = keys[order], stats[:, :, order], member[:, order]
    times, sampled = times[order], sampled[order]
    merged_keys, merged = m4_merge(keys, stats)
    present = stats[_N] > 0
    # Within a bucket, a field's rows must be in the time order of its own first samples.
    same_key = keys[1:] == keys[:-1]
    t_first = np.where(present, stats[_T_FIRST], np.nan)
    a, b = t_first[:, :-1][:, same_key], t_first[:, 1:][:, same_key]
    unordered = np.any(~(a < b) & ~np.isnan(a) & ~np.isnan(b), axis=1)
    has = merged[_N] > 0
    as_samples = ~np.any(member & ~sampled, axis=1) & (member.sum(axis=1) < MIN_SAMPLES_PER_BUCKET * has.sum(axis=1))
    out = {}
    for name, i in names.items():
        if unordered[i]:
            out[name] = _rollup_one(name, kinds[name], pieces, level)
        elif as_samples[i]:
            keep = present[i]
            out[name] = Summary(level, times[keep], {name: stats[:, i, keep]}, {name: kinds[name]}, samples=True)
        else:
            out[name] = Summary(level, merged_keys[has[i]], {name: merged[:, i, has[i]]}, {name: kinds[name]})
    return out


def _rollup_one(name: str, kind: str, pieces, level: int) -> Summary:
    """One field's rollup from its own rows, sorted by bucket and then by
    its first sample (files overlapping in time)."""
    mine = [(keys, part.fields[name][:, inside], part.bucket[inside] if part.samples else None)
            for part, keys, inside in pieces if name in part.fields]
    keys = np.concatenate([p[0] for p in mine])
    stats = np.concatenate([p[1] for p in mine], axis=1)
    order = np.lexsort((stats[_T_FIRST], keys))
    merged_keys, merged = m4_merge(keys[order], stats[:, order][:, None, :])
    has = merged[_N, 0] > 0
    if all(p[2] is not None for p in mine) and stats.shape[1] < MIN_SAMPLES_PER_BUCKET * has.sum():
        t = np.concatenate([p[2] for p in mine])[order]
        present = stats[_N, order] > 0
        return Summary(level, t[present], {name: stats[:, order][:, present]}, {name: kind}, samples=True)
    return Summary(level, merged_keys[has], {name: merged[:, 0, has]}, {name: kind})


def _within(keys: np.ndarray, lo: float, hi: float):
    """Where ``keys`` fall in ``[lo, hi)``, None if nowhere: a slice when
    they are sorted (as a summary's are), which takes views instead of
    copies of each field's rows; a mask otherwise. Either selects the same
    rows in the same order."""
    if len(keys) < 2 or bool(np.all(keys[1:] >= keys[:-1])):
        a, b = np.searchsorted(keys, [lo, hi])
        return slice(int(a), int(b)) if b > a else None
    inside = (keys >= lo) & (keys < hi)
    return inside if inside.any() else None


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
