"""The M4 merge's one-pass C kernel (sisock/_m4.c) against its numpy reference.

Every answer built from tiles, summaries or rollups goes through the kernel,
so it must agree with the numpy passes to the bit: times, values (the sign
of a zero included), counts and sums, on data with ties, missing samples,
infinities, runs of one bucket and runs without any sample.
"""

import numpy as np
import pytest

from sisock import downsample
from sisock.downsample import (
    MAX,
    MIN,
    SUM,
    T_MAX,
    T_MIN,
    N,
    group_starts,
    m4_merge,
    numpy_m4_merge,
    numpy_run_extremes,
    numpy_samples_merge,
    run_extremes,
    sample_stats,
    samples_merge,
)


def test_the_kernel_is_built_where_the_suite_runs():
    # make install compiles it; without it every panel takes the numpy passes.
    assert downsample._m4 is not None


def _samples(seed: int, n: int = 5000, fields: int = 4, missing: float = 0.1):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 1000, n))
    m = np.vstack([rng.normal(0, 1, n), np.round(rng.normal(0, 2, n)),  # rounded: ties
                   np.where(rng.random(n) < 0.5, 0.0, -0.0), rng.normal(0, 1, n)][:fields])
    m[-1, rng.choice(n, 20, replace=False)] = np.inf
    m[0, rng.choice(n, 20, replace=False)] = -np.inf
    m[rng.random(m.shape) < missing] = np.nan
    m[:, n // 3:n // 3 + 200] = np.nan  # whole buckets without a sample
    return t, m


def _same(got, want):
    """Equal, NaN for NaN, and each zero with its own sign."""
    assert got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def _rows_same(got, want):
    """Every row the same; sums to the last bits (numpy adds a long run in
    blocks of eight, the kernel one sample after another) and without the
    sign of a sum of zeros (numpy's own two paths disagree on it)."""
    for row in range(len(want)):
        if row == SUM:
            np.testing.assert_allclose(got[row], want[row], rtol=1e-12, atol=1e-12)  # values of order 1
        else:
            _same(got[row], want[row])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("width", [0.05, 1.0, 7.5, 333.0])
def test_merging_samples_equals_the_numpy_passes(seed, width):
    t, m = _samples(seed, missing=0.0 if seed % 2 else 0.1)
    keys = np.floor(t / width)
    want_keys, want = numpy_samples_merge(keys, t, m)
    got_keys, got = samples_merge(keys, t, m)
    assert np.array_equal(got_keys, want_keys)
    _rows_same(got, want)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("factor", [2, 5, 64])
def test_merging_buckets_equals_the_numpy_passes(seed, factor):
    t, m = _samples(seed)
    fine_keys, fine = numpy_m4_merge(np.floor(t / 0.7), sample_stats(t, m))
    keys = np.floor(fine_keys / factor)
    want_keys, want = numpy_m4_merge(keys, fine)
    got_keys, got = m4_merge(keys, fine)
    assert np.array_equal(got_keys, want_keys)
    _rows_same(got, want)
    # Several series merged in one pass: their own starts, not the keys' runs.
    starts = np.unique(np.concatenate((group_starts(keys), [len(keys) // 2])))
    _, want = numpy_m4_merge(keys, fine, starts=starts)
    _, got = m4_merge(keys, fine, starts=starts)
    for row in (N, T_MIN, MIN, T_MAX, MAX):
        _same(got[row], want[row])


@pytest.mark.parametrize("seed", range(4))
def test_run_extremes_equal_the_numpy_passes(seed):
    t, m = _samples(seed, fields=1)
    _, buckets = numpy_m4_merge(np.floor(t / 0.3), sample_stats(t, m))
    stats = buckets[:, 0]
    rng = np.random.default_rng(seed)
    starts = np.unique(np.concatenate(([0], rng.choice(stats.shape[1], 200))))  # runs of one and of many
    for got, want in zip(run_extremes(stats, starts), numpy_run_extremes(stats, starts), strict=True):
        _same(got, want)


def test_empty_input_and_bad_starts():
    keys, stats = samples_merge(np.zeros(0), np.zeros(0), np.zeros((3, 0)))
    assert keys.shape == (0,) and stats.shape == (10, 3, 0)
    from sisock import _m4

    out = np.empty((10, 1, 2))
    for starts in ([1, 2], [0, 0], [0, 9]):  # not from 0, not rising, past the end
        with pytest.raises(ValueError):
            _m4.merge_samples(np.arange(4.0), [np.ones(4)], np.array(starts, dtype=np.int64), out, 4, 2)
    with pytest.raises(ValueError):  # a length that does not match the buffers
        _m4.merge_samples(np.arange(4.0), [np.ones(4)], np.array([0, 2], dtype=np.int64), out, 5, 2)
    with pytest.raises(ValueError):  # a row shorter than the times
        _m4.merge_samples(np.arange(4.0), [np.ones(4), np.ones(3)], np.array([0, 2], dtype=np.int64),
                          np.empty((10, 2, 2)), 4, 2)
    with pytest.raises(TypeError):  # rows that are not arrays
        _m4.merge_samples(np.arange(4.0), [object()], np.array([0, 2], dtype=np.int64), out, 4, 2)


def test_without_the_kernel_the_numpy_passes_serve(monkeypatch):
    """A source folder run in place, where the extension was never built."""
    t, m = _samples(3)
    keys = np.floor(t / 7.5)
    def both():
        bucket_keys, buckets = samples_merge(keys, t, list(m))
        return (bucket_keys, buckets), m4_merge(np.floor(bucket_keys / 4), buckets)

    with_kernel = both()
    monkeypatch.setattr(downsample, "_m4", None)
    without = both()
    for (got_keys, got), (want_keys, want) in zip(without, with_kernel, strict=True):
        assert np.array_equal(got_keys, want_keys)
        _rows_same(got, want)
    stats = with_kernel[0][1][:, 0]
    starts = np.array([0, 3, 4, 9])
    monkeypatch.undo()
    want = run_extremes(stats, starts)
    monkeypatch.setattr(downsample, "_m4", None)
    for got, row in zip(run_extremes(stats, starts), want, strict=True):
        _same(got, row)
