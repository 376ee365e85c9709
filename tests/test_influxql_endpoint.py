"""``/influxdb``: InfluxQL through the real stack (router, hub, bridge, a
g3-reader on an OCS-shaped archive, the example weather server).

Expected answers are computed here from the archive's known samples
(:func:`sisock.demo.g3.expected`) with plain numpy, bucket by bucket, not
with the bridge's own code.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import requests

from conftest import node_names
from g3_helpers import GAP, START, make_archive, scan
from procs import wait_for

HOURS = 3
THERM = "observatory.therm1"
GAUGE = "observatory.gauge2"
NS = 1_000_000_000


@pytest.fixture(scope="module")
def g3(stack, client, bridge, tmp_path_factory):
    """The g3-reader on a 3-hour archive (SQLite index); the samples it holds."""
    root = tmp_path_factory.mktemp("influxql-g3")
    env = {"SISOCK_STATE_DIR": str(root / "state"), "DATA_DIRECTORY": str(root / "data")}
    _, truth = make_archive(root / "data", hours=HOURS)
    scan(env, root / "data")
    reader = stack.proc("g3-reader-influxql", "sisock-g3-reader-server", env=env).start()
    try:
        wait_for(lambda: "g3_reader" in node_names(client), 30, "g3_reader to register")
        wait_for(lambda: THERM in _names(stack, "SHOW MEASUREMENTS"), 30, "the bridge to list the archive")
        yield truth
    finally:
        reader.stop()


def _get(stack, q, **params):
    return requests.get(stack.http + "/influxdb/query", params={"db": "ocs_feeds", "q": q, **params}, timeout=60)


def _query(stack, q, **params):
    r = _get(stack, q, **params)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def _names(stack, q):
    (result,) = _query(stack, q)
    return [row[0] for s in result.get("series", []) for row in s["values"]]


def _ms(t):
    return int(t * 1000)


def _range(a, b):
    return f"time >= {_ms(a)}ms and time <= {_ms(b)}ms"


def _truth(truth, channel, provider="observatory.therm1.feeds.temperatures"):
    t, v = truth[f"{provider}.{channel}"]
    return (np.asarray(t) * 1e9).astype(np.int64), np.asarray(v, dtype=np.float64)


def _buckets(t_ns, v, a_ns, b_ns, interval_ns):
    """``{bucket start: samples}`` of the samples in [a, b], epoch-aligned."""
    keep = (t_ns >= a_ns) & (t_ns <= b_ns)
    t_ns, v = t_ns[keep], v[keep]
    out = {}
    for t, x in zip((t_ns // interval_ns * interval_ns).tolist(), v.tolist(), strict=True):
        out.setdefault(t, []).append(x)
    return out


# -- SHOW ---------------------------------------------------------------------

def test_ping_answers_204_with_the_version_header(stack, bridge):
    r = requests.get(stack.http + "/influxdb/ping", timeout=5)
    assert r.status_code == 204 and r.headers["X-Influxdb-Version"].startswith("1.")


def test_show_databases_and_retention_policies(stack, bridge):
    assert _query(stack, "SHOW DATABASES") == [
        {"statement_id": 0, "series": [{"name": "databases", "columns": ["name"], "values": [["ocs_feeds"]]}]}]
    (result,) = _query(stack, 'SHOW RETENTION POLICIES ON "ocs_feeds"')
    (series,) = result["series"]
    assert series["columns"] == ["name", "duration", "shardGroupDuration", "replicaN", "default"]
    assert series["values"][0][0] == "autogen" and series["values"][0][-1] is True


def test_show_measurements_maps_ocs_names_and_other_nodes(stack, g3):
    names = _names(stack, "SHOW MEASUREMENTS")
    assert {THERM, GAUGE, "apex_archive"} <= set(names) and names == sorted(names)
    assert _names(stack, "SHOW MEASUREMENTS WITH MEASUREMENT =~ /therm/") == [THERM]
    assert _names(stack, "SHOW MEASUREMENTS LIMIT 1") == names[:1]
    assert _query(stack, "SHOW MEASUREMENTS WITH MEASUREMENT =~ /nothing-like-this/") == [{"statement_id": 0}]


def test_show_field_and_tag_keys_and_values(stack, g3):
    (result,) = _query(stack, f'SHOW FIELD KEYS FROM "{THERM}"')
    assert result["series"] == [{"name": THERM, "columns": ["fieldKey", "fieldType"],
                                 "values": [["ch1_t", "float"], ["ch2_t", "float"], ["ch3_t", "float"]]}]
    (result,) = _query(stack, f'SHOW TAG KEYS FROM "{THERM}"')
    assert result["series"] == [{"name": THERM, "columns": ["tagKey"], "values": [["feed"]]}]
    (result,) = _query(stack, f'SHOW TAG VALUES FROM "{GAUGE}" WITH KEY = "feed"')
    assert result["series"] == [{"name": GAUGE, "columns": ["key", "value"], "values": [["feed", "pressures"]]}]
    (result,) = _query(stack, 'SHOW FIELD KEYS FROM "apex_archive"')
    assert ["apex_temperature", "float"] in result["series"][0]["values"]
    (result,) = _query(stack, 'SHOW TAG KEYS FROM "apex_archive"')
    assert result == {"statement_id": 0}
    (result,) = _query(stack, "SHOW SERIES FROM /^observatory/ WHERE \"feed\" =~ /^temp/")
    assert result["series"] == [{"columns": ["key"], "values": [[f"{THERM},feed=temperatures"]]}]


# -- SELECT with GROUP BY time ---------------------------------------------------

AGGREGATES = {
    "mean": lambda xs: sum(xs) / len(xs), "max": max, "min": min, "first": lambda xs: xs[0],
    "last": lambda xs: xs[-1], "count": len, "sum": sum, "median": lambda xs: float(np.median(xs)),
    "spread": lambda xs: max(xs) - min(xs),
    "stddev": lambda xs: float(np.std(xs, ddof=1)) if len(xs) > 1 else None,
}


@pytest.mark.parametrize("function", sorted(AGGREGATES))
def test_group_by_time_matches_the_samples_with_null_fill(stack, g3, function):
    a, b = START + 1234.5, START + 2 * 3600 + 17.25  # crosses the archive's gap
    interval = 600
    (result,) = _query(stack, f'SELECT {function}("ch2_t") FROM "{THERM}" WHERE {_range(a, b)} '
                              f"GROUP BY time(10m) fill(null)", epoch="ms")
    (series,) = result["series"]
    assert series["name"] == THERM and series["columns"] == ["time", function] and "tags" not in series
    t_ns, v = _truth(g3, "ch2_t")
    have = _buckets(t_ns, v, _ms(a) * 1_000_000, _ms(b) * 1_000_000, interval * NS)
    first = _ms(a) // (interval * 1000) * interval * 1000
    want_times = list(range(first, _ms(b) + 1, interval * 1000))
    assert [row[0] for row in series["values"]] == want_times
    empty = 0 if function == "count" else None
    for t, value in series["values"]:
        xs = have.get(t * 1_000_000)
        if xs is None:
            assert value == empty, t
        else:
            assert value == pytest.approx(AGGREGATES[function](xs), rel=1e-12), t
    # the gap holds empty buckets: the test covers null filling
    assert any(GAP[0] * 1000 <= t < GAP[1] * 1000 - interval * 1000 for t in want_times)


def test_fill_none_previous_and_number(stack, g3):
    a, b = GAP[0] - 1800, GAP[1] + 1800
    base = f'SELECT max("ch1_t") FROM "{THERM}" WHERE {_range(a, b)} GROUP BY time(5m)'
    none = _query(stack, base + " fill(none)", epoch="s")[0]["series"][0]["values"]
    null = _query(stack, base + " fill(null)", epoch="s")[0]["series"][0]["values"]
    prev = _query(stack, base + " fill(previous)", epoch="s")[0]["series"][0]["values"]
    zero = _query(stack, base + " fill(-7)", epoch="s")[0]["series"][0]["values"]
    assert len(none) < len(null) == len(prev) == len(zero)
    assert [r for r in null if r[1] is not None] == none
    last = None
    for n, p, z in zip(null, prev, zero, strict=True):
        last = n[1] if n[1] is not None else last
        assert p == [n[0], last] and z == [n[0], -7 if n[1] is None else n[1]]


def test_group_by_time_offset_and_several_functions(stack, g3):
    a, b = START + 100, START + 3000
    q = (f'SELECT mean("ch1_t"), mean("ch1_t") AS "avg", max("ch1_t"), mean("ch1_t") FROM "{THERM}" '
         f"WHERE {_range(a, b)} GROUP BY time(15m, 5m) fill(none)")
    (series,) = _query(stack, q, epoch="ms")[0]["series"]
    assert series["columns"] == ["time", "mean", "avg", "max", "mean_1"]
    t_ns, v = _truth(g3, "ch1_t")
    offset = 300 * NS
    have = _buckets(t_ns - offset, v, _ms(a) * 1_000_000 - offset, _ms(b) * 1_000_000 - offset, 900 * NS)
    want = [[(k + offset) // 1_000_000, sum(xs) / len(xs), sum(xs) / len(xs), max(xs), sum(xs) / len(xs)]
            for k, xs in sorted(have.items())]
    assert series["values"] == [pytest.approx(row, rel=1e-12) for row in want]


def test_group_by_tag_names_the_series_with_its_tags(stack, g3):
    a, b = START, START + 600
    (result,) = _query(stack, f'SELECT count("ch1_t") FROM /^observatory\\./ WHERE {_range(a, b)} '
                              'GROUP BY time(10m), "feed" fill(none)', epoch="s")
    (series,) = result["series"]  # only therm1 has ch1_t
    assert series["name"] == THERM and series["tags"] == {"feed": "temperatures"}
    t_ns, v = _truth(g3, "ch1_t")
    have = _buckets(t_ns, v, int(a) * NS, int(b) * NS, 600 * NS)
    assert len(have) == 2  # the range starts inside a bucket
    assert series["values"] == [[k // NS, len(xs)] for k, xs in sorted(have.items())]


def test_selector_without_group_by_has_the_samples_time(stack, g3):
    a, b = START + 10, START + 2000
    t_ns, v = _truth(g3, "ch3_t")
    keep = (t_ns >= a * NS) & (t_ns <= b * NS)
    t_ns, v = t_ns[keep], v[keep]
    (series,) = _query(stack, f'SELECT max("ch3_t") FROM "{THERM}" WHERE {_range(a, b)}', epoch="ns")[0]["series"]
    i = int(np.argmax(v))
    assert series["values"] == [[int(t_ns[i]), float(v[i])]]
    (series,) = _query(stack, f'SELECT mean("ch3_t"), last("ch3_t") FROM "{THERM}" WHERE {_range(a, b)}',
                       epoch="ns")[0]["series"]
    assert series["values"] == [[int(a * NS), pytest.approx(float(v.mean()), rel=1e-12), float(v[-1])]]


def test_series_longer_than_influxdbs_chunk_are_marked_partial(stack, g3):
    q = f'SELECT mean("ch1_t") FROM "{THERM}" WHERE time >= {int(START)}s AND time <= {int(START)}s + {{}}s ' \
        "GROUP BY time(1s) fill(null)"
    (series,) = _query(stack, q.format(9999), epoch="s")[0]["series"]
    assert len(series["values"]) == 10000 and "partial" not in series
    (series,) = _query(stack, q.format(10000), epoch="s")[0]["series"]
    assert len(series["values"]) == 10001 and series["partial"] is True
    assert list(series) == ["name", "columns", "values", "partial"]


def test_times_are_rfc3339_without_epoch(stack, g3):
    a = START + 60
    (series,) = _query(stack, f'SELECT "ch1_t" FROM "{THERM}" WHERE time >= {_ms(a)}ms LIMIT 2')[0]["series"]
    stamp = datetime.fromtimestamp(a, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert series["columns"] == ["time", "ch1_t"] and series["values"][0][0] == stamp


def test_raw_select_limit_and_order(stack, g3):
    a, b = START + 100, START + 200
    t_ns, v = _truth(g3, "p_main", "observatory.gauge2.feeds.pressures")
    keep = (t_ns >= a * NS) & (t_ns <= b * NS)
    rows = [[t // 1_000_000, x] for t, x in zip(t_ns[keep].tolist(), v[keep].tolist(), strict=True)]
    q = f'SELECT "p_main" FROM "{GAUGE}" WHERE {_range(a, b)}'
    assert _query(stack, q, epoch="ms")[0]["series"][0]["values"] == rows
    assert _query(stack, q + " LIMIT 3", epoch="ms")[0]["series"][0]["values"] == rows[:3]
    assert _query(stack, q + " ORDER BY time DESC LIMIT 2", epoch="ms")[0]["series"][0]["values"] == rows[::-1][:2]


def test_qualified_names_relative_times_and_several_statements(stack, g3):
    q = (f'SELECT last("ch1_t") FROM "ocs_feeds"."autogen"."{THERM}" WHERE time > now() - 100000d; '
         f'SELECT last("ch1_t") FROM "autogen"."{THERM}" WHERE time > \'2023-11-14T00:00:00Z\'')
    first, second = _query(stack, q, epoch="s")
    t_ns, v = _truth(g3, "ch1_t")
    assert first["statement_id"] == 0 and second["statement_id"] == 1
    assert first["series"][0]["values"] == second["series"][0]["values"] == [[int(t_ns[-1] // NS), float(v[-1])]]


def test_empty_answer_shape(stack, g3):
    q = f'SELECT mean("ch1_t") FROM "{THERM}" WHERE time >= 0ms and time <= 1000ms GROUP BY time(1s)'
    assert _query(stack, q) == [{"statement_id": 0}]
    assert _query(stack, f'SELECT mean("nope") FROM "{THERM}" WHERE time >= 0ms') == [{"statement_id": 0}]


# -- errors --------------------------------------------------------------------------

def test_parse_errors_are_400_with_influxdb_shape(stack, bridge):
    r = _get(stack, "SELEKT 1")
    assert r.status_code == 400 and r.json()["error"].startswith("error parsing query: ")
    r = requests.get(stack.http + "/influxdb/query", timeout=10)
    assert r.status_code == 400 and r.json() == {"error": 'missing required parameter "q"'}


def test_overly_nested_statements_are_refused_in_one_line(stack, bridge):
    q = 'SELECT mean("x") FROM "m" WHERE ' + " OR ".join(["\"t\" = 'v'"] * 5000)
    r = requests.post(stack.http + "/influxdb/query", data={"db": "ocs_feeds", "q": q}, timeout=60)
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert "nested too deeply" in result["error"]


def test_statement_errors_stop_the_query(stack, bridge):
    r = requests.get(stack.http + "/influxdb/query", params={"q": "SHOW MEASUREMENTS; SHOW DATABASES"}, timeout=10)
    assert r.status_code == 200
    assert r.json()["results"] == [{"statement_id": 0, "error": "database name required"},
                                   {"statement_id": 1, "error": "not executed"}]
    results = _query(stack, 'SELECT mean("x") FROM "other"."m"; SELECT mode("x") FROM "m"; SHOW DATABASES')
    assert results[0] == {"statement_id": 0, "error": "retention policy not found: other"}
    results = _query(stack, 'SELECT mode("x") FROM "m"')
    assert results[0]["error"].startswith("mode() is not supported")
    results = _query(stack, 'SELECT nonsense("x") FROM "m"')
    assert results[0]["error"] == "undefined function nonsense()"
    (result,) = _query(stack, 'SHOW MEASUREMENTS ON "not_there"')
    assert result == {"statement_id": 0, "error": "database not found: not_there"}
    for q, words in (('SELECT mean("x") FROM "m" GROUP BY time(0s)', "positive interval"),
                     ('SELECT mean("x") FROM "m" GROUP BY time(-1m)', "positive interval"),
                     ("SELECT mean(\"x\") FROM \"m\" tz('Europe/Paris')", "tz('Europe/Paris') is not supported"),
                     ('SELECT "x" FROM "m" fill(none)', "fill(none) must be used with a function"),
                     ('SELECT derivative(mean("x")) FROM "m"', "derivative aggregate requires a GROUP BY interval"),
                     ('SELECT derivative("x") FROM "m" GROUP BY time(1m)',
                      "aggregate function required inside the call to derivative"),
                     ('SELECT moving_average(mean("x"), 1) FROM "m" GROUP BY time(1m)',
                      "moving_average window must be greater than 1")):
        (result,) = _query(stack, q)
        assert words in result["error"], q
    assert _query(stack, ";") == []


def test_answers_too_large_are_statement_errors(stack, g3):
    q = f'SELECT mean("ch1_t") FROM "{THERM}" WHERE time >= 0ms and time <= now() GROUP BY time(1ms)'
    (result,) = _query(stack, q)
    assert "MAX_ANSWER_POINTS" in result["error"]


def test_post_form_is_answered_like_get(stack, g3):
    q = f'SELECT count("ch1_t") FROM "{THERM}" WHERE {_range(START, START + 59)}'
    r = requests.post(stack.http + "/influxdb/query", data={"db": "ocs_feeds", "q": q, "epoch": "s"}, timeout=30)
    assert r.status_code == 200 and r.json()["results"][0]["series"][0]["values"] == [[int(START), 60]]


def test_strict_time_bounds_leave_out_the_samples_on_them(stack, g3):
    a, b = int(START) + 600, int(START) + 1200  # ch1_t has samples at both
    t_ns, _ = _truth(g3, "ch1_t")
    for cond, lo, hi in ((f"time >= {_ms(a)}ms and time < {_ms(b)}ms", a * NS, b * NS - 1),
                         (f"time > {_ms(a)}ms and time <= {_ms(b)}ms", a * NS + 1, b * NS)):
        (series,) = _query(stack, f'SELECT count("ch1_t") FROM "{THERM}" WHERE {cond}')[0]["series"]
        assert series["values"][0][1] == int(((t_ns >= lo) & (t_ns <= hi)).sum()), cond


# -- dashboards --------------------------------------------------------------------

def _render(target, start_ms, end_ms, interval):
    """The InfluxQL Grafana's query builder makes of a target (InfluxQueryModel.render)."""
    (field, function), = [[part["params"][0] if part["type"] == "field" else part["type"] for part in sel]
                          for sel in target["select"]]
    where = "".join(f' {t.get("condition", "")} ("{t["key"]}" {t["operator"]} \'{t["value"]}\')'.replace("  ", " ")
                    for t in target["tags"]).strip()
    where = f"({where}) AND " if where else ""
    fill = [g["params"][0] for g in target["groupBy"] if g["type"] == "fill"][0]
    return (f'SELECT {function}("{field}") FROM "{target["measurement"]}" WHERE {where}'
            f"time >= {start_ms}ms and time <= {end_ms}ms GROUP BY time({interval}) fill({fill})")


