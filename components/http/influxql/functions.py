"""InfluxQL's aggregate and selector functions over per-bucket statistics.

Statistics are the dicts :func:`sisock.aggregate.bucket_stats` and the
``aggregates`` DataSource method give, here with every time in integer
nanoseconds. Several series feeding one output series (no ``GROUP BY`` on
the tag telling them apart) are combined bucket by bucket with InfluxDB's
own tie rules: ``first`` the earliest point (the larger value on a tie),
``last`` the latest (the larger value on a tie), ``min``/``max`` the
extreme with the earliest time.
"""

from __future__ import annotations

import numpy as np

from sisock.aggregate import to_ns
from sisock.downsample import group_starts

#: Functions answered from the statistics.
FROM_STATS = ("mean", "max", "min", "first", "last", "count", "sum", "spread")
#: Functions needing every sample.
FROM_SAMPLES = ("median", "stddev", "percentile")
#: Transformations of an aggregate's per-bucket results (GROUP BY time).
TRANSFORMS = ("derivative", "non_negative_derivative", "difference", "non_negative_difference",
              "cumulative_sum", "moving_average")
SUPPORTED = FROM_STATS + FROM_SAMPLES + TRANSFORMS
#: Functions whose result is a sample: its own time without GROUP BY time.
SELECTORS = ("max", "min", "first", "last", "percentile")
#: Functions that work on strings.
FOR_STRINGS = ("first", "last", "count")
#: InfluxQL functions this server does not compute (a clear refusal, not "undefined").
KNOWN = ("mode", "distinct", "integral", "top", "bottom", "sample", "elapsed", "holt_winters",
         "holt_winters_with_fit", "exponential_moving_average", "double_exponential_moving_average",
         "triple_exponential_moving_average", "relative_strength_index", "triple_exponential_derivative",
         "kaufmans_efficiency_ratio", "kaufmans_adaptive_moving_average", "chande_momentum_oscillator")
_TIMES = ("t_first", "t_last", "t_min", "t_max")


def in_ns(stats: dict) -> dict:
    """A DataSource answer with its float-second sample times as ns."""
    out = dict(stats)
    for key in _TIMES:
        if key in out:
            out[key] = to_ns(out[key])
    out["bucket"] = np.asarray(out["bucket"], dtype=np.int64)
    return out


def select_buckets(stats: dict, mask: np.ndarray) -> dict:
    """The statistics of the buckets ``mask`` keeps."""
    return {k: np.asarray(v)[mask] for k, v in stats.items()}


def _pick(buckets, primary, secondary, starts_of) -> np.ndarray:
    order = np.lexsort((secondary, primary, buckets))
    return order[starts_of(buckets[order])]


def combine(parts: list[dict]) -> dict:
    """One statistics dict from several series' (ns times); rows with the
    same bucket, within a part too, become one."""
    parts = [p for p in parts if len(p["bucket"])]
    if not parts:
        return {}
    if len(parts) == 1 and np.all(np.diff(parts[0]["bucket"]) > 0):
        return parts[0]
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    cat = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in keys}
    buckets = cat["bucket"]
    order = np.argsort(buckets, kind="stable")
    starts = group_starts(buckets[order])
    out = {"bucket": buckets[order][starts]}
    out["n"] = np.add.reduceat(cat["n"][order], starts)
    if "sum" in cat:
        out["sum"] = np.add.reduceat(np.asarray(cat["sum"], dtype=np.float64)[order], starts)

    def first_index(b):
        return group_starts(b)

    numeric = cat["first"].dtype.kind in "fiub"

    def by_value(values, negate):
        if not numeric:
            return np.zeros(len(values))
        v = np.asarray(values, dtype=np.float64)
        return -v if negate else v

    rules = {  # stat: (primary key, secondary key), smallest first
        "first": (cat["t_first"], by_value(cat["first"], True)),
        "last": (-cat["t_last"], by_value(cat["last"], True)),
    }
    if "min" in cat:
        rules["min"] = (by_value(cat["min"], False), cat["t_min"])
        rules["max"] = (by_value(cat["max"], True), cat["t_max"])
    for name, (primary, secondary) in rules.items():
        index = _pick(buckets, primary, secondary, first_index)
        out[name] = cat[name][index]
        out[f"t_{name}"] = cat[f"t_{name}"][index]
    return out


