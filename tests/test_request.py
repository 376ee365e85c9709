"""Parsing Grafana requests: UTC times, limits, one-line errors."""

import pytest

from sisock.components.http.request import (
    DEFAULT_MAX_POINTS,
    BadRequest,
    parse_interval,
    parse_query,
    parse_time,
    split_metric,
)

T0 = 1500000000.0  # 2017-07-14T02:40:00Z


@pytest.mark.parametrize("text", [
    "2017-07-14T02:40:00Z", "2017-07-14T02:40:00.000Z", "2017-07-14T04:40:00+02:00",
    "2017-07-13T21:40:00-05:00", "2017-07-14T02:40:00", "1500000000000",
])
def test_times_are_utc(text):
    assert parse_time(text, "t") == T0


@pytest.mark.parametrize("bad", ["yesterday", "", "2017-13-01T00:00:00Z", None, [], {}, True, "1e400"])
def test_bad_times(bad):
    with pytest.raises(BadRequest) as err:
        parse_time(bad, "range.from")
    assert "range.from" in str(err.value) and "\n" not in str(err.value)


def test_query_fields():
    q = parse_query({
        "range": {"from": "2017-07-14T02:40:00Z", "to": "2017-07-14T03:40:00Z"},
        "maxDataPoints": 100,
        "targets": [
            {"target": "node::field", "refId": "A"},
            {"target": "node::other", "refId": "B", "type": "table"},
            {"target": "hidden::x", "hide": True},
            {"target": "nonsense"},
        ],
    })
    assert (q.start, q.end, q.max_points) == (T0, T0 + 3600, 100)
    assert q.min_stride == 3600 / 96  # room for the partial buckets at both edges
    with_interval = parse_query({"range": {"from": "2017-07-14T02:40:00Z", "to": "2017-07-14T03:40:00Z"},
                                 "maxDataPoints": 100, "intervalMs": 60_000, "targets": []})
    assert with_interval.min_stride == 60.0  # Grafana asked for fewer points than the panel could take
    assert [(t.node, t.field, t.type) for t in q.targets] == [
        ("node", "field", "timeserie"), ("node", "other", "table"), (None, None, "timeserie")]


def test_points_from_interval_or_default():
    rng = {"from": "2017-07-14T02:40:00Z", "to": "2017-07-14T03:40:00Z"}
    assert parse_query({"range": rng, "intervalMs": 60000}).max_points == 60
    assert parse_query({"range": rng, "interval": "30s"}).max_points == 120
    assert parse_query({"range": rng}).max_points == DEFAULT_MAX_POINTS


@pytest.mark.parametrize("body,reason", [
    ([], "JSON object"),
    ({}, "missing range"),
    ({"range": {"from": "2017-07-14T02:40:00Z"}}, "missing range"),
    ({"range": {"from": "2017-07-14T03:40:00Z", "to": "2017-07-14T02:40:00Z"}}, "later"),
    ({"range": {"from": "2017-07-14T02:40:00Z", "to": "2017-07-14T03:40:00Z"}, "maxDataPoints": -5}, "maxDataPoints"),
    ({"range": {"from": "2017-07-14T02:40:00Z", "to": "2017-07-14T03:40:00Z"}, "targets": "x"}, "targets"),
    ({"range": {"from": "2017-07-14T02:40:00Z", "to": "2017-07-14T03:40:00Z"}, "targets": [{"target": 5}]},
     "target"),
])
def test_bad_queries(body, reason):
    with pytest.raises(BadRequest, match=reason):
        parse_query(body)


def test_intervals_and_metrics():
    assert parse_interval("500ms") == 0.5 and parse_interval("2h") == 7200
    with pytest.raises(BadRequest):
        parse_interval("fast")
    assert split_metric("a::b::c") == ("a", "b::c")
    assert split_metric("::b") == (None, None)
