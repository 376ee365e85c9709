"""Exact statistics of ``GROUP BY time(interval, offset)`` buckets.

InfluxQL's ``mean``, ``max``, ``min``, ``first``, ``last``, ``count`` and
``sum`` of a bucket all follow from ten numbers per bucket: the
:data:`sisock.downsample.STATS` the scan-time summaries already keep (count,
sum, and the first, last, minimum and maximum sample with their times). This
module computes them from raw samples with the same merge
(:func:`sisock.downsample.samples_merge`) the summaries are built with, so an
answer taken from summaries and one taken from samples are the same numbers
(sums to their last bits: they may be added in another order).

Buckets are cut on integer nanoseconds, ``ns = int(t * 1e9)`` (truncation),
which is how the OCS InfluxDB publisher turns its float times into the
points InfluxDB stores: a sample lands in the bucket a real InfluxDB fed by
that publisher would put it in, even a hair before a bucket's edge. Bucket
``k`` holds ``k * interval + offset <= ns < (k + 1) * interval + offset``
(interval and offset rounded to whole nanoseconds, the offset taken modulo
the interval, as InfluxDB does).

NaN is not a sample. InfluxDB cannot store NaN, so a series fed to it never
holds one, while a g3 file (or a server's own arrays) may use NaN for "no
reading": such samples are skipped, as if they had never been written.
``None`` among values is skipped for the same reason. :func:`bucket_stats`
counts every other sample, two at the same time included;
:func:`series_stats`, for what data nodes send, counts each time once.
"""

from __future__ import annotations

import numpy as np

from sisock import contract
from sisock.downsample import FIRST, LAST, MAX, MIN, STATS, group_starts, samples_merge, sorted_unique
from sisock.g3.summary import restore_type

#: Keys of one field's answer: bucket starts (int64 ns), then the statistics.
KEYS = ("bucket", *STATS)
#: Keys of a field whose values are not numbers: no sum, minimum or maximum.
TEXT_KEYS = ("bucket", "n", "t_first", "first", "t_last", "last")
_VALUE_ROWS = (FIRST, LAST, MIN, MAX)
#: The longest interval: bucket starts stay within int64 nanoseconds.
MAX_INTERVAL_NS = 2**62
_NUMERIC = "fiub"


def grid(interval: float, offset: float = 0.0) -> tuple[int, int]:
    """``(interval, offset)`` in whole nanoseconds, the offset within
    ``[0, interval)``; ValueError for an interval that is not a positive
    number of nanoseconds."""
    try:
        interval_ns = int(round(float(interval) * 1e9))
        offset_ns = int(round(float(offset) * 1e9))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"interval and offset must be numbers of seconds, got {interval!r}, {offset!r}") from None
    if not 1 <= interval_ns <= MAX_INTERVAL_NS:
        raise ValueError(f"interval must be between 1 ns and {MAX_INTERVAL_NS / 1e9 / 86400 / 365.25:.0f} years, "
                         f"got {interval!r}")
    return interval_ns, offset_ns % interval_ns


def to_ns(t) -> np.ndarray:
    """Float seconds to integer nanoseconds by truncation, as ``int(t * 1e9)``."""
    return (np.asarray(t, dtype=np.float64) * 1e9).astype(np.int64)


def bucket_starts(t, interval_ns: int, offset_ns: int) -> np.ndarray:
    """The start (ns) of the bucket each time (float seconds) falls in."""
    ns = to_ns(t)
    return (ns - offset_ns) // interval_ns * interval_ns + offset_ns


def as_values(values) -> np.ndarray:
    """Values as an array of numbers when they are numbers (``None`` to NaN),
    else as objects (strings)."""
    array = np.asarray(values)
    if array.dtype.kind == "O":
        try:
            return np.asarray(array, dtype=np.float64)
        except (TypeError, ValueError):
            return array
    if array.dtype.kind not in _NUMERIC:
        return array.astype(object)
    return array


def present(values: np.ndarray) -> np.ndarray:
    """Which values are samples (not NaN, not None)."""
    if values.dtype.kind == "f":
        return ~np.isnan(values)
    if values.dtype.kind == "O":
        return np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    return np.ones(len(values), dtype=bool)


def bucket_stats(t, values, start: float, end: float, interval: float, offset: float = 0.0) -> dict:
    """Statistics of the samples with ``start <= t <= end`` per bucket.

    Returns ``{key: array}`` with :data:`KEYS` (numbers and booleans) or
    :data:`TEXT_KEYS` (anything else): one entry per bucket holding a
    sample, ascending. ``bucket`` is int64 ns, ``n`` int64, times float
    seconds; ``first``, ``last``, ``min`` and ``max`` keep the values' own
    type (integers above 2**53 lose precision, as the statistics are
    floats), the minimum and maximum being the earliest sample holding the
    extreme. ``t`` need not be sorted (equal times keep their order).
    """
    interval_ns, offset_ns = grid(interval, offset)
    t = np.asarray(t, dtype=np.float64)
    values = as_values(values)
    if len(t) != len(values):
        raise ValueError(f"{len(values)} values for {len(t)} times")
    keep = (t >= start) & (t <= end) & present(values)
    t, values = t[keep], values[keep]
    if len(t) > 1 and np.any(t[1:] < t[:-1]):
        order = np.argsort(t, kind="stable")
        t, values = t[order], values[order]
    keys = bucket_starts(t, interval_ns, offset_ns)
    if values.dtype.kind not in _NUMERIC:
        return _text_stats(keys, t, values)
    merged_keys, stats = samples_merge(keys, t, [values.astype(np.float64)])
    return from_stats(merged_keys, stats[:, 0], values.dtype.kind)