def test_generated_influxdb_dashboard_queries_answer(stack, g3):
    import json
    import os
    import subprocess
    import sys

    sisock = os.path.join(os.path.dirname(sys.executable), "sisock")
    result = subprocess.run([sisock, "dashboard", "--url", stack.http, "--datasource", "influxdb",
                             "--node", "g3_reader", "--node", "apex_archive"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    targets = [t for p in doc["panels"] for t in p["targets"]]
    assert {t["measurement"] for t in targets} == {THERM, GAUGE, "apex_archive"}
    assert all(t["datasource"] == {"type": "influxdb", "uid": "sisock-influxdb"} for t in targets)
    seen = set()
    for target in targets:
        if target["measurement"] == "apex_archive":
            continue  # the weather replay's times move with the clock; its mapping is checked by SHOW
        assert target["tags"] == [{"key": "feed", "operator": "=",
                                   "value": "temperatures" if target["measurement"] == THERM else "pressures"}]
        q = _render(target, _ms(START), _ms(START + 3600), "1m")
        (series,) = _query(stack, q, epoch="ms")[0]["series"]
        assert series["name"] == target["measurement"] and len(series["values"]) == 61
        assert sum(v is not None for _t, v in series["values"]) > 50
        seen.add((target["measurement"], target["select"][0][0]["params"][0]))
    assert seen == {(THERM, "ch1_t"), (THERM, "ch2_t"), (THERM, "ch3_t"), (GAUGE, "p_main"), (GAUGE, "p_aux")}


# -- authentication -------------------------------------------------------------------

@pytest.fixture(scope="module")
def authed_bridge(stack, client, weather):
    from test_http_auth import PASSWORD, USER, _start_bridge

    proc, url = _start_bridge(stack, "http-auth-influxql", {"HTTP_AUTH_USER": USER, "HTTP_AUTH_PASSWORD": PASSWORD})
    yield url, USER, PASSWORD
    proc.stop()


def test_influxdb_credentials_as_url_parameters_or_basic_auth(authed_bridge):
    url, user, password = authed_bridge
    q = {"q": "SHOW MEASUREMENTS", "db": "ocs_feeds"}

    def get(path="/influxdb/query", **kw):
        return requests.get(url + path, timeout=20, **kw)

    assert get(params=q).status_code == 401
    assert get(params={**q, "u": user, "p": password + "x"}).status_code == 401
    assert get(params={**q, "u": user + "x", "p": password}).status_code == 401
    ok = get(params={**q, "u": user, "p": password})
    assert ok.status_code == 200 and "apex_archive" in str(ok.json())
    assert get(params=q, auth=(user, password)).status_code == 200
    assert get("/influxdb/ping").status_code == 204  # InfluxDB's health check stays open
    # u/p are InfluxDB's convention: the bridge's other routes want the header.
    assert get("/api/v1/nodes", params={"u": user, "p": password}).status_code == 401


# -- a live feed from a real OCS agent -------------------------------------------------

LIVE_ID = "fake-influxql1"


@pytest.fixture(scope="module")
def live(stack, client, bridge, tmp_path_factory):
    """The ocs package's FakeDataAgent publishing on the router (with its
    ``influxdb_tags``) and a data-feed server following it."""
    from sisock.components.ocs_site import AgentSpec

    from ocs_fixtures import OcsSite

    site = OcsSite(stack, tmp_path_factory.mktemp("influxql-ocs"),
                   [AgentSpec(LIVE_ID, "FakeDataAgent", ["--mode", "acq", "--num-channels", "2",
                                                         "--sample-rate", "5", "--frame-length", "2"])])
    feed = stack.proc("feed-influxql", "sisock-data-feed-server",
                      env={"TARGET": LIVE_ID, "FEED": "false_temperatures", "NAME": "fake_live",
                           "DESCRIPTION": "FakeDataAgent live feed"}).start()
    site.start(LIVE_ID)
    try:
        wait_for(lambda: "fake_live" in node_names(client), 30, "the data-feed server to register")

        def listed():
            (result,) = _query(stack, 'SHOW TAG VALUES FROM "FakeDataAgent" WITH KEY = "channel"')
            return len(result.get("series", [{}])[0].get("values", [])) == 2

        wait_for(listed, 90, "the bridge to list the live feed's channels")
        yield client
    finally:
        site.stop()
        feed.stop()


def test_a_live_feed_with_influxdb_tags_in_the_publishers_layout(stack, live):
    (result,) = _query(stack, 'SHOW FIELD KEYS FROM "FakeDataAgent"')
    assert result["series"] == [{"name": "FakeDataAgent", "columns": ["fieldKey", "fieldType"],
                                 "values": [["temperature", "float"]]}]
    (result,) = _query(stack, 'SHOW TAG KEYS FROM "FakeDataAgent"')
    assert result["series"][0]["values"] == [["address_root"], ["channel"], ["feed"], ["instance_id"]]
    (result,) = _query(stack, 'SHOW TAG VALUES FROM "FakeDataAgent" WITH KEY IN ("instance_id", "feed")')
    assert result["series"][0]["values"] == [["feed", "false_temperatures"], ["instance_id", LIVE_ID]]

    import time

    end = time.time() - 1
    start = end - 20
    raw = live.data("fake_live", ["channel_00", "channel_01"], start, end)
    q = (f'SELECT count("temperature"), mean("temperature"), last("temperature") FROM "FakeDataAgent" '
         f"WHERE \"instance_id\" = '{LIVE_ID}' AND time >= {int(start * 1e9)} AND time <= {int(end * 1e9)} "
         'GROUP BY "channel"')
    (result,) = _query(stack, q, epoch="ns")
    series = {s["tags"]["channel"]: s for s in result["series"]}
    assert sorted(series) == ["0", "1"]
    for channel, name in (("0", "channel_00"), ("1", "channel_01")):
        t_ns = (raw[name].t * 1e9).astype(np.int64)
        keep = (t_ns >= int(start * 1e9)) & (t_ns <= int(end * 1e9))
        values = raw[name].values[keep]
        assert len(values) >= 5  # the agent publishes a few samples a second (fewer on a busy machine)
        (row,) = series[channel]["values"]
        assert row[0] == int(start * 1e9) and row[1] == len(values)
        assert row[2] == pytest.approx(float(values.mean()), rel=1e-12) and row[3] == float(values[-1])


def test_percentile_is_the_nearest_rank_sample(stack, g3):
    a, b = START + 30, START + 1900
    t_ns, v = _truth(g3, "ch1_t")
    have = _buckets(t_ns, v, int(a) * NS, int(b) * NS, 600 * NS)
    q = f'SELECT percentile("ch1_t", 90) FROM "{THERM}" WHERE time >= {int(a)}s and time <= {int(b)}s'
    (series,) = _query(stack, q + " GROUP BY time(10m) fill(none)", epoch="s")[0]["series"]
    want = [[k // NS, sorted(xs)[int(np.floor(len(xs) * 0.9 + 0.5)) - 1]] for k, xs in sorted(have.items())]
    assert series["columns"] == ["time", "percentile"] and series["values"] == want
    (series,) = _query(stack, q, epoch="ns")[0]["series"]  # a selector: the sample's own time
    keep = (t_ns >= int(a) * NS) & (t_ns <= int(b) * NS)
    order = np.argsort(v[keep], kind="stable")
    i = int(np.floor(keep.sum() * 0.9 + 0.5)) - 1
    assert series["values"] == [[int(t_ns[keep][order[i]]), float(v[keep][order[i]])]]


def _means(g3, channel, lo_ns, hi_ns, interval_ns):
    t_ns, v = _truth(g3, channel)
    return [(k, sum(xs) / len(xs)) for k, xs in sorted(_buckets(t_ns, v, lo_ns, hi_ns, interval_ns).items())]


@pytest.mark.parametrize("function", ["derivative", "non_negative_derivative", "difference",
                                      "non_negative_difference", "cumulative_sum", "moving_average"])
def test_transformations_of_bucket_means(stack, g3, function):
    a, b = int(GAP[0]) - 1790, int(GAP[1]) + 1210  # the gap's empty buckets are skipped, not zeros
    interval = 300 * NS
    extra = 0 if function == "cumulative_sum" else 1  # InfluxDB 1.6 reads one bucket before the range
    pairs = _means(g3, "ch2_t", a * NS - extra * interval, b * NS, interval)
    want = []
    for i in range(1, len(pairs)):
        (t0, v0), (t1, v1) = pairs[i - 1], pairs[i]
        if function.endswith("derivative"):
            value = (v1 - v0) / ((t1 - t0) / NS)  # per second, as asked below
        elif function.endswith("difference"):
            value = v1 - v0
        else:
            continue
        if not (function.startswith("non_negative") and v1 - v0 < 0):
            want.append([t1 // NS, value])
    if function == "cumulative_sum":
        total = 0
        for t, v in pairs:
            total += v
            want.append([t // NS, total])
    if function == "moving_average":
        want = [[pairs[i][0] // NS, (pairs[i - 2][1] + pairs[i - 1][1] + pairs[i][1]) / 3]
                for i in range(2, len(pairs))]
    args = {"derivative": ', 1s', "non_negative_derivative": ', 1s', "moving_average": ", 3"}.get(function, "")
    q = (f'SELECT {function}(mean("ch2_t"){args}) FROM "{THERM}" WHERE time >= {a}s and time <= {b}s '
         "GROUP BY time(5m) fill(null)")
    (series,) = _query(stack, q, epoch="s")[0]["series"]
    assert series["columns"] == ["time", function]
    assert [r[0] for r in series["values"]] == [r[0] for r in want]
    assert series["values"] == [pytest.approx(r, rel=1e-9) for r in want]
    if function.startswith("non_negative"):
        assert len(want) < len(pairs) - 1  # some changes were negative


def test_conditions_on_field_values_filter_points(stack, g3):
    a, b = int(START), int(START) + 3 * 3600 - 1
    t1, v1 = _truth(g3, "ch1_t")
    t2, v2 = _truth(g3, "ch2_t")
    assert np.array_equal(t1, t2)  # one block: each point holds both fields
    keep = (t1 >= a * NS) & (t1 <= b * NS) & (v1 > 500)
    assert 0 < keep.sum() < 20  # the archive's spikes
    q = f'SELECT "ch1_t", "ch2_t" FROM "{THERM}" WHERE "ch1_t" > 500 AND time >= {a}s AND time <= {b}s'
    (series,) = _query(stack, q, epoch="ns")[0]["series"]
    assert series["values"] == [[int(t), float(x), float(y)] for t, x, y in zip(t1[keep], v1[keep], v2[keep],
                                                                                 strict=True)]
    q = (f'SELECT count("ch2_t"), max("ch2_t"), median("ch2_t") FROM "{THERM}" WHERE "ch1_t" > 500 '
         f"AND time >= {a}s AND time <= {b}s")
    (series,) = _query(stack, q, epoch="ns")[0]["series"]
    assert series["values"] == [[a * NS, int(keep.sum()), float(v2[keep].max()), float(np.median(v2[keep]))]]
    q = (f'SELECT count("ch1_t") FROM "{THERM}" WHERE ("feed" = \'nothing\' AND "ch1_t" > 0) OR "ch1_t" > 500 '
         f"AND time >= {a}s AND time <= {b}s GROUP BY time(1h) fill(none)")
    (series,) = _query(stack, q, epoch="s")[0]["series"]
    want = {}
    for t in (t1[keep] // NS).tolist():
        want[t // 3600 * 3600] = want.get(t // 3600 * 3600, 0) + 1
    assert series["values"] == [[k, n] for k, n in sorted(want.items())]


def test_a_selector_with_raw_fields_gives_the_selected_points_values(stack, g3):
    a, b = int(START) + 100, int(START) + 7000
    t1, v1 = _truth(g3, "ch1_t")
    _t2, v2 = _truth(g3, "ch2_t")
    keep = (t1 >= a * NS) & (t1 <= b * NS)
    i = int(np.flatnonzero(keep)[np.argmax(v1[keep])])
    q = f'SELECT max("ch1_t"), "ch2_t", "feed" FROM "{THERM}" WHERE time >= {a}s AND time <= {b}s'
    (series,) = _query(stack, q, epoch="ns")[0]["series"]
    assert series["columns"] == ["time", "max", "ch2_t", "feed"]
    assert series["values"] == [[int(t1[i]), float(v1[i]), float(v2[i]), "temperatures"]]
    (series,) = _query(stack, q.replace('max("ch1_t")', 'first("ch1_t")') + " GROUP BY time(1h) fill(none)",
                       epoch="s")[0]["series"]
    want = []
    for k in sorted({int(t) // NS // 3600 * 3600 for t in t1[keep]}):
        j = int(np.flatnonzero(keep & (t1 >= k * NS))[0])
        want.append([k, float(v1[j]), float(v2[j]), "temperatures"])
    assert series["values"] == want
    (result,) = _query(stack, f'SELECT max("ch1_t"), min("ch1_t"), "ch2_t" FROM "{THERM}"')
    assert result["error"] == "mixing multiple selector functions with tags or fields is not supported"
    (result,) = _query(stack, f'SELECT mean("ch1_t"), "ch2_t" FROM "{THERM}"')
    assert result["error"] == "mixing aggregate and non-aggregate queries is not supported"


def test_transformations_of_raw_fields(stack, g3):
    a, b = int(START) + 10, int(START) + 70
    t_ns, v = _truth(g3, "ch1_t")
    keep = (t_ns >= a * NS) & (t_ns <= b * NS)
    t_ns, v = t_ns[keep], v[keep]
    (series,) = _query(stack, f'SELECT derivative("ch1_t", 1m), cumulative_sum("ch1_t") FROM "{THERM}" '
                              f"WHERE time >= {a}s AND time <= {b}s", epoch="ns")[0]["series"]
    assert series["columns"] == ["time", "derivative", "cumulative_sum"]
    want = [[int(t_ns[0]), None, float(v[0])]]
    want += [[int(t_ns[i]), (v[i] - v[i - 1]) / ((t_ns[i] - t_ns[i - 1]) / (60 * NS)), float(np.sum(v[:i + 1]))]
             for i in range(1, len(v))]
    assert len(series["values"]) == len(want) > 50
    for got, row in zip(series["values"], want, strict=True):
        assert got[0] == row[0] and got[1] == (None if row[1] is None else pytest.approx(row[1], rel=1e-9))
        assert got[2] == pytest.approx(row[2], rel=1e-12)


def test_count_distinct(stack, g3):
    a, b = int(START), int(START) + 3600
    t_ns, v = _truth(g3, "p_main", "observatory.gauge2.feeds.pressures")
    q = (f'SELECT count(distinct("p_main")) FROM "{GAUGE}" WHERE time >= {a}s AND time <= {b}s '
         "GROUP BY time(30m) fill(none)")
    (series,) = _query(stack, q, epoch="s")[0]["series"]
    raw = _buckets(t_ns, v, a * NS, b * NS, 1800 * NS)
    assert series["columns"] == ["time", "count"]
    assert series["values"] == [[k // NS, len(set(xs))] for k, xs in sorted(raw.items())]


# -- one series from two nodes -----------------------------------------------------------

MIRROR = (START + 5400, START + 4 * 3600)  # the archive's last 1.5 h and one more hour


@pytest.fixture(scope="module")
def mirrored(stack, client, g3):
    """A second node holding therm1's samples for MIRROR (tests/servers/ocs_mirror.py)."""
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers", "ocs_mirror.py")
    proc = stack.python("ocs-mirror", path, env={"NAME": "ocs_mirror", "FROM": str(MIRROR[0]),
                                                 "TO": str(MIRROR[1])}).start()
    try:
        wait_for(lambda: "ocs_mirror" in node_names(client), 30, "the mirror to register")

        def listed():
            got = requests.get(stack.http + "/api/v1/fields", params={"node": "ocs_mirror"}, timeout=5)
            return got.status_code == 200 and len(got.json()) == 3

        wait_for(listed, 60, "the bridge to list the mirror's fields")
        mirror = client.data("ocs_mirror", ["observatory.therm1.feeds.temperatures.ch1_t"], *MIRROR)
        yield mirror["observatory.therm1.feeds.temperatures.ch1_t"]
    finally:
        proc.stop()


def _union(g3, mirror):
    t_a, v_a = _truth(g3, "ch1_t")
    t_b = (np.asarray(mirror.t) * 1e9).astype(np.int64)
    v_b = np.asarray(mirror.values, dtype=np.float64)
    common = np.intersect1d(t_a, t_b)
    assert len(common) > 1000 and len(np.setdiff1d(t_b, t_a)) > 1000  # they overlap, and each adds samples
    a = dict(zip(t_a.tolist(), v_a.tolist(), strict=True))
    b = dict(zip(t_b.tolist(), v_b.tolist(), strict=True))
    assert all(a[t] == b[t] for t in common.tolist())  # the same samples where both hold them
    t = np.array(sorted(a.keys() | b.keys()), dtype=np.int64)
    return t, np.array([a.get(x, b.get(x)) for x in t.tolist()])


def test_a_series_held_by_two_nodes_is_one_series(stack, g3, mirrored):
    (result,) = _query(stack, f'SHOW SERIES FROM "{THERM}"')
    assert result["series"][0]["values"] == [[f"{THERM},feed=temperatures"]]
    t_ns, v = _union(g3, mirrored)
    a, b = int(START) + 1000, int(MIRROR[1])
    have = _buckets(t_ns, v, a * NS, b * NS, 600 * NS)
    q = (f'SELECT count("ch1_t"), mean("ch1_t"), max("ch1_t"), first("ch1_t"), last("ch1_t"), median("ch1_t") '
         f'FROM "{THERM}" WHERE time >= {a}s AND time <= {b}s GROUP BY time(10m) fill(none)')
    (series,) = _query(stack, q, epoch="s")[0]["series"]
    want = [[k // NS, len(xs), sum(xs) / len(xs), max(xs), xs[0], xs[-1], float(np.median(xs))]
            for k, xs in sorted(have.items())]
    assert series["values"] == [pytest.approx(row, rel=1e-12) for row in want]
    c, d = int(START) + 7000, int(START) + 7060  # both nodes hold these
    q = f'SELECT "ch1_t" FROM "{THERM}" WHERE time >= {c}s AND time <= {d}s'
    (series,) = _query(stack, q, epoch="ns")[0]["series"]
    keep = (t_ns >= c * NS) & (t_ns <= d * NS)
    assert keep.sum() == 61
    assert series["values"] == [[int(t), float(x)] for t, x in zip(t_ns[keep], v[keep], strict=True)]


def test_without_group_by_time_a_shared_series_is_merged_too(stack, g3, mirrored):
    t_ns, v = _union(g3, mirrored)
    a, b = int(START), int(MIRROR[1])
    keep = (t_ns >= a * NS) & (t_ns <= b * NS)
    q = (f'SELECT count("ch1_t"), sum("ch1_t"), last("ch1_t") FROM /^observatory\\./ '
         f"WHERE time >= {a}s AND time <= {b}s")
    (series,) = _query(stack, q, epoch="s")[0]["series"]
    assert series["values"] == [[a, int(keep.sum()), pytest.approx(float(v[keep].sum()), rel=1e-12),
                                 float(v[keep][-1])]]
    # a selector alone: the selected sample's own time
    q = f'SELECT max("ch1_t") FROM "{THERM}" WHERE time >= {a}s AND time <= {b}s'
    (series,) = _query(stack, q, epoch="ns")[0]["series"]
    i = int(np.argmax(v[keep]))
    assert series["values"] == [[int(t_ns[keep][i]), float(v[keep][i])]]
