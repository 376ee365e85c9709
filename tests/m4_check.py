"""What every downsampled answer must be, checked sample by sample.

Shared by the tests of the downsampling kernel, the scan-time summaries,
the g3-reader and the archive servers: every returned point is a real
sample (its exact time and value), inside the range, in time order, and
every answer bucket's minimum and maximum sample is among the points.
"""

from __future__ import annotations

import numpy as np

from sisock.downsample import answer_keys


def assert_exact_samples(t, v, out_t, out_v):
    """Every ``(out_t, out_v)`` is a sample of ``(t, v)``: same time, same value."""
    t, v = np.asarray(t, dtype=np.float64), np.asarray(v)
    out_t, out_v = np.asarray(out_t, dtype=np.float64), np.asarray(out_v)
    assert len(out_t) == len(out_v)
    assert np.all(np.diff(out_t) > 0), "points not in strict time order"
    at = np.searchsorted(t, out_t)
    assert np.all(at < len(t)), "a point after the last sample"
    assert np.array_equal(t[at], out_t), "a point at a time no sample has"
    same = (v[at] == out_v) | ((v[at] != v[at]) & (out_v != out_v))
    assert np.all(same), f"a point whose value is not its sample's: {out_t[~same][:3]}"


def assert_m4(t, v, out_t, out_v, start, end, width, level=None):
    """``out`` is an M4 answer over ``[start, end]`` of the series ``(t, v)``
    (sorted, NaN = missing) on buckets of ``width`` (cut on the ``level``
    grid when the answer came from summaries): exact samples, each bucket's
    first minimum and first maximum present, at most two points per bucket."""
    t, v = np.asarray(t, dtype=np.float64), np.asarray(v, dtype=np.float64)
    inside = (t >= start) & (t <= end) & ~np.isnan(v)
    t, v = t[inside], v[inside]
    assert_exact_samples(t, v, out_t, out_v)
    keys = answer_keys(t, width, level)
    got = answer_keys(np.asarray(out_t, dtype=np.float64), width, level)
    out_v = np.asarray(out_v, dtype=np.float64)
    assert set(np.unique(got)) == set(np.unique(keys)), "an answer bucket is missing or extra"
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    by_key = {}
    order = np.argsort(got, kind="stable")
    for k, tt, vv in zip(got[order], np.asarray(out_t)[order], out_v[order], strict=True):
        by_key.setdefault(k, []).append((tt, vv))
    for a, b in zip(starts, ends, strict=True):
        kept = by_key[keys[a]]
        assert len(kept) <= 2, f"{len(kept)} points in one bucket"
        vb = v[a:b]
        lo, hi = a + int(np.argmin(vb)), a + int(np.argmax(vb))
        assert (t[lo], v[lo]) in kept and (t[hi], v[hi]) in kept, f"bucket {keys[a]}: extremes missing"
