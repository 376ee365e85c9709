"""The g3-reader's ``get_aggregates``: bucket statistics from the summaries.

The scanner keeps, per summary bucket of 60, 600 and 3600 s, the count,
sum, first, last, minimum and maximum of each field, with their times, and
rolls them up across files. When the answer's interval is a multiple of a
level and its offset lies on that level's grid, each summary bucket lies
inside one answer bucket, and the answer bucket's statistics are the merge
of its summary buckets' (:func:`sisock.downsample.m4_merge`: counts and sums
add up, first and last are the earliest and latest, the extremes are the
earliest sample holding them). So a year at one-hour buckets costs a few
thousand rollup rows instead of millions of samples, and is exact.

The pieces are gathered as for M4 panels (:meth:`Archive._rolled`): rollups
for the whole level buckets before each name's newest file; each file's
summary elsewhere; raw samples for the partial buckets at the range's
edges, for the newest file (it may have grown since it was summarized),
for files whose summary is missing or of another format, and for string
fields. The archive is asked for answer buckets one level wide, so every
piece keeps its own summary bucket, and each is then given the answer
bucket its first sample falls in, by the contract's rule on truncated
nanoseconds. A piece whose first and last samples fall in two answer
buckets (possible only within a float's rounding of an edge) cannot be
split; the answer is then computed from raw samples instead.

Other intervals are computed from the raw samples (:meth:`Archive.series`,
which drops a sample held by two files), bounded by :data:`RAW_SAMPLES`.
Either way the numbers are those :func:`sisock.aggregate.bucket_stats`
gives on the archive's samples, NaN skipped.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from sisock import aggregate, contract
from sisock.downsample import T_FIRST, T_LAST, N, m4_merge, sorted_unique
from sisock.g3.summary import LEVELS, ROLLUP_LEVELS

#: Most raw samples (all fields together) one answer from samples reads:
#: about 160 MB of times and values.
RAW_SAMPLES = 10_000_000
_SECOND_NS = 1_000_000_000


def summary_level(interval_ns: int, offset_ns: int) -> int | None:
    """The coarsest level whose buckets nest in answer buckets of this
    interval and offset (both ns), or None."""
    for level in sorted(LEVELS, reverse=True):
        if interval_ns % (level * _SECOND_NS) == 0 and offset_ns % (level * _SECOND_NS) == 0:
            return level
    return None


def answer(archive, names, start: float, end: float, interval: float, offset: float = 0.0):
    """``{name: statistics}`` (:func:`sisock.aggregate.bucket_stats`'s
    shape) of the names with samples in ``[start, end]``, or False when
    the answer would be more than one reply carries."""
    interval_ns, offset_ns = aggregate.grid(interval, offset)
    names = list(dict.fromkeys(names))
    with archive.one_request():
        if _too_large(archive, names, start, end, interval):
            return False
        level = summary_level(interval_ns, offset_ns)
        if level is not None:
            found = from_summaries(archive, names, start, end, level, interval, offset)
            if found is not None:
                return found
        if archive.estimate(names, start, end, 0.0) > RAW_SAMPLES:
            return False
        return aggregate.series_stats(archive.series(names, start, end), start, end, interval, offset)


def _too_large(archive, names, start: float, end: float, interval: float) -> bool:
    """Whether the answer would surely exceed one reply: judged on the
    buckets each name's history can fill, and when those are too many,
    on the samples the range holds (a bucket holds one at least)."""
    limit = contract.MAX_REPLY_VALUES / len(aggregate.KEYS)
    newest, first = archive.newest(names), archive.first_starts(names)
    buckets = 0.0
    for name, loc in newest.items():
        span = min(end, loc.end / 1e6) - max(start, first.get(name, loc.start) / 1e6)
        buckets += span / interval + 2 if span >= 0 else 0.0
    return buckets > limit and archive.estimate(names, start, end, 0.0) > limit


def from_summaries(archive, names, start: float, end: float, level: int, interval: float, offset: float = 0.0):
    """The answer from summaries of ``level`` s (whose buckets must nest in
    the answer's), or None when a piece straddles two answer buckets."""
    interval_ns, offset_ns = aggregate.grid(interval, offset)
    parts, texts, kinds = defaultdict(list), defaultdict(list), {}
    gather = archive._rolled if level in ROLLUP_LEVELS else archive._pieces
    gather(names, start, end, float(level), level, parts, texts, kinds)
    out = {}
    for name, pieces in parts.items():
        stats = np.concatenate([p[1] for p in pieces], axis=1)
        stats = stats[:, stats[N] > 0]
        stats = stats[:, np.argsort(stats[T_FIRST], kind="stable")]
        keys = aggregate.bucket_starts(stats[T_FIRST], interval_ns, offset_ns)
        if not np.array_equal(keys, aggregate.bucket_starts(stats[T_LAST], interval_ns, offset_ns)):
            return None
        merged_keys, merged = m4_merge(keys, stats[:, None, :])
        out[name] = aggregate.from_stats(merged_keys, merged[:, 0], kinds.get(name, "f"))
    for name, pieces in texts.items():
        t, v = sorted_unique(np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces]))
        out[name] = aggregate.bucket_stats(t, v, start, end, interval, offset)
    return {name: found for name, found in out.items() if len(found["bucket"])}