def evaluate(name: str, stats: dict) -> tuple[np.ndarray, list, np.ndarray]:
    """``(bucket starts, values, sample times)`` of ``name`` per non-empty
    bucket; sample times are the selected points' (selectors) or the
    bucket starts."""
    if not stats or not len(stats["bucket"]):
        return np.zeros(0, np.int64), [], np.zeros(0, np.int64)
    buckets = stats["bucket"]
    if name == "count":
        return buckets, stats["n"].tolist(), buckets
    if name == "sum":
        sums = stats["sum"]
        if np.asarray(stats["first"]).dtype.kind in "iu":  # an integer field sums to an integer
            sums = np.round(sums).astype(np.int64)
        return buckets, sums.tolist(), buckets
    if name == "spread":
        spread = np.asarray(stats["max"]) - np.asarray(stats["min"])
        return buckets, _plain(spread), buckets
    if name == "mean":
        return buckets, (stats["sum"] / stats["n"]).tolist(), buckets
    if name in SELECTORS:
        return buckets, list(_plain(stats[name])), stats[f"t_{name}"]
    raise KeyError(name)


def _plain(values) -> list:
    """JSON-ready values in the field's own type: integers stay integers
    and booleans booleans, as InfluxDB answers them."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(np.int64).tolist()
    if array.dtype.kind == "b":
        return array.tolist()
    if array.dtype.kind == "f":
        return array.tolist()
    return [v if v is None or isinstance(v, (bool, int, float)) else str(v) for v in array.tolist()]


plain = _plain


def _stddev(t_ns: np.ndarray, values: np.ndarray, _arg):
    """The sample standard deviation; null for fewer than two samples."""
    return (float(np.std(values, ddof=1)), None) if len(values) > 1 else (None, None)


def _median(t_ns: np.ndarray, values: np.ndarray, _arg):
    return float(np.median(values)), None


def _percentile(t_ns: np.ndarray, values: np.ndarray, percentile: float):
    """InfluxDB's nearest-rank percentile, a sample (with its time); none
    when the rank falls outside the bucket's samples."""
    i = int(np.floor(len(values) * percentile / 100.0 + 0.5)) - 1
    if i < 0 or i >= len(values):
        return _NOTHING, None
    order = np.argsort(values, kind="stable")
    return float(values[order[i]]), int(t_ns[order[i]])


_NOTHING = object()
_OF_SAMPLES = {"median": _median, "stddev": _stddev, "percentile": _percentile}


def of_samples(name: str, t_ns: np.ndarray, values: np.ndarray, interval_ns: int | None, offset_ns: int,
               start_ns: int, arg=None) -> tuple[np.ndarray, list, np.ndarray]:
    """``median`` (the mean of the middle two for an even count), ``stddev``
    or ``percentile`` per bucket of raw samples (ns times, ascending), as
    InfluxDB computes them: ``(bucket starts, values, times)``, the times
    being the selected samples' for ``percentile``."""
    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values)
    t_ns, values = t_ns[keep], values[keep]
    if not len(t_ns):
        return np.zeros(0, np.int64), [], np.zeros(0, np.int64)
    if interval_ns is None:
        buckets = np.full(len(t_ns), start_ns, dtype=np.int64)
    else:
        buckets = (t_ns - offset_ns) // interval_ns * interval_ns + offset_ns
    starts = group_starts(buckets)
    ends = np.append(starts[1:], len(buckets))
    reduce = _OF_SAMPLES[name]
    out_buckets, out, times = [], [], []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        value, t = reduce(t_ns[a:b], values[a:b], arg)
        if value is _NOTHING:
            continue
        out_buckets.append(int(buckets[a]))
        out.append(value)
        times.append(int(buckets[a]) if t is None else t)
    return np.asarray(out_buckets, dtype=np.int64), out, np.asarray(times, dtype=np.int64)


