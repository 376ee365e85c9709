"""The SimpleJson endpoints through the real stack (bridge, router, weather)."""

import time

import numpy as np
import pytest
import requests

FIELDS = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _body(start, end, targets, max_points=1000):
    return {"range": {"from": _iso(start), "to": _iso(end)}, "maxDataPoints": max_points,
            "targets": [t if isinstance(t, dict) else {"target": t, "refId": t} for t in targets]}


def _post(stack, path, body=None, data=None):
    return requests.post(stack.http + path, json=body, data=data, timeout=30)


def test_ping(stack, bridge):
    r = requests.get(stack.http + "/", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_search_lists_and_filters(stack, bridge):
    names = _post(stack, "/search", {"target": ""}).json()
    assert {f"apex_archive::{f}" for f in FIELDS} <= set(names)
    assert _post(stack, "/search", {"target": "RADIO"}).json() == ["apex_archive::apex_radiometer"]
    assert _post(stack, "/search", data="").status_code == 200


def test_query_timeserie_matches_server_data(stack, bridge, client):
    end = float(int(time.time()))  # whole seconds: the ISO range sent is exactly this one
    start = end - 6 * 3600
    targets = [f"apex_archive::{f}" for f in FIELDS]
    r = _post(stack, "/query", _body(start, end, targets, max_points=100_000))
    assert r.status_code == 200
    answer = {s["target"]: s for s in r.json()}
    raw = client.data("apex_archive", FIELDS, start, end)
    for field in FIELDS:
        points = np.array(answer[f"apex_archive::{field}"]["datapoints"], dtype=float)
        assert answer[f"apex_archive::{field}"]["refId"] == f"apex_archive::{field}"
        assert len(points) == len(raw[field].t) > 0
        assert np.array_equal(points[:, 0], raw[field].values)
        assert np.array_equal(points[:, 1], raw[field].t * 1000.0)
        assert np.all(np.diff(points[:, 1]) > 0)


def test_query_table(stack, bridge):
    end = time.time()
    body = _body(end - 24 * 3600, end, [{"target": "apex_archive::apex_pressure", "type": "table", "refId": "T"}])
    (table,) = _post(stack, "/query", body).json()
    assert table["type"] == "table" and table["refId"] == "T"
    assert [c["text"] for c in table["columns"]] == ["Time", "apex_archive::apex_pressure"]
    rows = np.array(table["rows"])
    assert 20 <= len(rows) <= 25 and np.all(rows[:, 1] > 500)


@pytest.mark.parametrize("max_points", [50, 333, 1000])
def test_downsampling_bounded_and_keeps_spikes(stack, bridge, client, max_points):
    end = time.time()
    start = end - 14 * 86400
    raw = client.data("apex_archive", ["apex_radiometer"], start, end)["apex_radiometer"]
    assert len(raw.t) > 10_000
    r = _post(stack, "/query", _body(start, end, ["apex_archive::apex_radiometer"], max_points))
    points = np.array(r.json()[0]["datapoints"], dtype=float)
    assert 0 < len(points) <= max_points
    values = points[:, 0]
    assert raw.values.max() in values and raw.values.min() in values
    spikes = np.sort(raw.values)[-3:]  # the generator puts three spikes in each field
    assert set(spikes) <= set(values)
    assert set(values) <= set(raw.values)


def test_unknown_targets_give_empty_series_others_intact(stack, bridge):
    end = time.time()
    targets = ["apex_archive::apex_pressure", "no_such_node::x", "apex_archive::no_such_field", "malformed"]
    series = _post(stack, "/query", _body(end - 6 * 3600, end, targets)).json()
    assert [s["target"] for s in series] == targets
    assert len(series[0]["datapoints"]) >= 5
    assert [s["datapoints"] for s in series[1:]] == [[], [], []]


@pytest.mark.parametrize("data,reason", [
    ("{not json", "not valid JSON"),
    ("", "empty"),
    ('{"targets": []}', "missing range"),
    ('{"range": {"from": "soon", "to": "later"}}', "ISO 8601"),
    ('[1, 2]', "JSON object"),
])
def test_bad_requests_get_400_with_reason(stack, bridge, data, reason):
    r = requests.post(stack.http + "/query", data=data, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400
    message = r.json()["message"]
    assert reason in message and "\n" not in message and "Traceback" not in r.text


def test_annotations_and_tags(stack, bridge):
    for path in ("/annotations", "/tag-keys", "/tag-values"):
        r = _post(stack, path, {"annotation": {"name": "x"}})
        assert r.status_code == 200 and r.json() == []


def test_unknown_path_and_method(stack, bridge):
    assert requests.get(stack.http + "/nope", timeout=5).status_code == 404
    r = requests.get(stack.http + "/query", timeout=5)
    assert r.status_code == 405 and "message" in r.json()


def test_body_too_large(stack, bridge):
    r = requests.post(stack.http + "/search", data=b"x" * (1024 * 1024 + 10), timeout=10)
    assert r.status_code == 413


def test_json_datasource_metrics_and_payload_options(stack, bridge):
    r = _post(stack, "/metrics", {"metric": "radio", "payload": {}})
    assert r.status_code == 200 and r.json() == [{"label": "apex_archive::apex_radiometer",
                                                  "value": "apex_archive::apex_radiometer"}]
    assert {m["value"] for m in _post(stack, "/metrics", {}).json()} >= {f"apex_archive::{f}" for f in FIELDS}
    assert _post(stack, "/metric-payload-options", {"metric": "apex_archive::apex_pressure"}).json() == []
    assert _post(stack, "/metrics", {"metric": 5}).status_code == 400


def test_json_datasource_variables(stack, bridge):
    nodes = [v["__value"] for v in _post(stack, "/variable", {"payload": {"target": ""}}).json()]
    assert "apex_archive" in nodes
    fields = [v["__value"] for v in _post(stack, "/variable", {"payload": {"target": "apex_archive::"}}).json()]
    assert fields == sorted(FIELDS)
    press = _post(stack, "/variable", {"payload": {"target": "apex_archive::press"}}).json()
    assert press == [{"__text": "apex_pressure", "__value": "apex_pressure"}]
    assert _post(stack, "/variable", {"payload": {"target": "no_node::"}}).json() == []
    assert _post(stack, "/variable", {"payload": {"target": ["x"]}}).status_code == 400
