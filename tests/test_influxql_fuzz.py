"""``/influxdb/query`` under random input: statements from a small InfluxQL
grammar (valid, and then cut, spliced and sprinkled with noise), arbitrary
text and bytes, and odd parameters. Whatever comes in: never a 5xx, never
a request that outlives the client's timeout, and every answer in
InfluxDB's shape (tests/influx_compare.py ``error_shaped``).

The same stack as the differential test (tests/influxql_stack.py), so the
statements reach real data: a g3-reader on MariaDB and a data-feed server.
"""

from __future__ import annotations

import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from influx_compare import error_shaped
from influx_samples import DATABASE, START

TIMEOUT = 30  # s: a request still running by then counts as a hang
FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

MEASUREMENTS = ['"observatory.therm1"', '"observatory.gauge2"', '"observatory.fast3"', '"observatory.typed1"',
                '"observatory.livefeed1"', '"nobody"', "/therm/", "/.*/", '"autogen"."observatory.therm1"',
                '"ocs_feeds"."autogen"."observatory.fast3"', "/(/", '""']
FIELDS = ['"ch1_t"', '"ch2_t"', '"p_main"', '"x"', '"state"', '"ok"', '"count"', '"channel_00"', '"nope"', "*",
          "/ch/", "/[/", "time", '"feed"']
FUNCTIONS = ["mean", "max", "min", "sum", "count", "first", "last", "spread", "median", "stddev", "mode",
             "percentile", "derivative", "integral", "distinct", "nosuch", "MEAN"]
DURATIONS = ["1ns", "1u", "1ms", "500ms", "1s", "7s", "1m", "15m", "1h", "1d", "1w", "0s", "-1m", "10x", "1000000w"]
FILLS = ["null", "none", "previous", "linear", "0", "-1.5", "1e308", "'x'", "nope", ""]
TIMES = [f"{(START + 600) * 1000}ms", f"{(START + 4200) * 1000}ms", "now()", "now() - 1h", "now() - 100000w",
         "'2023-11-14T22:13:20Z'", "'not a time'", "0", "-9223372036854775808", "9223372036854775807",
         f"{START}s", "1e30"]
OPS = [">=", "<=", ">", "<", "=", "!=", "=~", "<>"]


@st.composite
def select_statements(draw):
    """Mostly well-formed (known names, sane times) so most reach the data; the odd
    names, durations and times of the tables above now and then."""
    def pick(table, good):
        return draw(st.sampled_from(table[:good]) if draw(st.integers(0, 3)) else st.sampled_from(table))

    fields = [pick(FIELDS, 8) for _ in range(draw(st.integers(1, 3)))]
    aggregate = draw(st.integers(0, 3)) > 0
    if aggregate:
        fn = pick(FUNCTIONS, 8)
        extra = draw(st.sampled_from(["", ", 50", ", 'x'", ", 2, 3"])) if fn in ("percentile", "mode") else ""
        selects = [f"{fn}({f}{extra})" for f in fields]
    else:
        selects = fields
    q = f"SELECT {', '.join(selects)} FROM {pick(MEASUREMENTS, 5)}"
    good_cond = st.one_of(
        st.builds(lambda op, t: f"time {op} {t}", st.sampled_from(OPS[:4]), st.sampled_from(TIMES[:6])),
        st.builds(lambda op, v: f'"feed" {op} {v}', st.sampled_from(["=", "!="]),
                  st.sampled_from(["'temperatures'", "'pressures'", "'x'"])),
        st.builds(lambda op, v: f'"feed" {op} {v}', st.sampled_from(["=~", "!~"]), st.sampled_from(["/^t/", "/s$/"])))
    any_cond = st.builds(lambda lhs, op, v: f"{lhs} {op} {v}", st.sampled_from(["time", '"feed"', '"ch1_t"', "1"]),
                         st.sampled_from(OPS), st.sampled_from([*TIMES, "'x'", "/^t/", "true", '"ch1_t"']))
    conds = draw(st.lists(good_cond if draw(st.integers(0, 3)) else any_cond, max_size=2))
    if draw(st.integers(0, 3)):  # the hour with data, as a dashboard's range
        conds.append(f"time >= {TIMES[0]} and time <= {TIMES[1]}")
    if conds:
        q += " WHERE " + draw(st.sampled_from([" AND ", " and ", " OR "] if len(conds) > 1 else [""])).join(conds)
    if (aggregate and draw(st.integers(0, 4)) > 0) or (not aggregate and draw(st.integers(0, 9)) == 0):
        group = [f"time({pick(DURATIONS[4:], 6)}" + (f", {pick(DURATIONS, 8)})" if draw(st.booleans()) else ")")]
        if draw(st.booleans()):
            group.append(draw(st.sampled_from(['"feed"', "*", "/f/"])))
        q += " GROUP BY " + ", ".join(group)
        if draw(st.booleans()):
            q += f" fill({pick(FILLS, 7)})"
    elif draw(st.integers(0, 3)) == 0:
        q += " GROUP BY " + draw(st.sampled_from(['"feed"', "*", "/f/"]))
    # In InfluxQL's order: ORDER BY, LIMIT, OFFSET, SLIMIT, SOFFSET, tz().
    for clause in ("ORDER BY time DESC", "LIMIT", "OFFSET", "SLIMIT", "SOFFSET", "tz('UTC')"):
        if draw(st.integers(0, 4)) == 0:
            q += f" {clause}" + (f" {draw(st.integers(-2, 10**12))}" if clause.isalpha() else "")
    return q


