"""Downsampling that only ever returns real samples (M4, Jugel et al. 2014).

A panel cannot draw more than one column of pixels per interval, but a
one-sample glitch must still show, at the time it happened. So time is cut
into buckets ``2 * min_stride`` wide, aligned on the epoch (the same request
gives the same buckets, and a panel that slides forward keeps its old
buckets), and each bucket contributes the samples holding its minimum and
its maximum: real samples, at their own times, two per bucket, so points are
on average ``min_stride`` apart. String fields contribute their first and
last sample per bucket instead.

Coarser statistics (first, last, min, max with their times, count, sum) are
merged by :func:`m4_merge`, the one kernel the scan-time summaries and the
g3-reader share. It runs as one pass in C (``sisock._m4``, built with the
package); its numpy form, a handful of passes with no Python loop per sample
or bucket, is the reference the C pass is tested against and what serves
where the extension is not built (a source checkout run in place).
"""

from __future__ import annotations

import numpy as np

try:
    from sisock import _m4
except ImportError:
    _m4 = None

#: Rows of a statistics array (shape ``(len(STATS), fields, buckets)``).
STATS = ("n", "sum", "t_first", "first", "t_last", "last", "t_min", "min", "t_max", "max")
N, SUM, T_FIRST, FIRST, T_LAST, LAST, T_MIN, MIN, T_MAX, MAX = range(len(STATS))


def sorted_unique(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples in time order, each time once (its first sample kept).

    Archives overlap: one g3 sample indexed in two files, one UCSC day under
    both of its file names. Served twice, such a sample would draw a
    vertical line and count double in a bucket. Already-sorted input (the
    usual case) costs one comparison pass."""
    if len(t) > 1 and not np.all(t[1:] > t[:-1]):
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        keep = np.r_[True, t[1:] != t[:-1]]
        t, v = t[keep], v[keep]
    return t, v


def stride_for(min_stride: float | None, start: float, end: float, max_points: int | None) -> float:
    """Seconds between the samples a reply may hold: what the caller asked
    for (``min_stride``), widened so that no field exceeds the server's
    ``max_points`` (``MAX_POINTS``) over ``[start, end]``; 0 for no limit."""
    stride = min_stride or 0.0
    if max_points and end > start:
        stride = max(stride, stride_for_points(end - start, max_points))
    return stride


def stride_for_points(span: float, max_points: int) -> float:
    """The stride at which ``span`` seconds fit ``max_points`` points.

    Buckets are epoch-aligned and two points each, so the range's two
    partial buckets may add four points: the stride leaves room for them,
    and an answer decimated at it fits without being decimated again.
    """
    usable = max_points - 4 if max_points > 8 else max_points
    return span / max(usable, 1)


def bucket_width(min_stride: float) -> float:
    """Answer buckets for a stride: two points each, ``min_stride`` apart on average."""
    return 2.0 * float(min_stride)


def group_starts(keys: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal ``keys`` (sorted)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.intp)
    return np.concatenate(([0], np.flatnonzero(keys[1:] != keys[:-1]) + 1))


def buckets_of(t: np.ndarray, width: float) -> np.ndarray:
    """Epoch-aligned bucket number of each time."""
    return np.floor(np.asarray(t, dtype=np.float64) / width)


def answer_keys(t, width: float, level: float | None = None) -> np.ndarray:
    """The answer bucket of each time: ``floor(t / width)``, or, when the
    answer is built from summaries of ``level`` s, the answer bucket holding
    the middle of the time's summary bucket (answer buckets are then cut on
    the summary grid, each within a summary bucket of ``width``)."""
    t = np.asarray(t, dtype=np.float64)
    if level is None:
        return np.floor(t / width)
    return np.floor((np.floor(t / level) + 0.5) * level / width)


def extreme_indices(values: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bucket, the index of its first minimum and first maximum sample
    (``len(values)`` for a bucket holding only NaN)."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    sizes = np.diff(np.append(starts, n))
    positions = np.arange(n)
    out = []
    for reduce in (np.fmin, np.fmax):
        extreme = np.repeat(reduce.reduceat(v, starts), sizes)
        out.append(np.minimum.reduceat(np.where(v == extreme, positions, n), starts))
    return out[0], out[1]


def m4_indices(t: np.ndarray, values, width: float) -> np.ndarray:
    """Sorted indices of the samples one series keeps on a grid of ``width``
    seconds: each bucket's minimum and maximum (numbers), or its first and
    last sample (anything else). ``t`` must be sorted."""
    n = len(t)
    if n == 0 or not width > 0:
        return np.arange(n)
    starts = group_starts(buckets_of(t, width))
    if len(starts) == n:
        return np.arange(n)  # no bucket holds two samples: nothing to drop
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        a, b = extreme_indices(values, starts)
    else:
        a, b = starts, np.append(starts[1:], n) - 1
    # Per bucket the earlier index first: the pairs are then sorted as a
    # whole (buckets are in time order), so duplicates are neighbours.
    pairs = np.column_stack([np.minimum(a, b), np.maximum(a, b)]).ravel()
    fresh = np.empty(len(pairs), dtype=bool)
    fresh[0] = True
    np.not_equal(pairs[1:], pairs[:-1], out=fresh[1:])
    keep = pairs[fresh]
    return keep[keep < n]


def decimate_timeline(t: np.ndarray, fields: dict, min_stride: float, t0: float | None = None,
                      t1: float | None = None, max_points: int | None = None):
    """Decimate one timeline shared by several fields.

    Every field keeps its bucket minimum and maximum; the timeline keeps the
    union of those samples, and each field its own value at each of them,
    so all fields still share one time axis and every point is a real
    sample. A consumer that wants two points per bucket and field takes
    each field's extremes per bucket again (the HTTP bridge does), which
    gives exactly what decimating the field alone would. With
    ``max_points``, buckets are doubled until the timeline fits. (``t0``
    and ``t1`` are accepted for older callers; buckets are aligned on the
    epoch.) Returns ``(t, {field: values})`` as numpy arrays.
    """
    t = np.asarray(t, dtype=np.float64)
    width = bucket_width(min_stride)
    arrays = {name: np.asarray(values) for name, values in fields.items()}
    while True:
        picks = [m4_indices(t, v, width) for v in arrays.values()]
        keep = np.unique(np.concatenate(picks)).astype(np.intp) if picks else np.zeros(0, np.intp)
        if not max_points or len(keep) <= max_points or len(keep) <= 2:
            return t[keep], {name: v[keep] for name, v in arrays.items()}
        width *= 2.0


def cap_indices(t: np.ndarray, values, max_points: int, min_stride: float | None = None) -> np.ndarray:
    """Indices of at most ``max_points`` samples of one sorted series.

    The series is bucketed on the grid a data node uses for ``min_stride``,
    so a node's answer passes through unchanged and an undecimated one is
    decimated the same way; the grid is doubled until the cap holds.
    """
    n = len(t)
    if n <= max_points:
        return np.arange(n)
    if max_points < 2:
        return np.arange(max(max_points, 0))
    span = float(t[-1] - t[0])
    width = bucket_width(min_stride) if min_stride else 0.0
    width = max(width, 2.0 * span / max(max_points - 4, 1) if max_points > 8 else 2.0 * span / max_points)
    if not width > 0:
        return np.arange(max_points)
    while True:
        keep = m4_indices(t, values, width)
        if len(keep) <= max_points:
            return keep
        width *= 2.0


def minmax_indices(t: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of the samples to keep so at most ``max_points`` remain, each
    bucket keeping its minimum and maximum at their true times."""
    return cap_indices(np.asarray(t, dtype=np.float64), values, max_points)


