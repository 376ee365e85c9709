"""Spike-preserving decimation: every bucket keeps its minimum and maximum.

Stride or mean decimation hides a one-sample glitch in a week-long panel;
min/max decimation shows it, at the cost of two points per bucket instead of
one. Everything here is a handful of numpy passes over the input (no Python
loop per sample), so it is cheap enough to run on every request.
"""

from __future__ import annotations

import math

import numpy as np


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
        stride = max(stride, (end - start) / max_points)
    return stride


def bucket_starts(t: np.ndarray, t0: float, width: float, nbuckets: int | None = None) -> np.ndarray:
    """Index of the first sample of each non-empty bucket of ``width`` s.

    ``t`` must be sorted. Buckets are aligned on ``t0`` so the same request
    always produces the same buckets (panels do not flicker on refresh).
    With ``nbuckets``, samples past the last bucket (the range's closing
    instant) are folded into it, so the bucket count is exact.
    """
    if len(t) == 0:
        return np.zeros(0, dtype=np.intp)
    b = np.floor((np.asarray(t, dtype=np.float64) - t0) / width)
    if nbuckets is not None:
        b = np.minimum(b, nbuckets - 1)
    return np.flatnonzero(np.r_[True, b[1:] != b[:-1]])


def bucket_count(span: float, width: float) -> int:
    """Whole buckets in ``span``; a partial last bucket is merged into the one before."""
    return max(1, math.floor(span / width + 1e-9))


def _first_index_where(mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per bucket, the first index where ``mask`` holds (len(mask) if none)."""
    n = len(mask)
    positions = np.where(mask, np.arange(n), n)
    return np.minimum.reduceat(positions, starts)


def extrema(values: np.ndarray, starts: np.ndarray):
    """Per bucket: (min, max, index of min, index of max); NaNs ignored."""
    v = np.asarray(values, dtype=np.float64)
    lo = np.fmin.reduceat(v, starts)
    hi = np.fmax.reduceat(v, starts)
    ends = np.r_[starts[1:], len(v)]
    bucket = np.repeat(np.arange(len(starts)), ends - starts)
    i_lo = _first_index_where(v == lo[bucket], starts)
    i_hi = _first_index_where(v == hi[bucket], starts)
    return lo, hi, i_lo, i_hi


def minmax_indices(t: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of the samples to keep so at most ``max_points`` remain.

    For one series: each bucket keeps its minimum and maximum sample at their
    true times. Used by the HTTP bridge as the safety net on ``maxDataPoints``.
    """
    n = len(t)
    if n <= max_points:
        return np.arange(n)
    if max_points < 2:
        return np.arange(min(n, max(max_points, 0)))
    nbuckets = max_points // 2
    t0 = float(t[0])
    width = (float(t[-1]) - t0) / nbuckets
    if width <= 0:
        return np.arange(max_points)
    starts = bucket_starts(t, t0, width, nbuckets)
    _, _, i_lo, i_hi = extrema(values, starts)
    keep = np.unique(np.r_[i_lo, i_hi])
    return keep[keep < n]


def decimate_timeline(t: np.ndarray, fields: dict, min_stride: float, t0: float, t1: float | None = None):
    """Decimate one timeline shared by several fields.

    Buckets are ``2 * min_stride`` wide and contribute two samples (at the
    bucket's first and last sample times), so samples are on average at
    least ``min_stride`` apart. Each field puts its bucket minimum and
    maximum on those two times, in the order they occurred, so values are
    exact and every spike survives; a spike's time is known to within the
    bucket. Buckets holding a single sample are passed through unchanged.
    With the range's end ``t1``, at most ``(t1 - t0) / min_stride`` samples
    come out. Returns ``(t, {field: values})`` as numpy arrays.
    """
    t = np.asarray(t, dtype=np.float64)
    width = 2.0 * min_stride
    nbuckets = None if t1 is None else bucket_count(t1 - t0, width)
    starts = bucket_starts(t, t0, width, nbuckets)
    ends = np.r_[starts[1:], len(t)] - 1
    single = starts == ends
    first_t, last_t = t[starts], t[ends]
    out_t = np.column_stack([first_t, last_t]).ravel()
    keep = np.column_stack([np.ones_like(single), ~single]).ravel()
    out = {}
    for name, values in fields.items():
        values = np.asarray(values)
        if values.dtype.kind not in "fiub":  # strings: a bucket's first and last readings
            out[name] = np.column_stack([values[starts], values[ends]]).ravel()[keep]
            continue
        lo, hi, i_lo, i_hi = extrema(values, starts)
        lo_first = i_lo <= i_hi
        a = np.where(lo_first, lo, hi)
        b = np.where(lo_first, hi, lo)
        out[name] = np.column_stack([a, b]).ravel()[keep]
    return out_t[keep], out


def merge_on_grid(t_first, t_last, lo, hi, lo_first, width: float):
    """Min/max points on an epoch-aligned grid of ``width`` s, from buckets.

    The inputs are finer buckets (or single samples, with ``t_first ==
    t_last`` and ``lo == hi``) that each fall inside one grid bucket, as
    summaries aligned on a divisor of ``width`` do. Each grid bucket yields
    its minimum and maximum, in the order they occurred, at its first and
    last sample times; a bucket holding one value yields one point.
    Returns ``(t, values)``.
    """
    t_first = np.asarray(t_first, dtype=np.float64)
    if len(t_first) == 0:
        return np.zeros(0), np.zeros(0)
    if np.any(t_first[1:] < t_first[:-1]):
        order = np.argsort(t_first, kind="stable")
        t_first, t_last, lo, hi, lo_first = (np.asarray(a)[order] for a in (t_first, t_last, lo, hi, lo_first))
    bucket = np.floor(t_first / width)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(t_first)]
    size = ends - starts
    b_lo = np.fmin.reduceat(lo, starts)
    b_hi = np.fmax.reduceat(hi, starts)
    i_lo = _first_index_where(lo == np.repeat(b_lo, size), starts)
    i_hi = _first_index_where(hi == np.repeat(b_hi, size), starts)
    same = i_lo == i_hi
    flag = np.asarray(lo_first, dtype=bool)[np.minimum(i_lo, len(t_first) - 1)]
    low_first = np.where(same, flag, i_lo < i_hi)
    first_t = t_first[starts]
    last_t = np.fmax.reduceat(np.asarray(t_last, dtype=np.float64), starts)
    single = (first_t == last_t) | (b_lo == b_hi)
    out_t = np.column_stack([first_t, last_t]).ravel()
    out_v = np.column_stack([np.where(low_first, b_lo, b_hi), np.where(low_first, b_hi, b_lo)]).ravel()
    keep = np.column_stack([np.ones_like(single), ~single]).ravel()
    return out_t[keep], out_v[keep]


def grid_width(min_stride: float, level: float) -> float:
    """Answer buckets: a multiple of the summary ``level`` (so summaries nest)
    at least ``2 * min_stride`` wide (two points each, so points stay at least
    ``min_stride`` apart on average)."""
    return level * math.ceil(2.0 * min_stride / level - 1e-9)
