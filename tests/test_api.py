"""The Infinity REST API (/api/v1) through the real stack, and its OpenAPI description."""

import time
from urllib.parse import quote

import numpy as np
import pytest
import requests

from sisock.components.http import openapi

NODE = "apex_archive"
FIELDS = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]


def _get(stack, path, **params):
    return requests.get(stack.http + path, params=params, timeout=30)


def _ms(t):
    return int(t * 1000)


def _one_line_error(r, status, *words):
    assert r.status_code == status, r.text
    message = r.json()["message"]
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message
    return message


def test_nodes(stack, bridge):
    nodes = _get(stack, "/api/v1/nodes").json()
    assert {"node": NODE, "fields": len(FIELDS)} in nodes
    assert [n["node"] for n in nodes] == sorted(n["node"] for n in nodes)
    assert _get(stack, "/api/v1/nodes", q="APEX_ARCH").json() == [{"node": NODE, "fields": len(FIELDS)}]
    assert _get(stack, "/api/v1/nodes", q="no-such-thing").json() == []


def test_fields_of_a_node_with_units(stack, bridge, client):
    rows = _get(stack, "/api/v1/fields", node=NODE).json()
    assert [r["field"] for r in rows] == FIELDS
    served, _timeline = client.fields(NODE)
    for row in rows:
        assert row["target"] == f"{NODE}::{row['field']}" and row["node"] == NODE
        assert row["units"] == served[row["field"]]["units"] and row["units"]
        assert row["type"] == "number"
    assert [r["field"] for r in _get(stack, "/api/v1/fields", node=NODE, q="temp").json()] == ["apex_temperature"]
    everything = _get(stack, "/api/v1/fields").json()
    assert {r["target"] for r in rows} <= {r["target"] for r in everything}


def test_fields_of_unknown_node_is_404(stack, bridge):
    _one_line_error(_get(stack, "/api/v1/fields", node="nobody"), 404, "nobody")


def test_data_rows_equal_the_data_node(stack, bridge, client):
    end = time.time()
    start = end - 6 * 3600
    raw = client.data(NODE, ["apex_temperature"], start, end)["apex_temperature"]
    rows = _get(stack, "/api/v1/data", target=f"{NODE}::apex_temperature", **{
        "from": _ms(start), "to": _ms(end), "maxDataPoints": 100_000}).json()
    assert len(rows) == len(raw.t) > 0
    assert all(set(r) == {"time", "value"} for r in rows)
    assert np.array_equal([r["time"] for r in rows], raw.t * 1000.0)
    assert np.array_equal([r["value"] for r in rows], raw.values)


def test_several_targets_are_long_rows_sorted_by_time(stack, bridge, client):
    end = time.time()
    start = end - 24 * 3600
    targets = [f"{NODE}::apex_pressure", f"{NODE}::apex_humidity"]
    r = requests.get(stack.http + "/api/v1/data", timeout=30, params=[
        *(("target", t) for t in targets), ("from", _ms(start)), ("to", _ms(end)), ("maxDataPoints", 100_000)])
    rows = r.json()
    times = [row["time"] for row in rows]
    assert times == sorted(times)
    raw = client.data(NODE, ["apex_pressure", "apex_humidity"], start, end)
    for target in targets:
        mine = [row for row in rows if row["series"] == target]
        field = target.split("::")[1]
        assert np.array_equal([row["value"] for row in mine], raw[field].values)
        assert np.array_equal([row["time"] for row in mine], raw[field].t * 1000.0)
    assert len(rows) == sum(len(raw[f].t) for f in raw)


def test_globs_expand_to_known_fields(stack, bridge):
    end = time.time()
    common = {"from": _ms(end - 3600), "to": _ms(end)}
    rows = _get(stack, "/api/v1/data", target=f"{NODE}::*", **common).json()
    assert {row["series"] for row in rows} == {f"{NODE}::{f}" for f in FIELDS}
    rows = _get(stack, "/api/v1/data", target="apex_arch?ve::apex_t*", **common).json()
    assert rows and all(set(row) == {"time", "value"} for row in rows)  # one field: no series column
    assert _get(stack, "/api/v1/data", target=f"{NODE}::nothing*", **common).json() == []


