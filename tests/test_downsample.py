"""Min/max decimation: counts bounded, every bucket's extremes kept."""

import numpy as np
import pytest

from sisock import contract
from sisock.downsample import bucket_count, decimate_timeline, minmax_indices


def _series(n=10_000, seed=1):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 86400, n))
    v = rng.normal(0, 1, n)
    spikes = rng.choice(n, 5, replace=False)
    v[spikes] = 1000 + np.arange(5)
    return t, v, spikes


@pytest.mark.parametrize("max_points", [2, 3, 10, 101, 1000, 9999])
def test_minmax_indices_bounded_and_keeps_extremes(max_points):
    t, v, spikes = _series()
    keep = minmax_indices(t, v, max_points)
    assert len(keep) <= max_points
    assert np.all(np.diff(keep) > 0)
    nb = max_points // 2
    width = (t[-1] - t[0]) / nb
    bucket = np.minimum(np.floor((t - t[0]) / width), nb - 1)
    for b in np.unique(bucket):
        members = v[bucket == b]
        kept = v[keep][bucket[keep] == b]
        assert members.min() in kept and members.max() in kept
    assert v.argmax() in keep and v.argmin() in keep


def test_minmax_indices_passes_short_series():
    t, v, _ = _series(50)
    assert np.array_equal(minmax_indices(t, v, 50), np.arange(50))


@pytest.mark.parametrize("stride", [1.0, 60.0, 997.0, 7200.0])
def test_decimate_timeline_bounds_and_extremes(stride):
    t, v, _ = _series()
    w = -2 * v + 3
    start, end = 0.0, 86400.0
    out_t, out = decimate_timeline(t, {"v": v, "w": w}, stride, start, end)
    assert len(out_t) <= (end - start) / stride + 1e-9
    assert np.all(np.diff(out_t) >= 0)
    assert len(out["v"]) == len(out["w"]) == len(out_t)
    width = 2 * stride
    nb = bucket_count(end - start, width)
    raw_b = np.minimum(np.floor((t - start) / width), nb - 1)
    out_b = np.minimum(np.floor((out_t - start) / width), nb - 1)
    for b in np.unique(raw_b):
        for name, series in (("v", v), ("w", w)):
            members = series[raw_b == b]
            kept = out[name][out_b == b]
            assert members.min() in kept and members.max() in kept


def test_decimate_keeps_order_of_min_and_max():
    t = np.arange(10.0)
    v = np.array([0, 0, 9, 0, 0, 0, -9, 0, 0, 0], dtype=float)
    out_t, out = decimate_timeline(t, {"v": v}, 5.0, 0.0, 10.0)
    assert out_t.tolist() == [0.0, 9.0]
    assert out["v"].tolist() == [9.0, -9.0]


def test_decimate_ignores_nan():
    t = np.arange(6.0)
    v = np.array([np.nan, 1.0, np.nan, 5.0, np.nan, np.nan])
    _, out = decimate_timeline(t, {"v": v}, 3.0, 0.0, 6.0)
    assert sorted(out["v"].tolist()) == [1.0, 5.0]


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
    assert stride_for(None, 0, 100, 10) == 10
    assert stride_for(20, 0, 100, 10) == 20
    assert stride_for(None, 100, 100, 10) == 0
