"""``sisock dashboard``: the builder on its own, then the generated queries
run against the real bridge the way Grafana would run them."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
import urllib.parse

import pytest
import requests

from sisock.components import cli
from sisock.components import dashboard as dash

from procs import free_port

SISOCK = os.path.join(os.path.dirname(sys.executable), "sisock")
APEX = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]


def _field(node, field, units, type="number"):
    return {"target": f"{node}::{field}", "node": node, "field": field, "units": units, "type": type,
            "description": None}


FIELDS = [
    _field("apex_archive", "apex_humidity", "%"),
    _field("apex_archive", "apex_pressure", "mBar"),
    _field("apex_archive", "apex_radiometer", "mm"),
    _field("apex_archive", "apex_temperature", "C"),
    _field("apex_archive", "apex_windspeed", "km/h"),
    _field("cryo", "stage_1k", "K"),
    _field("cryo", "stage_4k", "K"),
    _field("cryo", "status", None, type="string"),
    _field("site", "ambient", "degC"),
    _field("site", "gauge", "Torr"),
    _field("site", "counter", None),
]


def build(fields=FIELDS, **kw):
    kw.setdefault("title", "test board")
    return dash.dashboard(dash.select(fields), **kw)


def check_dashboard(doc, plugin, ds_uid):
    """What Grafana needs to load the file and what keeps it tidy: returns
    every (panel, target) pair for further checks."""
    assert isinstance(doc["schemaVersion"], int) and doc["schemaVersion"] >= 36
    assert doc["id"] is None and doc["uid"] and len(doc["uid"]) <= dash.MAX_UID
    assert doc["tags"] == ["sisock"] and doc["timezone"] and doc["refresh"]
    assert set(doc["time"]) == {"from", "to"}
    assert isinstance(doc["templating"]["list"], list) and isinstance(doc["annotations"]["list"], list)
    assert json.loads(dash.to_json(doc)) == doc
    ids = [p["id"] for p in doc["panels"]]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    boxes = []
    for p in doc["panels"]:
        g = p["gridPos"]
        assert p["type"] == "timeseries"
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24
        boxes.append((g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], f"{a} overlaps {b}"
    pairs = []
    ref = {"type": plugin, "uid": ds_uid}
    for p in doc["panels"]:
        assert p["datasource"] == ref
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(set(refs)) == len(refs)
        for t in p["targets"]:
            assert t["datasource"] == ref
            pairs.append((p, t))
    return pairs


def _overrides(panel):
    return {(o["matcher"]["id"], o["matcher"]["options"]): {x["id"]: x["value"] for x in o["properties"]}
            for o in panel["fieldConfig"]["overrides"]}


# -- the builder -----------------------------------------------------------


@pytest.mark.parametrize("datasource", list(dash.DATASOURCES))
def test_structure_for_each_datasource(datasource):
    doc = build(datasource=datasource, datasource_uid="ds-1")
    pairs = check_dashboard(doc, dash.DATASOURCES[datasource], "ds-1")
    assert len(pairs) == 10  # every numeric field, once
    assert len({p["gridPos"]["y"] for p in doc["panels"]}) == 2  # three panels: two rows


@pytest.mark.parametrize("units, grafana", [
    ("C", "celsius"), ("degC", "celsius"), ("°C", "celsius"), ("K", "kelvin"), ("%", "percent"),
    ("hPa", "pressurehpa"), ("mbar", "pressurembar"), ("mBar", "pressurembar"), ("Pa", "pressurepa"),
    ("bar", "pressurebar"), ("m/s", "velocityms"), ("km/h", "velocitykmh"), ("deg", "degree"),
    ("°", "degree"), ("V", "volt"), ("A", "amp"), ("W", "watt"), ("Hz", "hertz"), ("s", "s"),
    ("mm", "lengthmm"), (" hPa ", "pressurehpa"), ("Torr", "suffix: Torr"), ("S", "suffix: S"),
    (None, None), ("", None), ("  ", None),
])
def test_unit_mapping(units, grafana):
    assert dash.grafana_unit(units) == grafana


def test_group_by_node_units_and_legends():
    doc = build()
    panels = {p["title"]: p for p in doc["panels"]}
    assert list(panels) == ["apex_archive", "cryo", "site"]

    apex = panels["apex_archive"]
    assert [urllib.parse.parse_qs(urllib.parse.urlsplit(t["url"]).query)["target"] for t in apex["targets"]] \
        == [[f"apex_archive::{f}"] for f in APEX]
    assert "unit" not in apex["fieldConfig"]["defaults"]  # mixed units: per series
    over = _overrides(apex)
    refs = {t["refId"]: t for t in apex["targets"]}
    assert over[("byFrameRefID", "D")] == {"displayName": "apex_temperature", "unit": "celsius"}
    assert refs["D"]["url"].split("?")[1].startswith("target=apex_archive%3A%3Aapex_temperature&")
    assert over[("byFrameRefID", "B")]["unit"] == "pressurembar"

    cryo = panels["cryo"]  # one unit: on the panel, the string field left out
    assert cryo["fieldConfig"]["defaults"]["unit"] == "kelvin"
    assert [t["refId"] for t in cryo["targets"]] == ["A", "B"]
    assert all("unit" not in props for props in _overrides(cryo).values())

    site = _overrides(panels["site"])  # a field without units gets no unit override
    assert [props.get("unit") for props in site.values()] == ["celsius", None, "suffix: Torr"]


def test_group_by_unit_merges_spellings_and_names_series_fully():
    doc = build(group_by="unit")
    panels = {p["title"]: p for p in doc["panels"]}
    assert set(panels) == {"%", "C", "K", "Torr", "km/h", "mBar", "mm", "no units"}
    celsius = panels["C"]
    assert celsius["fieldConfig"]["defaults"]["unit"] == "celsius"
    names = [props["displayName"] for props in _overrides(celsius).values()]
    assert names == ["apex_archive::apex_temperature", "site::ambient"]
    assert "unit" not in panels["no units"]["fieldConfig"]["defaults"]
    check_dashboard(doc, dash.DATASOURCES["infinity"], dash.DEFAULT_DATASOURCE_UID)


def test_simplejson_targets_and_overrides_by_name():
    doc = build(datasource="simplejson", fields=[f for f in FIELDS if f["node"] == "apex_archive"])
    (panel,) = doc["panels"]
    assert panel["gridPos"] == {"h": dash.PANEL_HEIGHT, "w": 24, "x": 0, "y": 0}
    first = panel["targets"][0]
    assert {k: first[k] for k in ("target", "refId", "type")} == \
        {"target": "apex_archive::apex_humidity", "refId": "A", "type": "timeserie"}
    assert _overrides(panel)[("byName", "apex_archive::apex_pressure")] == {"unit": "pressurembar"}


def test_infinity_target_model():
    doc = build(grafana_url="http://sisock-http:5000/")
    target = doc["panels"][0]["targets"][0]
    assert {k: target[k] for k in ("type", "source", "parser", "format")} == \
        {"type": "json", "source": "url", "parser": "backend", "format": "timeseries"}
    assert target["url_options"]["method"] == "GET"
    assert target["url"] == ("http://sisock-http:5000/api/v1/data?target=apex_archive%3A%3Aapex_humidity"
                             "&from=${__from}&to=${__to}&intervalMs=${__interval_ms}")
    assert {c["selector"]: c["type"] for c in target["columns"]} == {"time": "timestamp_epoch", "value": "number"}


def test_selection_by_node_and_glob():
    def targets(nodes=(), patterns=()):
        return [f["target"] for f in dash.select(FIELDS, nodes, patterns)]

    assert targets(["cryo"]) == ["cryo::stage_1k", "cryo::stage_4k"]
    assert targets(["cryo", "site"]) == ["cryo::stage_1k", "cryo::stage_4k", "site::ambient", "site::counter",
                                         "site::gauge"]
    assert targets(patterns=["*::*temp*", "site::a*"]) == ["apex_archive::apex_temperature", "site::ambient"]
    assert targets(["apex_archive"], ["*::stage_*"]) == []  # both must hold
    assert targets(patterns=["*::STAGE_*"]) == []  # case matters, as in the bridge's names
    assert targets(patterns=["cryo::status"]) == []  # strings cannot be plotted
    assert len(targets()) == 10
    assert dash.unmatched(FIELDS, ["cryo", "cyro"], ["*::stage_*", "nope::*"]) == [
        "no numeric fields on node 'cyro'", "no numeric fields match 'nope::*'"]


def test_output_is_deterministic():
    shuffled = FIELDS[:]
    random.Random(4).shuffle(shuffled)
    assert dash.to_json(build(shuffled)) == dash.to_json(build())
    assert dash.default_uid("test board") == build()["uid"]
    assert dash.default_uid("Other board") != build()["uid"]
    long = dash.default_uid("A very long dashboard title " * 5)
    assert len(long) <= dash.MAX_UID and long.startswith("a-very-long-dashboard-title")
    assert build(uid="given")["uid"] == "given"


def test_ref_ids_continue_past_z():
    assert [dash.ref_id(i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == \
        ["A", "B", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]


def test_cli_arguments():
    args = cli.build_parser().parse_args(["dashboard", "--node", "a", "--node", "b", "--match", "x::*"])
    assert (args.url, args.node, args.match, args.datasource, args.group_by, args.grafana_url) == \
        (dash.DEFAULT_URL, ["a", "b"], ["x::*"], "infinity", "node", None)
    assert dash.default_title(args.node) == "sisock: a, b"
    for bad in (["--uid", "has space"], ["--uid", "x" * 41], ["--datasource", "influx"], ["--group-by", "x"]):
        with pytest.raises(SystemExit) as exc:
            cli.build_parser().parse_args(["dashboard", *bad])
        assert exc.value.code == 2


# -- through the real bridge -----------------------------------------------


def sisock_dashboard(*args):
    return subprocess.run([SISOCK, "dashboard", *args], capture_output=True, text=True, timeout=120)


def _finite(values):
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _run_infinity(url, start_ms, end_ms):
    """The URL as Grafana sends it: variables filled in, then a plain GET."""
    interval = (end_ms - start_ms) // 1000
    url = (url.replace("${__from}", str(start_ms)).replace("${__to}", str(end_ms))
           .replace("${__interval_ms}", str(interval)))
    assert "${" not in url
    r = requests.get(url, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _run_simplejson(base, target, start_ms, end_ms):
    def iso(ms):
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ms / 1000))

    body = {"range": {"from": iso(start_ms), "to": iso(end_ms)}, "maxDataPoints": 1000,
            "targets": [{k: target[k] for k in ("target", "refId", "type")}]}
    r = requests.post(base + "/query", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("datasource, group_by", [("infinity", "node"), ("infinity", "unit"),
                                                  ("simplejson", "node")])
def test_every_generated_query_returns_data(stack, bridge, tmp_path, datasource, group_by):
    out = tmp_path / "board.json"
    args = ["--url", stack.http, "--datasource", datasource, "--group-by", group_by, "--node", "apex_archive"]
    if datasource == "infinity":
        result = sisock_dashboard(*args, "-o", str(out))
        assert result.returncode == 0 and result.stdout == "", result.stderr
        doc = json.loads(out.read_text(encoding="utf-8"))
    else:
        result = sisock_dashboard(*args)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
    pairs = check_dashboard(doc, dash.DATASOURCES[datasource], dash.DEFAULT_DATASOURCE_UID)

    end_ms = int(time.time() * 1000)
    start_ms = end_ms - 24 * 3600 * 1000
    seen = set()
    for _panel, target in pairs:
        if datasource == "infinity":
            rows = _run_infinity(target["url"], start_ms, end_ms)
            assert rows, target["url"]
            assert all(set(row) == {"time", "value"} for row in rows)  # exactly the columns the target reads
            assert _finite([row["value"] for row in rows]) and _finite([row["time"] for row in rows])
            assert start_ms - 1 <= rows[0]["time"] and rows[-1]["time"] <= end_ms + 1
            seen.add(urllib.parse.parse_qs(urllib.parse.urlsplit(target["url"]).query)["target"][0])
        else:
            (answer,) = _run_simplejson(stack.http, target, start_ms, end_ms)
            assert answer["target"] == target["target"] and answer["datapoints"], target
            assert _finite([v for v, _t in answer["datapoints"]])
            seen.add(target["target"])
    assert seen == {f"apex_archive::{f}" for f in APEX}


def test_unknown_node_is_an_error(stack, bridge):
    result = sisock_dashboard("--url", stack.http, "--node", "no_such_node")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no_such_node" in result.stderr


def test_unreachable_bridge_is_a_one_line_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "board.json"
    result = sisock_dashboard("--url", url, "-o", str(out))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "cannot reach the bridge" in result.stderr and url in result.stderr
    assert not out.exists()


def test_bridge_errors_say_what_to_check(stack, bridge):
    with pytest.raises(dash.BridgeError, match="not an http"):
        dash.fetch_fields("localhost:5000")
    with pytest.raises(dash.BridgeError, match=r"HTTP 404.*without the /api/v1"):
        dash.fetch_fields(stack.http + "/elsewhere")