# -- statistics of buckets ------------------------------------------------------


def sample_stats(t: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Samples as one-sample buckets: ``(len(STATS), fields, samples)``.
    NaN values are missing samples (count 0)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    valid = ~np.isnan(matrix)
    times = np.broadcast_to(np.asarray(t, dtype=np.float64), matrix.shape)
    times = np.where(valid, times, np.nan)
    out = np.empty((len(STATS), *matrix.shape))
    out[N] = valid
    out[SUM] = np.where(valid, matrix, 0.0)
    for trow, vrow in ((T_FIRST, FIRST), (T_LAST, LAST), (T_MIN, MIN), (T_MAX, MAX)):
        out[trow] = times
        out[vrow] = matrix
    return out


def samples_merge(keys: np.ndarray, t: np.ndarray, matrix, starts: np.ndarray | None = None):
    """``m4_merge(keys, sample_stats(t, matrix))``: the samples of ``matrix``
    (fields by samples, at the sorted times ``t``; a 2-d array or a sequence
    of one array per field) merged into the buckets ``keys`` names, without
    building the ten-row copy of every sample that :func:`sample_stats`
    makes. ``starts``: the keys' runs (:func:`group_starts`), if known. Most
    of the scanner's summary work, and of a cold panel's."""
    if _m4 is None:
        return numpy_samples_merge(keys, t, np.asarray(matrix, dtype=np.float64).reshape(-1, len(t)))
    rows = [np.ascontiguousarray(row, dtype=np.float64) for row in matrix]
    if any(row.shape != (len(t),) for row in rows):
        raise ValueError("samples_merge: values must be fields x samples, one time per sample")
    starts = (group_starts(keys) if starts is None else starts).astype(np.int64, copy=False)
    out = np.empty((len(STATS), len(rows), len(starts)))
    if len(starts):
        _m4.merge_samples(np.ascontiguousarray(t, dtype=np.float64), rows, starts, out, len(t), len(starts))
    return keys[starts], out


def numpy_samples_merge(keys: np.ndarray, t: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`samples_merge` in numpy passes. A block with no missing
    sample (the usual one) is merged straight from its samples: its first
    and last are the runs' edges, so only the extremes need a search."""
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[1]
    if n == 0 or np.isnan(matrix).any():
        return numpy_m4_merge(keys, sample_stats(t, matrix))
    t = np.asarray(t, dtype=np.float64)
    starts = group_starts(keys)
    sizes = np.diff(np.append(starts, n))
    last = starts + sizes - 1
    out = np.empty((len(STATS), matrix.shape[0], len(starts)))
    out[N] = sizes
    out[SUM] = np.add.reduceat(matrix, starts, axis=1)
    out[T_FIRST], out[FIRST] = t[starts], matrix[:, starts]
    out[T_LAST], out[LAST] = t[last], matrix[:, last]
    positions = np.arange(n)
    for reduce, trow, vrow in ((np.fmin, T_MIN, MIN), (np.fmax, T_MAX, MAX)):
        hit = matrix == np.repeat(reduce.reduceat(matrix, starts, axis=1), sizes, axis=1)
        index = np.minimum.reduceat(np.where(hit, positions, n), starts, axis=1)
        # The sample's own value: 0.0 and -0.0 are equal extremes, but only one was measured.
        out[trow], out[vrow] = t[index], np.take_along_axis(matrix, index, axis=1)
    return keys[starts], out


def m4_merge(keys: np.ndarray, stats: np.ndarray, starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Merge consecutive buckets (or samples) with equal ``keys``.

    ``stats`` is ``(len(STATS), fields, buckets)`` in time order; ``keys``
    (sorted, one per bucket) says which merged bucket each belongs to.
    Counts and sums add up; first and last are those of the first and last
    bucket holding samples; min and max are the extremes, with the time of
    their first occurrence. Returns ``(keys of the merged buckets, stats)``.
    ``starts`` (the first bucket of each merged one) replaces the keys'
    own runs, for callers merging several series in one pass.
    """
    if _m4 is None:
        return numpy_m4_merge(keys, stats, starts)
    nb = stats.shape[2]
    if nb == 0:
        return keys[:0], stats[:, :, :0]
    starts = (group_starts(keys) if starts is None else starts).astype(np.int64)
    stats = np.ascontiguousarray(stats, dtype=np.float64)
    out = np.empty((len(STATS), stats.shape[1], len(starts)))
    _m4.merge(stats, starts, out, stats.shape[1], nb, len(starts))
    return keys[starts], out


def numpy_m4_merge(keys: np.ndarray, stats: np.ndarray,
                   starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`m4_merge` in numpy passes."""
    nb = stats.shape[2]
    if nb == 0:
        return keys[:0], stats[:, :, :0]
    starts = group_starts(keys) if starts is None else starts
    sizes = np.diff(np.append(starts, nb))
    multi = sizes > 1
    if multi.all():
        return keys[starts], _merge_runs(stats, starts, sizes)
    # A bucket alone in its run is its own merge: only the runs of several
    # (a bucket cut by a file's edge, a range's edge bucket) are computed.
    out = stats[:, :, starts]
    empty = out[N] == 0
    for row in (T_FIRST, T_LAST, T_MIN, T_MAX, FIRST, LAST):
        out[row][empty] = np.nan
    if multi.any():
        sub_sizes = sizes[multi]
        sub_starts = np.concatenate(([0], np.cumsum(sub_sizes)[:-1]))
        out[:, :, multi] = _merge_runs(stats[:, :, np.repeat(multi, sizes)], sub_starts, sub_sizes)
    return keys[starts], out


def _merge_runs(stats: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """:func:`m4_merge`'s statistics of the runs beginning at ``starts``."""
    nb = stats.shape[2]
    fields = stats.shape[1]
    positions = np.arange(nb)
    has = stats[N] > 0
    out = np.empty((len(STATS), fields, len(starts)))
    out[N] = np.add.reduceat(stats[N], starts, axis=1)
    out[SUM] = np.add.reduceat(stats[SUM], starts, axis=1)
    nan_column = np.full((fields, 1), np.nan)

    def take(index, row):
        padded = np.concatenate([stats[row], nan_column], axis=1)  # index nb: no sample
        return np.take_along_axis(padded, index, axis=1)

    i_first = np.minimum.reduceat(np.where(has, positions, nb), starts, axis=1)
    i_last = np.maximum.reduceat(np.where(has, positions, -1), starts, axis=1)
    i_last = np.where(i_last < 0, nb, i_last)
    for index, trow, vrow in ((i_first, T_FIRST, FIRST), (i_last, T_LAST, LAST)):
        out[trow], out[vrow] = take(index, trow), take(index, vrow)
    for reduce, trow, vrow in ((np.fmin, T_MIN, MIN), (np.fmax, T_MAX, MAX)):
        extreme = reduce.reduceat(stats[vrow], starts, axis=1)
        hit = stats[vrow] == np.repeat(extreme, sizes, axis=1)
        index = np.minimum.reduceat(np.where(hit, positions, nb), starts, axis=1)
        out[trow], out[vrow] = take(index, trow), take(index, vrow)  # the sample's value: 0.0 or -0.0
    return out


def run_extremes(stats: np.ndarray, starts: np.ndarray):
    """``(t_min, min, t_max, max)`` of each run of buckets beginning at
    ``starts`` (``stats`` of shape ``(len(STATS), buckets)``, runs in time
    order): the rows :func:`m4_merge` would give, computed on those rows
    alone, since points need nothing else. A run of one bucket is taken as
    it is; an extreme's time is that of its first occurrence; a run without
    a sample has NaN times."""
    if _m4 is not None:
        stats = np.ascontiguousarray(stats, dtype=np.float64)
        out = np.empty((len(STATS), 1, len(starts)))
        if len(starts):
            _m4.merge(stats, np.asarray(starts, dtype=np.int64), out, 1, stats.shape[1], len(starts))
        return out[T_MIN, 0], out[MIN, 0], out[T_MAX, 0], out[MAX, 0]
    return numpy_run_extremes(stats, starts)


def numpy_run_extremes(stats: np.ndarray, starts: np.ndarray):
    """:func:`run_extremes` in numpy passes."""
    n = stats.shape[1]
    sizes = np.diff(np.append(starts, n))
    t_min, v_min, t_max, v_max = (stats[row, starts] for row in (T_MIN, MIN, T_MAX, MAX))
    empty = stats[N, starts] == 0
    t_min[empty] = t_max[empty] = np.nan
    multi = sizes > 1
    if multi.any():
        inside = np.repeat(multi, sizes)
        sub_sizes = sizes[multi]
        sub_starts = np.concatenate(([0], np.cumsum(sub_sizes)[:-1]))
        m = int(sub_sizes.sum())
        positions = np.arange(m)
        for reduce, trow, vrow, out_t, out_v in ((np.fmin, T_MIN, MIN, t_min, v_min),
                                                 (np.fmax, T_MAX, MAX, t_max, v_max)):
            values = stats[vrow, inside]
            extreme = reduce.reduceat(values, sub_starts)
            hit = values == np.repeat(extreme, sub_sizes)
            first = np.minimum.reduceat(np.where(hit, positions, m), sub_starts)
            out_v[multi] = np.append(values, np.nan)[first]  # the sample's value: 0.0 or -0.0
            out_t[multi] = np.append(stats[trow, inside], np.nan)[first]
    return t_min, v_min, t_max, v_max


def extreme_points(stats: np.ndarray, groups: np.ndarray | None = None):
    """``(t, values)`` of one field's buckets (``stats`` of shape
    ``(len(STATS), buckets)``): each bucket's minimum and maximum sample in
    time order, once when they are the same sample; empty buckets give none.
    With ``groups`` (one label per bucket), ``(t, values, label of each point)``."""
    return extreme_pairs(stats[T_MIN], stats[MIN], stats[T_MAX], stats[MAX], groups)


def extreme_pairs(t_min, v_min, t_max, v_max, groups: np.ndarray | None = None):
    """:func:`extreme_points` of buckets given by their minimum and maximum
    samples (times NaN: no sample)."""
    swap = t_max < t_min
    t, v = np.empty((len(t_min), 2)), np.empty((len(t_min), 2))
    t[:, 0], t[:, 1] = np.where(swap, t_max, t_min), np.where(swap, t_min, t_max)
    v[:, 0], v[:, 1] = np.where(swap, v_max, v_min), np.where(swap, v_min, v_max)
    keep = ~np.isnan(t)
    keep[:, 1] &= t[:, 1] != t[:, 0]
    if groups is not None:
        return t[keep], v[keep], np.repeat(groups, 2).reshape(-1, 2)[keep]
    return t[keep], v[keep]