def test_max_points_and_interval_bound_the_answer(stack, bridge, client):
    end = time.time()
    start = end - 14 * 86400
    target = f"{NODE}::apex_radiometer"
    raw = client.data(NODE, ["apex_radiometer"], start, end)["apex_radiometer"]
    rows = _get(stack, "/api/v1/data", target=target, maxDataPoints=300, **{"from": _ms(start), "to": _ms(end)}).json()
    values = [r["value"] for r in rows]
    assert 0 < len(rows) <= 300
    assert raw.values.max() in values and raw.values.min() in values
    # Grafana's ${__interval_ms}: about one point per interval.
    interval_ms = 14 * 86400 * 1000 / 200
    rows = _get(stack, "/api/v1/data", target=target, intervalMs=interval_ms,
                **{"from": _ms(start), "to": _ms(end)}).json()
    assert 0 < len(rows) <= 200


def test_infinity_url_template_and_iso_times(stack, bridge):
    """The URL an Infinity panel holds, with Grafana's macros filled in."""
    end = time.time()
    template = (stack.http + "/api/v1/data?target=" + quote(f"{NODE}::apex_windspeed")
                + "&from=${__from}&to=${__to}&intervalMs=${__interval_ms}")
    url = (template.replace("${__from}", str(_ms(end - 6 * 3600))).replace("${__to}", str(_ms(end)))
           .replace("${__interval_ms}", "20000"))
    by_macro = requests.get(url, timeout=30).json()
    assert 0 < len(by_macro) <= 6 * 3600 / 20
    iso = _get(stack, "/api/v1/data", target=f"{NODE}::apex_windspeed", intervalMs=20000,
               **{"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(end) - 6 * 3600)),
                  "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(end)))}).json()
    assert len(iso) > 0
    default = _get(stack, "/api/v1/data", target=f"{NODE}::apex_windspeed").json()
    assert default and default[-1]["time"] - default[0]["time"] <= 6 * 3600 * 1000


def test_columns_format(stack, bridge, client):
    end = time.time()
    start = end - 6 * 3600
    body = _get(stack, "/api/v1/data", target=f"{NODE}::apex_temperature", format="columns",
                maxDataPoints=100_000, **{"from": _ms(start), "to": _ms(end)}).json()
    (series,) = body["series"]
    raw = client.data(NODE, ["apex_temperature"], start, end)["apex_temperature"]
    assert series["target"] == f"{NODE}::apex_temperature" and series["units"]
    assert np.array_equal(series["time"], raw.t * 1000.0)
    assert np.array_equal(series["value"], raw.values)


def test_unknown_field_of_known_node_is_empty(stack, bridge):
    assert _get(stack, "/api/v1/data", target=f"{NODE}::no_such_field").json() == []


@pytest.mark.parametrize(("params", "status", "words"), [
    ({}, 400, ["target"]),
    ({"target": "no-separator"}, 400, ["node::field"]),
    ({"target": "nobody::x"}, 404, ["nobody"]),
    ({"target": f"{NODE}::apex_humidity", "from": "yesterday"}, 400, ["from"]),
    ({"target": f"{NODE}::apex_humidity", "from": "2000", "to": "1000"}, 400, ["later"]),
    ({"target": f"{NODE}::apex_humidity", "maxDataPoints": "many"}, 400, ["maxDataPoints"]),
    ({"target": f"{NODE}::apex_humidity", "maxDataPoints": "0"}, 400, ["maxDataPoints"]),
    ({"target": f"{NODE}::apex_humidity", "intervalMs": "-5"}, 400, ["intervalMs"]),
    ({"target": f"{NODE}::apex_humidity", "format": "csv"}, 400, ["format"]),
])
def test_bad_parameters_get_one_line_errors(stack, bridge, params, status, words):
    _one_line_error(_get(stack, "/api/v1/data", **params), status, *words)


def test_openapi_document_is_served(stack, bridge):
    served = _get(stack, "/api/v1/openapi.json").json()
    assert served == openapi.SPEC
    assert set(served["paths"]) == {"/api/v1/nodes", "/api/v1/fields", "/api/v1/data", "/api/v1/openapi.json"}


def test_every_route_of_the_blueprint_is_documented():
    from sisock.components.http.routes import create_app

    class Offline:
        link = None

    app = create_app(Offline())
    routes = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")}
    assert routes == set(openapi.SPEC["paths"])