def _text_stats(keys: np.ndarray, t: np.ndarray, values: np.ndarray) -> dict:
    starts = group_starts(keys)
    ends = np.append(starts[1:], len(keys)) - 1 if len(starts) else starts
    return {"bucket": keys[starts].astype(np.int64), "n": (ends - starts + 1).astype(np.int64),
            "t_first": t[starts], "first": values[starts], "t_last": t[ends], "last": values[ends]}


def from_stats(keys, stats: np.ndarray, kind: str = "f") -> dict:
    """One field's answer from merged statistics (``(len(STATS), buckets)``,
    keyed by bucket start in ns); buckets without a sample are left out and
    values are given back in the type of numpy's ``kind`` letter."""
    keys = np.asarray(keys)
    has = stats[STATS.index("n")] > 0
    if not has.all():
        keys, stats = keys[has], stats[:, has]
    out = {"bucket": keys.astype(np.int64)}
    for row, name in enumerate(STATS):
        column = stats[row]
        if row == STATS.index("n"):
            column = column.astype(np.int64)
        elif row in _VALUE_ROWS:
            column = restore_type(column, kind)
        out[name] = column
    return out


def empty(kind: str = "f") -> dict:
    """The answer of a field without a sample in the range."""
    if kind not in _NUMERIC:
        return _text_stats(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, dtype=object))
    return from_stats(np.zeros(0, np.int64), np.zeros((len(STATS), 0)), kind)


def series_stats(series, start: float, end: float, interval: float, offset: float = 0.0) -> dict:
    """``{name: bucket_stats(...)}`` of ``{name: (t, values)}`` as a data
    node sends them, each time counted once (its first sample: a series in
    InfluxDB holds one point per time, and archives may overlap), leaving
    out the names without a sample in the range (as an answer does)."""
    out = {}
    for name, (t, v) in series.items():
        t, v = sorted_unique(np.asarray(t, dtype=np.float64), as_values(v))
        out[name] = bucket_stats(t, v, start, end, interval, offset)
    return {name: answer for name, answer in out.items() if len(answer["bucket"])}


# -- the WAMP reply --------------------------------------------------------------


def to_wire(fields) -> dict:
    """``{"fields": {name: {key: column}}}``: what ``get_aggregates`` sends,
    numeric columns packed as dtype and bytes (:func:`sisock.contract.pack`:
    a day of 1-minute buckets of 20 fields is 300,000 numbers, and lists
    cost the sender, the router and the receiver each a Python object per
    number), strings as lists."""
    return {"fields": {name: {key: contract.pack(np.asarray(column)) for key, column in answer.items()}
                       for name, answer in fields.items()}}


def reply_size(reply) -> int:
    """Numbers in a ``get_aggregates`` reply."""
    if not isinstance(reply, dict):
        return 0
    return sum(len(contract.unpack(column)) for answer in (reply.get("fields") or {}).values()
               for column in answer.values())


def from_wire(reply, names=None) -> dict:
    """A ``get_aggregates`` reply as :func:`bucket_stats` gives it (numpy
    arrays, ``bucket`` and ``n`` int64); only ``names`` if given. A reply
    that is not of that shape raises ValueError."""
    fields = reply.get("fields") if isinstance(reply, dict) else None
    if not isinstance(fields, dict):
        raise ValueError("a get_aggregates reply is {'fields': {name: {...}}}")
    out = {}
    for name, answer in fields.items():
        if names is not None and name not in names:
            continue
        if not isinstance(answer, dict) or not set(TEXT_KEYS) <= set(answer):
            raise ValueError(f"field {name!r} lacks some of {', '.join(TEXT_KEYS)}")
        # Packed columns are views of the received bytes (read-only): copied.
        answer = {key: np.array(column) if isinstance(column, np.ndarray) else column
                  for key, column in ((key, contract.unpack(answer[key])) for key in answer)}
        columns = {key: as_values(answer[key]) for key in answer if key in KEYS}
        lengths = {len(c) for c in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"field {name!r} has columns of different lengths")
        columns["bucket"] = np.asarray(answer["bucket"], dtype=np.int64)
        columns["n"] = np.asarray(answer["n"], dtype=np.int64)
        for key in ("t_first", "t_last", "t_min", "t_max", "sum"):
            if key in columns:
                columns[key] = np.asarray(columns[key], dtype=np.float64)
        out[name] = columns
    return out