def buckets_of(t_ns: np.ndarray, interval_ns: int, offset_ns: int) -> np.ndarray:
    """The start of the bucket each time falls in (floor, as InfluxDB's
    windows, negative times included)."""
    return (t_ns - offset_ns) // interval_ns * interval_ns + offset_ns


def stats_of_samples(t_ns: np.ndarray, values: np.ndarray, interval_ns: int, offset_ns: int) -> dict:
    """The statistics of ascending samples, on integer nanoseconds."""
    keys = buckets_of(np.asarray(t_ns, dtype=np.int64), interval_ns, offset_ns)
    starts = group_starts(keys)
    ends = np.append(starts[1:], len(keys)) - 1
    out = {"bucket": keys[starts], "n": (ends - starts + 1).astype(np.int64),
           "t_first": t_ns[starts], "first": values[starts], "t_last": t_ns[ends], "last": values[ends]}
    if values.dtype.kind in "fiub":
        v = values.astype(np.float64)
        out["sum"] = np.add.reduceat(v, starts) if len(v) else np.zeros(0)
        lo = np.lexsort((v, keys))
        hi = np.lexsort((-v, keys))
        first_of = group_starts(keys[lo])
        out["min"], out["t_min"] = v[lo][first_of], t_ns[lo][first_of]
        out["max"], out["t_max"] = v[hi][first_of], t_ns[hi][first_of]
    return out


def transform(name: str, pairs: list, unit_ns: int, window: int | None = None) -> tuple[list, list]:
    """``derivative``, ``difference`` (and their ``non_negative_`` forms),
    ``cumulative_sum`` or ``moving_average`` of ``(time, value)`` points,
    as InfluxDB's reducers compute them: each result at the later point's
    time, negative changes dropped by the non-negative forms."""
    times, values = [], []
    if name in ("derivative", "non_negative_derivative", "difference", "non_negative_difference"):
        for (t0, v0), (t1, v1) in zip(pairs, pairs[1:], strict=False):
            diff = v1 - v0
            if name.startswith("non_negative") and diff < 0:
                continue
            times.append(t1)
            values.append(diff / ((t1 - t0) / unit_ns) if name.endswith("derivative") else diff)
    elif name == "cumulative_sum":
        total = 0
        for t, v in pairs:
            total += v
            times.append(t)
            values.append(total)
    elif name == "moving_average":
        for i in range(window - 1, len(pairs)):
            times.append(pairs[i][0])
            values.append(sum(v for _t, v in pairs[i - window + 1:i + 1]) / window)
    else:
        raise KeyError(name)
    return times, values


def selector_rank(call, value, t_ns: int) -> tuple:
    """Sort key choosing a selector's point, smallest first, with InfluxDB's
    tie rules (``max``/``min``: the earliest; ``first``/``last``: the
    larger value at equal times)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    v = float(value) if number else 0.0
    if call.name == "max":
        return (-v, t_ns)
    if call.name == "min":
        return (v, t_ns)
    if call.name == "first":
        return (t_ns, -v)
    return (-t_ns, -v)  # last


def count_distinct(t_ns: np.ndarray, values: np.ndarray, interval_ns: int, offset_ns: int):
    """``count(distinct(f))`` per bucket: how many different values."""
    buckets = buckets_of(np.asarray(t_ns, dtype=np.int64), interval_ns, offset_ns)
    counts: dict[int, set] = {}
    for b, v in zip(buckets.tolist(), values.tolist(), strict=True):
        counts.setdefault(b, set()).add(v)
    keys = sorted(counts)
    out = np.asarray(keys, dtype=np.int64)
    return out, [len(counts[k]) for k in keys], out
