"""M4 decimation: only real samples, each bucket's extremes kept, counts bounded."""

import numpy as np
import pytest
from m4_check import assert_exact_samples, assert_m4

from sisock import contract
from sisock.downsample import (
    MAX,
    MIN,
    STATS,
    T_MAX,
    T_MIN,
    answer_keys,
    cap_indices,
    decimate_timeline,
    extreme_points,
    m4_indices,
    m4_merge,
    minmax_indices,
    run_extremes,
    sample_stats,
    samples_merge,
)


def _series(n=10_000, seed=1):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 86400, n))
    v = rng.normal(0, 1, n)
    spikes = rng.choice(n, 5, replace=False)
    v[spikes] = 1000 + np.arange(5)
    return t, v, spikes


@pytest.mark.parametrize("width", [0.5, 7.0, 120.0, 997.0, 40000.0])
def test_m4_indices_keep_each_buckets_first_extremes(width):
    t, v, spikes = _series()
    v[::97] = np.round(v[::97])  # ties: the first of equal extremes is kept
    keep = m4_indices(t, v, width)
    assert_m4(t, v, t[keep], v[keep], 0, 86400, width)
    if width < 10_000:  # narrower buckets than the spikes' spacing: each is its bucket's maximum
        assert set(spikes) <= set(keep.tolist())


def test_m4_indices_of_strings_keep_first_and_last():
    t = np.arange(10.0)
    v = np.array(list("abcdefghij"), dtype=object)
    assert m4_indices(t, v, 4.0).tolist() == [0, 3, 4, 7, 8, 9]


def test_m4_ignores_nan_and_drops_empty_buckets():
    t = np.arange(9.0)
    v = np.array([np.nan, 1.0, np.nan, np.nan, np.nan, np.nan, 5.0, 2.0, np.nan])
    keep = m4_indices(t, v, 3.0)
    assert keep.tolist() == [1, 6, 7]


@pytest.mark.parametrize("max_points", [2, 3, 10, 101, 1000, 9999])
def test_cap_indices_bounded_exact_and_keeps_extremes(max_points):
    t, v, spikes = _series()
    keep = cap_indices(t, v, max_points)
    assert len(keep) <= max_points
    assert_exact_samples(t, v, t[keep], v[keep])
    assert v.argmax() in keep and v.argmin() in keep
    if max_points >= 100:  # buckets narrower than the spikes' spacing
        assert set(spikes) <= set(keep.tolist())
    assert np.array_equal(minmax_indices(t, v, max_points), keep)


def test_cap_indices_pass_a_nodes_answer_unchanged():
    t, v, _ = _series(50_000)
    stride = 86400 / 996
    node = m4_indices(t, v, 2 * stride)
    assert len(node) <= 1000
    again = cap_indices(t[node], v[node], 1000, stride)
    assert np.array_equal(again, np.arange(len(node)))
    short = cap_indices(t[:50], v[:50], 50)
    assert np.array_equal(short, np.arange(50))


@pytest.mark.parametrize("stride", [1.0, 60.0, 997.0, 7200.0])
def test_decimate_timeline_shares_one_axis_of_real_samples(stride):
    t, v, _ = _series()
    w = -2 * v + 3
    out_t, out = decimate_timeline(t, {"v": v, "w": w}, stride)
    assert len(out["v"]) == len(out["w"]) == len(out_t)
    for name, series in (("v", v), ("w", w)):
        assert_exact_samples(t, series, out_t, out[name])
        keep = m4_indices(t, series, 2 * stride)
        assert set(t[keep].tolist()) <= set(out_t.tolist())


def test_decimate_keeps_times_and_order():
    t = np.arange(10.0)
    v = np.array([0, 0, 9, 0, 0, 0, -9, 0, 0, 0], dtype=float)
    out_t, out = decimate_timeline(t, {"v": v}, 5.0)
    assert out_t.tolist() == [2.0, 6.0]  # one bucket [0, 10): its maximum, then its minimum
    assert out["v"].tolist() == [9.0, -9.0]


def _brute_stats(t, v, keys):
    out = {}
    for k in np.unique(keys):
        sel = (keys == k) & ~np.isnan(v)
        tb, vb = t[sel], v[sel]
        if not len(tb):
            out[k] = None
            continue
        out[k] = {"n": len(tb), "sum": vb.sum(), "t_first": tb[0], "first": vb[0], "t_last": tb[-1],
                  "last": vb[-1], "t_min": tb[np.argmin(vb)], "min": vb.min(), "t_max": tb[np.argmax(vb)],
                  "max": vb.max()}
    return out


@pytest.mark.parametrize("fine_width", [10.0, 0.4])  # 0.4 s: most runs hold one bucket, some several
def test_m4_merge_of_samples_and_of_merged_buckets_equals_brute_force(fine_width):
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 1000, 3000))
    m = np.vstack([rng.normal(0, 1, 3000), np.round(rng.normal(0, 2, 3000))])
    m[0, rng.choice(3000, 300, replace=False)] = np.nan
    m[1, 100:400] = np.nan  # whole buckets without a sample
    fine_keys, fine = m4_merge(np.floor(t / fine_width), sample_stats(t, m))
    keys, coarse = m4_merge(np.floor(fine_keys / 6), fine)
    for row, v in enumerate(m):
        brute = _brute_stats(t, v, np.floor(t / fine_width / 6))
        assert sorted(brute) == keys.tolist()
        for i, k in enumerate(keys):
            want = brute[k]
            if want is None:
                assert coarse[0, row, i] == 0 and np.isnan(coarse[STATS.index("t_min"), row, i])
                continue
            for j, stat in enumerate(STATS):
                got = coarse[j, row, i]
                assert got == pytest.approx(want[stat], rel=1e-12) if stat == "sum" else got == want[stat], stat