SHOW = st.sampled_from([
    "SHOW DATABASES", "SHOW MEASUREMENTS", "SHOW MEASUREMENTS LIMIT -1", "SHOW MEASUREMENTS WITH MEASUREMENT =~ /(/",
    'SHOW FIELD KEYS FROM "nobody"', "SHOW TAG KEYS", 'SHOW TAG VALUES WITH KEY = "feed"', "SHOW TAG VALUES",
    'SHOW TAG VALUES WITH KEY IN ()', "SHOW RETENTION POLICIES", "SHOW RETENTION POLICIES ON nobody", "SHOW SERIES",
    "SHOW USERS", "SHOW QUERIES", "SHOW STATS", "SHOW", "DROP DATABASE ocs_feeds", "CREATE DATABASE x",
    "DELETE FROM \"observatory.therm1\"", "KILL QUERY 1", "GRANT ALL TO x", "SELECT * INTO x FROM y",
])


@st.composite
def mangled(draw, statement):
    """A statement cut short, doubled, or with random characters spliced in."""
    q = draw(statement)
    how = draw(st.sampled_from(["keep"] * 5 + ["cut", "splice", "join", "noise"]))
    if how == "cut":
        return q[:draw(st.integers(0, len(q)))]
    if how == "splice":
        at = draw(st.integers(0, len(q)))
        return q[:at] + draw(st.text(min_size=1, max_size=8)) + q[at:]
    if how == "join":
        return q + draw(st.sampled_from([";", "; ", ";;", "\n"])) + draw(statement)
    if how == "noise":
        return draw(st.sampled_from(["'", '"', "/", "(", ")", "\\", "\x00", "∞", "${x}"])).join(q.split(" ", 2))
    return q


STATEMENTS = mangled(st.one_of(select_statements(), SHOW))
EPOCHS = st.one_of(st.none(), st.sampled_from(["ns", "u", "µ", "ms", "s", "m", "h", "", "x", "MS", "1"]),
                   st.text(max_size=4))
DBS = st.one_of(st.none(), st.just(DATABASE), st.sampled_from(["", "nobody", "_internal"]), st.text(max_size=6))


def _check(r: requests.Response):
    assert r.status_code < 500, (r.status_code, r.text[:300])
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"{r.status_code} not JSON: {r.text[:200]!r}") from None
    problem = error_shaped(r.status_code, body)
    assert problem is None, problem
    results = body.get("results") or []
    event(f"HTTP {r.status_code}" + ("" if r.status_code != 200 else
                                      " with series" if any(x.get("series") for x in results) else
                                      " with an error" if any("error" in x for x in results) else " empty"))


@FUZZ
@given(q=STATEMENTS, epoch=EPOCHS, db=DBS, post=st.booleans())
def test_random_statements(influxql_pair, q, epoch, db, post):
    _, sisock = influxql_pair
    params = {"q": q, **({"epoch": epoch} if epoch is not None else {}), **({"db": db} if db is not None else {})}
    if post:
        r = requests.post(sisock + "/query", data=params, timeout=TIMEOUT)
    else:
        r = requests.get(sisock + "/query", params=params, timeout=TIMEOUT)
    _check(r)


@FUZZ
@given(body=st.binary(max_size=512), content_type=st.sampled_from([
    None, "application/x-www-form-urlencoded", "application/json", "multipart/form-data; boundary=x",
    "text/plain", "application/x-www-form-urlencoded; charset=utf-32"]),
    query=st.dictionaries(st.sampled_from(["q", "db", "epoch", "chunked", "chunk_size", "pretty", "u", "p", "rp",
                                           "params", "x"]), st.text(max_size=20), max_size=4))
def test_garbage_bodies_and_parameters(influxql_pair, body, content_type, query):
    _, sisock = influxql_pair
    headers = {"Content-Type": content_type} if content_type else {}
    r = requests.post(sisock + "/query", params=query, data=body, headers=headers, timeout=TIMEOUT)
    _check(r)


@FUZZ
@given(raw=st.binary(min_size=1, max_size=200))
def test_raw_query_strings(influxql_pair, raw):
    """Bytes straight into the URL's query string (percent-encoded where HTTP needs it)."""
    from urllib.parse import quote_from_bytes

    _, sisock = influxql_pair
    r = requests.get(sisock + "/query?q=" + quote_from_bytes(raw, safe="=&;%+"), timeout=TIMEOUT)
    _check(r)


def test_missing_q_is_influxdbs_400(influxql_pair):
    influx, sisock = influxql_pair
    for base in (influx.url, sisock):
        r = requests.get(base + "/query", params={"db": DATABASE}, timeout=TIMEOUT)
        assert r.status_code == 400 and set(r.json()) == {"error"}, (base, r.status_code, r.text)


@FUZZ
@given(q=mangled(select_statements()))
def test_what_influxdb_parses_sisock_parses(influxql_pair, q):
    """A SELECT InfluxDB takes (200, whatever each result says) is not refused as
    unparsable (400) by sisock. Only SELECTs are sent to InfluxDB (the fuzz must not
    drop its data), each with a short timeout: one it cannot answer in time is skipped."""
    from hypothesis import assume

    influx, sisock = influxql_pair
    params = {"q": q, "db": DATABASE, "epoch": "ms"}
    try:
        theirs = requests.get(influx.url + "/query", params=params, timeout=5)
    except requests.Timeout:
        assume(False)
    ours = requests.get(sisock + "/query", params=params, timeout=TIMEOUT)
    _check(ours)
    if theirs.status_code == 200:
        assert ours.status_code == 200, (q, ours.json())
