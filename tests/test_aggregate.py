"""Per-bucket statistics against a plain Python loop over the samples."""

import math

import numpy as np
import pytest

from sisock import aggregate
from sisock.aggregate import KEYS, TEXT_KEYS, bucket_stats


def brute(t, values, start, end, interval, offset=0.0):
    """The statistics, one sample at a time, as InfluxDB's rules say."""
    interval_ns = int(round(interval * 1e9))
    offset_ns = int(round(offset * 1e9)) % interval_ns
    buckets = {}
    for ti, vi in sorted(zip(t.tolist(), list(values), strict=True), key=lambda p: p[0]):
        if not start <= ti <= end or vi is None or (isinstance(vi, float) and math.isnan(vi)):
            continue
        ns = int(ti * 1e9)
        key = (ns - offset_ns) // interval_ns * interval_ns + offset_ns
        b = buckets.setdefault(key, {"n": 0, "sum": 0.0, "t_first": ti, "first": vi, "t_min": ti, "min": vi,
                                     "t_max": ti, "max": vi})
        b["n"] += 1
        b["t_last"], b["last"] = ti, vi
        if not isinstance(vi, str):
            b["sum"] += float(vi)
            if vi < b["min"]:
                b["t_min"], b["min"] = ti, vi
            if vi > b["max"]:
                b["t_max"], b["max"] = ti, vi
    keys = sorted(buckets)
    text = any(isinstance(v, str) for v in values)
    names = TEXT_KEYS if text else KEYS
    return {name: [k for k in keys] if name == "bucket" else [buckets[k][name] for k in keys] for name in names}


def assert_same(got, want):
    assert set(got) == set(want)
    for key, expected in want.items():
        column = got[key]
        assert len(column) == len(expected), key
        if key == "sum":
            np.testing.assert_allclose(column, expected, rtol=1e-12, atol=1e-9)
        else:
            assert np.asarray(column).tolist() == expected, key
    assert got["bucket"].dtype == np.int64 and got["n"].dtype == np.int64


def _random(seed, n=3000, kind="float"):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(1.7e9, 1.7e9 + 7200, n))
    t[rng.choice(n, 20)] = np.floor(t[rng.choice(n, 20)] / 60) * 60  # samples on bucket edges
    t = np.sort(t)
    if kind == "float":
        v = np.round(rng.normal(0, 3, n))  # many ties for min and max
        v[rng.choice(n, 50)] = np.nan
    elif kind == "int":
        v = rng.integers(-5, 6, n)
    elif kind == "bool":
        v = rng.integers(0, 2, n).astype(bool)
    else:
        v = np.array([f"s{i % 7}" for i in range(n)], dtype=object)
    return t, v


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["float", "int", "bool", "string"])
def test_random_ranges_intervals_and_offsets_match_the_loop(seed, kind):
    rng = np.random.default_rng(100 + seed)
    t, v = _random(seed, kind=kind)
    for _ in range(8):
        start = 1.7e9 + rng.uniform(-100, 3600)
        end = start + rng.uniform(0, 5000)
        interval = float(rng.choice([1.0, 7.0, 60.0, 61.5, 600.0, 1234.567, 86400.0]))
        offset = float(rng.choice([0.0, 13.0, -20.0, 0.25, interval * 3 + 1]))
        got = bucket_stats(t, v, start, end, interval, offset)
        assert_same(got, brute(t, v, start, end, interval, offset))


def test_types_are_kept():
    t = np.arange(10.0)
    got = bucket_stats(t, np.arange(10), 0, 9, 4)
    assert got["min"].dtype == np.int64 and got["max"].tolist() == [3, 7, 9]
    assert got["sum"].tolist() == [6.0, 22.0, 17.0] and got["n"].tolist() == [4, 4, 2]
    flags = bucket_stats(t, t % 3 == 0, 0, 9, 5)
    assert flags["max"].dtype == bool and flags["sum"].tolist() == [2.0, 2.0]


def test_ties_give_the_earliest_sample_and_unsorted_input_is_sorted():
    t = np.array([5.0, 1.0, 3.0, 2.0, 4.0])
    v = np.array([9.0, 9.0, 0.0, 0.0, 9.0])
    got = bucket_stats(t, v, 0, 10, 10)
    assert got["t_max"].tolist() == [1.0] and got["t_min"].tolist() == [2.0]
    assert got["t_first"].tolist() == [1.0] and got["t_last"].tolist() == [5.0] and got["last"].tolist() == [9.0]


def test_nan_and_none_are_not_samples():
    t = np.arange(6.0)
    got = bucket_stats(t, [np.nan, 1.0, None, 3.0, np.nan, np.nan], 0, 10, 2)
    assert got["bucket"].tolist() == [0, 2_000_000_000] and got["n"].tolist() == [1, 1]
    assert got["first"].tolist() == [1.0, 3.0]
    only_nan = bucket_stats(t, np.full(6, np.nan), 0, 10, 2)
    assert all(len(c) == 0 for c in only_nan.values()) and set(only_nan) == set(KEYS)