@pytest.mark.parametrize("width", [60.0, 0.3, 5000.0])  # many samples a bucket; mostly one; one bucket
@pytest.mark.parametrize("missing", [False, True])
def test_samples_merge_equals_m4_merge_of_sample_stats(width, missing):
    rng = np.random.default_rng(11)
    t = np.sort(rng.uniform(0, 3600, 3600))
    m = np.vstack([rng.normal(0, 1, 3600), np.round(rng.normal(0, 2, 3600)),  # rounded: ties
                   np.where(rng.random(3600) < 0.5, 0.0, -0.0), rng.normal(0, 1, 3600)])
    m[3, rng.choice(3600, 20, replace=False)] = np.inf  # infinities: extremes like any other value
    m[1, rng.choice(3600, 20, replace=False)] = -np.inf
    if missing:
        m[0, rng.choice(3600, 300, replace=False)] = np.nan
    keys = np.floor(t / width)
    want_keys, want = m4_merge(keys, sample_stats(t, m))
    got_keys, got = samples_merge(keys, t, m)
    assert np.array_equal(got_keys, want_keys)
    rows = [row for row in range(len(STATS)) if STATS[row] != "sum"]
    assert np.array_equal(got[rows], want[rows], equal_nan=True)  # 0.0 == -0.0 here: a sign is checked below
    # Sums are added in another order (lanes of samples, against one bucket after another): the last bits may differ.
    np.testing.assert_allclose(got[STATS.index("sum")], want[STATS.index("sum")], rtol=1e-12, atol=1e-12)
    for trow, vrow in ((T_MIN, MIN), (T_MAX, MAX)):  # each extreme is its sample, sign included
        for row in range(len(m)):
            valid = ~np.isnan(got[trow, row])
            at = np.searchsorted(t, got[trow, row, valid])
            assert np.array_equal(np.signbit(got[vrow, row, valid]), np.signbit(m[row, at]))
            assert np.array_equal(got[vrow, row, valid], m[row, at])


def test_run_extremes_are_m4_merges_minimum_and_maximum_rows():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 500, 4000))
    v = np.round(rng.normal(0, 3, 4000))  # rounded: ties, whose first occurrence must win
    v[rng.choice(4000, 400, replace=False)] = np.nan
    v[1000:1100] = np.nan  # whole runs without a sample
    keys, buckets = m4_merge(np.floor(t / 0.3), sample_stats(t, v[None, :]))  # runs of one bucket and of several
    stats = buckets[:, 0]
    starts = np.flatnonzero(np.r_[True, np.floor(keys[1:] / 5) != np.floor(keys[:-1] / 5)])
    _, merged = m4_merge(np.floor(keys / 5), buckets, starts=starts)
    for got, row in zip(run_extremes(stats, starts), ("t_min", "min", "t_max", "max"), strict=True):
        assert np.array_equal(got, merged[STATS.index(row), 0], equal_nan=True), row


def test_extreme_points_are_in_time_order_and_once():
    t = np.array([0.0, 1, 2, 3, 4, 5])
    v = np.array([5.0, 1, 3, 3, 9, 7])
    keys, stats = m4_merge(answer_keys(t, 3.0), sample_stats(t, v[None, :]))
    out_t, out_v = extreme_points(stats[:, 0])
    assert out_t.tolist() == [0.0, 1.0, 3.0, 4.0] and out_v.tolist() == [5.0, 1.0, 3.0, 9.0]
    single = sample_stats(np.array([7.0]), np.array([[2.0]]))
    assert [a.tolist() for a in extreme_points(m4_merge(np.zeros(1), single)[1][:, 0])] == [[7.0], [2.0]]


def test_data_reply_selects_inclusive_range_and_marks_missing():
    tl = contract.Timeline("tl", [1, 2, 3, 4], {"a": [10, 20, 30, 40]}, finalized_until=4)
    reply = contract.data_reply(["a", "nope"], [tl], 2, 3)
    assert reply == {"data": {"a": [20, 30], "nope": []},
                     "timeline": {"tl": {"t": [2.0, 3.0], "finalized_until": 4.0}}}
    assert contract.data_reply(["a"], [tl], 5, 6) == {"data": {"a": []}, "timeline": {}}


def test_fields_reply_groups_timelines():
    field, timeline = contract.fields_reply(
        {"a": contract.field_info("x", units="K"), "b": contract.field_info("x"), "c": contract.field_info("y")},
        {"x": 1.0},
    )
    assert timeline == {"x": {"interval": 1.0, "field": ["a", "b"]}, "y": {"interval": None, "field": ["c"]}}
    assert field["a"] == {"description": None, "timeline": "x", "type": "number", "units": "K"}


def test_sorted_unique_orders_and_keeps_the_first_of_each_time():
    from sisock.downsample import sorted_unique

    t, v = sorted_unique(np.array([3.0, 1.0, 2.0, 1.0]), np.array([30.0, 10.0, 20.0, 11.0]))
    assert t.tolist() == [1.0, 2.0, 3.0] and v.tolist() == [10.0, 20.0, 30.0]
    t0 = np.array([1.0, 2.0])
    assert sorted_unique(t0, t0)[0] is t0  # sorted input is passed through


def test_stride_for_widens_to_the_servers_cap():
    from sisock.downsample import stride_for

    assert stride_for(None, 0, 100, None) == 0
    assert stride_for(5, 0, 100, None) == 5
    assert stride_for(None, 0, 100, 10) == 100 / 6  # room for the two partial buckets at the edges
    assert stride_for(None, 0, 100, 8) == 100 / 8
    assert stride_for(20, 0, 100, 10) == 20
    assert stride_for(None, 100, 100, 10) == 0