def test_empty_ranges_and_inclusive_edges():
    t = np.arange(0.0, 100.0, 10.0)
    v = np.arange(10.0)
    assert len(bucket_stats(t, v, 200, 300, 10)["bucket"]) == 0
    assert len(bucket_stats(t, v, 11, 19, 10)["bucket"]) == 0
    edges = bucket_stats(t, v, 10, 30, 60)
    assert edges["n"].tolist() == [3] and edges["t_first"].tolist() == [10.0] and edges["t_last"].tolist() == [30.0]
    nothing = bucket_stats(np.zeros(0), np.zeros(0), 0, 1, 1)
    assert set(nothing) == set(KEYS) and len(nothing["bucket"]) == 0
    for text in (aggregate.empty("O"), bucket_stats([1.0], ["a"], 2, 3, 1)):
        assert set(text) == set(TEXT_KEYS) and len(text["bucket"]) == 0


def test_buckets_are_cut_on_truncated_nanoseconds():
    # 1.001 * 1e9 is 1000999999.9999999 in floats: truncated to ...999 ns, it
    # belongs to the bucket before 1.001 s, as InfluxDB fed by OCS stores it.
    t = np.array([1.001, 1.0010001])
    assert int(1.001 * 1e9) == 1_000_999_999
    got = bucket_stats(t, [1.0, 2.0], 0, 2, 0.001)
    assert got["bucket"].tolist() == [1_000_000_000, 1_001_000_000] and got["n"].tolist() == [1, 1]
    # Offsets shift the grid and are taken modulo the interval.
    shifted = bucket_stats(np.array([9.0, 10.0, 11.0]), [1, 2, 3], 0, 20, 10, offset=-9)
    assert shifted["bucket"].tolist() == [1_000_000_000, 11_000_000_000] and shifted["n"].tolist() == [2, 1]


def test_bad_intervals_are_refused():
    for interval in (0, -1, 1e-12, float("nan"), float("inf"), 1e12, "x"):
        with pytest.raises(ValueError):
            bucket_stats(np.arange(3.0), np.arange(3.0), 0, 3, interval)
    with pytest.raises(ValueError):
        bucket_stats(np.arange(3.0), np.arange(2.0), 0, 3, 1, offset=float("inf"))
    with pytest.raises(ValueError):
        bucket_stats(np.arange(3.0), np.arange(2.0), 0, 3, 1)
    a_century = bucket_stats(np.array([-1.0, 1.0]), [1.0, 2.0], -5, 5, 100 * 365.25 * 86400, offset=-1e9)
    assert a_century["n"].tolist() == [2]


def test_series_count_each_time_once_and_leave_out_empty_names():
    t = np.array([3.0, 1.0, 2.0, 2.0, 1.0])
    v = np.array([3.0, 1.0, 2.0, 20.0, 10.0])
    series = {"x": (t, v), "later": (np.array([100.0]), np.array([1.0])), "s": (t, list("abcde"))}
    got = aggregate.series_stats(series, 0, 10, 10)
    assert set(got) == {"x", "s"}
    assert got["x"]["n"].tolist() == [3] and got["x"]["sum"].tolist() == [6.0] and got["x"]["max"].tolist() == [3.0]
    assert got["s"]["n"].tolist() == [3] and got["s"]["first"].tolist() == ["b"]
    assert bucket_stats(t, v, 0, 10, 10)["n"].tolist() == [5]


def test_the_wire_form_round_trips():
    t, v = _random(3)
    fields = {"x": bucket_stats(t, v, 1.7e9, 1.7e9 + 7200, 600),
              "s": bucket_stats(t, np.array(["a"] * len(t), dtype=object), 1.7e9, 1.7e9 + 60, 600),
              "none": aggregate.empty()}
    wire = aggregate.to_wire(fields)
    assert aggregate.reply_size(wire) == sum(len(c) for f in fields.values() for c in f.values())
    back = aggregate.from_wire(wire)
    for name, answer in fields.items():
        assert set(back[name]) == set(answer)
        for key, column in answer.items():
            assert np.asarray(back[name][key]).tolist() == np.asarray(column).tolist()
        assert back[name]["bucket"].dtype == np.int64 and back[name]["n"].dtype == np.int64
        back[name]["n"][:0] += 1  # writable: not a view of the received bytes
    assert set(aggregate.from_wire(wire, names={"x"})) == {"x"}
    # Numbers cross the router packed, strings as lists; the list form is read as well.
    assert isinstance(wire["fields"]["x"]["max"], dict) and wire["fields"]["s"]["first"] == ["a"]
    plain = {"fields": {name: {k: np.asarray(c).tolist() for k, c in f.items()} for name, f in fields.items()}}
    assert aggregate.from_wire(plain)["x"]["max"].tolist() == fields["x"]["max"].tolist()
    broken = {"fields": {"x": dict(wire["fields"]["x"], max={"dtype": "<f8", "data": b"\0" * 7})}}
    for bad in (None, [], {"fields": []}, {"fields": {"x": {"bucket": []}}},
                {"fields": {"x": {k: [1] for k in TEXT_KEYS} | {"n": [1, 2]}}}, broken):
        with pytest.raises(ValueError):
            aggregate.from_wire(bad)
