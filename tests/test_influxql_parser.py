"""The InfluxQL parser, the WHERE-clause reading and the answer writer on
their own: what Grafana's InfluxDB datasource and OCS dashboards send."""

from __future__ import annotations

import re

import pytest

from sisock.components.http.influxql import answer, conditions
from sisock.components.http.influxql import statements as st
from sisock.components.http.influxql.catalog import Catalog, locate
from sisock.components.http.influxql.fields import column_names, expand
from sisock.components.http.influxql.parser import ParseError, duration_ns, parse

NOW = 1_700_000_000_000_000_000
H = 3_600_000_000_000


def one(text):
    (stmt,) = parse(text)
    return stmt


# -- what Grafana sends ---------------------------------------------------------

def test_grafana_builder_query():
    stmt = one('SELECT mean("value") FROM "autogen"."observatory.fake-data1" WHERE ("feed" = \'temps\') AND '
               "time >= 1700000000000ms and time <= 1700003600000ms GROUP BY time(10s), \"feed\" fill(null)")
    assert stmt.fields == (st.SelectField(st.Call("mean", (st.VarRef("value"),))),)
    assert stmt.sources == (st.Source(name="observatory.fake-data1", retention="autogen"),)
    assert (stmt.interval, stmt.interval_offset, stmt.group_tags) == (10 * 10**9, 0, ("feed",))
    assert stmt.fill == st.Fill("null")
    lo, hi, rest = conditions.split(stmt.condition, NOW)
    assert (lo, hi) == (1_700_000_000_000 * 10**6, 1_700_003_600_000 * 10**6)
    assert rest == st.Binary("=", st.VarRef("feed"), st.Literal("temps"))


@pytest.mark.parametrize("text, kind", [
    ("SHOW DATABASES", st.ShowDatabases),
    ("show measurements", st.ShowMeasurements),
    ('SHOW MEASUREMENTS WITH MEASUREMENT =~ /obs.*/ LIMIT 100', st.ShowMeasurements),
    ('SHOW FIELD KEYS FROM "observatory.LSA22YE"', st.ShowFieldKeys),
    ('SHOW TAG KEYS FROM "m"', st.ShowTagKeys),
    ('SHOW TAG VALUES FROM "m" WITH KEY = "feed"', st.ShowTagValues),
    ("SHOW TAG VALUES WITH KEY IN (\"feed\", \"channel\") WHERE \"a\" = 'b'", st.ShowTagValues),
    ("SHOW TAG VALUES FROM \"m\" WITH KEY =~ /.*/", st.ShowTagValues),
    ('SHOW RETENTION POLICIES ON "ocs_feeds"', st.ShowRetentionPolicies),
    ("SHOW SERIES FROM \"m\" WHERE \"feed\" = 'x' LIMIT 5", st.ShowSeries),
    ("SHOW RETENTION POLICIES", st.ShowRetentionPolicies),
])
def test_show_statements(text, kind):
    assert isinstance(one(text), kind)


def test_show_details():
    assert one('SHOW MEASUREMENTS WITH MEASUREMENT =~ /obs.*/ LIMIT 100').match[1].pattern == "obs.*"
    assert one('SHOW MEASUREMENTS WITH MEASUREMENT =~ /obs.*/ LIMIT 100').limit == 100
    assert one('SHOW TAG VALUES WITH KEY IN ("feed", "channel")').key == ("in", ("feed", "channel"))
    assert one('SHOW TAG VALUES FROM "m" WITH KEY = "feed"').key == ("=", ("feed",))
    assert one('SHOW RETENTION POLICIES ON "ocs_feeds"').database == "ocs_feeds"
    assert one('SHOW FIELD KEYS ON "db" FROM "m"').database == "db"


def test_empty_statements_are_skipped_and_tz_is_read():
    assert [type(s) for s in parse(";SHOW DATABASES;;  ; SHOW DATABASES;")] == [st.ShowDatabases] * 2
    assert parse(";") == []
    assert one("SELECT mean(a) FROM m GROUP BY time(1h) tz('Europe/Paris')").tz == "Europe/Paris"
    assert one("SELECT mean(a) FROM m GROUP BY time(-1m)").interval == -60 * 10**9  # refused when run


def test_several_statements_and_keywords_in_any_case():
    stmts = parse('select "a" from m limit 10; Select Max(a) As "x" From "m";')
    assert [type(s) for s in stmts] == [st.Select, st.Select]
    assert stmts[0].limit == 10 and stmts[1].fields[0] == st.SelectField(st.Call("max", (st.VarRef("a"),)), "x")


@pytest.mark.parametrize("text, source", [
    ('SELECT "v" FROM "observatory.LSA22YE"', st.Source(name="observatory.LSA22YE")),
    ('SELECT "v" FROM "autogen"."observatory.x"', st.Source(name="observatory.x", retention="autogen")),
    ('SELECT "v" FROM "db"."autogen"."m"', st.Source(name="m", database="db", retention="autogen")),
    ('SELECT "v" FROM "db".."m"', st.Source(name="m", database="db")),
    ("SELECT v FROM rp.m", st.Source(name="m", retention="rp")),
    (r'SELECT "v" FROM "with \"quote\""', st.Source(name='with "quote"')),
])
def test_sources(text, source):
    assert one(text).sources == (source,)


def test_regex_sources_fields_and_conditions():
    stmt = one(r"SELECT last(/ch.*/) FROM /^observatory\./ WHERE feed =~ /a\/b/ AND x !~ /c/")
    assert stmt.sources[0].regex.pattern == r"^observatory\."
    assert stmt.fields[0].expr.args[0].pattern == re.compile("ch.*")
    rest = stmt.condition
    assert rest.op == "and" and rest.lhs.rhs.pattern.pattern == "a/b" and rest.rhs.op == "!~"


@pytest.mark.parametrize("fill, want", [
    ("null", st.Fill("null")), ("none", st.Fill("none")), ("previous", st.Fill("previous")),
    ("linear", st.Fill("linear")), ("0", st.Fill("number", 0)), ("-1.5", st.Fill("number", -1.5)),
    ("42", st.Fill("number", 42)),
])
def test_fill_options(fill, want):
    assert one(f'SELECT mean(v) FROM m WHERE time > now() - 1h GROUP BY time(1m) fill({fill})').fill == want


def test_group_by_offset_all_tags_and_order():
    stmt = one("SELECT mean(v) FROM m GROUP BY time(1h30m, -15m), * ORDER BY time DESC LIMIT 5 OFFSET 2 SLIMIT 3")
    assert stmt.interval == 90 * 60 * 10**9 and stmt.interval_offset == -15 * 60 * 10**9
    assert stmt.all_tags and stmt.descending and (stmt.limit, stmt.offset, stmt.slimit) == (5, 2, 3)


@pytest.mark.parametrize("text, ns", [
    ("1ns", 1), ("1u", 1_000), ("1µ", 1_000), ("5ms", 5_000_000), ("2s", 2 * 10**9), ("3m", 180 * 10**9),
    ("6h", 6 * H), ("1d", 24 * H), ("1w", 7 * 24 * H), ("1h30m", 90 * 60 * 10**9),
])
def test_durations(text, ns):
    assert duration_ns(text) == ns


def test_unquoted_identifiers_may_be_unicode_and_keywords_elsewhere():
    stmt = one("SELECT mean(température), value, key FROM key WHERE fill = 'x'")
    assert [f.expr for f in stmt.fields] == [st.Call("mean", (st.VarRef("température"),)), st.VarRef("value"),
                                             st.VarRef("key")]


def test_series_keys_are_escaped_as_line_protocol():
    from sisock.components.http.influxql.show import series_key

    assert series_key("observatory.a b", (("feed", "t,=x"),)) == "observatory.a\\ b,feed=t\\,\\=x"


def test_arithmetic_and_aliases():
    stmt = one('SELECT mean("v") * 2 + 1 AS "k", -mean("v") FROM m')
    assert stmt.fields[0].alias == "k"
    assert stmt.fields[0].expr == st.Binary("+", st.Binary("*", st.Call("mean", (st.VarRef("v"),)),
                                                          st.Literal(2)), st.Literal(1))


@pytest.mark.parametrize("text, message", [
    ("SELEKT 1", "found SELEKT"),
    ("SELECT mean(x) FROM", "found EOF"),
    ("SELECT a FROM m SELECT b FROM m", "without a ';'"),
    ("SELECT a FROM m tz('Nowhere/Atall')", "unable to find time zone"),
    ("SELECT mean(x) FROM m ORDER BY value", "ORDER BY time"),
    ("SELECT mean(x) FROM m GROUP BY time(1s) fill(sideways)", "fill()"),
    ("SELECT x FROM m WHERE a =~ /(/", "invalid regular expression"),
    ("DROP DATABASE ocs_feeds", "found DROP"),
    ("SHOW MEASUREMENTS WITH MEASUREMENT > \"m\"", "expected"),
    ("SHOW MEASUREMENTS WITH MEASUREMENT =~ /(a+)+$/", "repeats a repeated group"),
])
def test_parse_errors_are_one_line(text, message):
    with pytest.raises(ParseError) as info:
        parse(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_overlong_query_is_refused():
    with pytest.raises(ParseError, match="longer than"):
        parse("SELECT " + ", ".join(["a"] * 30_000) + " FROM m")


# -- WHERE: time ranges ------------------------------------------------------------

@pytest.mark.parametrize("where, lo, hi", [
    ("time >= 10 and time <= 20", 10, 20),
    ("time > 10 and time < 20", 11, 19),
    ("10 < time", 11, st.MAX_TIME),
    ("time = 5", 5, 5),
    ("time > now() - 6h", NOW - 6 * H + 1, st.MAX_TIME),
    ("time > now() - 1d and time < now()", NOW - 24 * H + 1, NOW - 1),
    ("time >= '2023-11-14T22:13:20Z'", NOW, st.MAX_TIME),
    ("time >= '2023-11-14T22:13:20.5Z'", NOW + 500_000_000, st.MAX_TIME),
    ("time >= '2023-11-14 22:13:20'", NOW, st.MAX_TIME),
    ("time >= '2023-11-15T00:13:20+02:00'", NOW, st.MAX_TIME),
    ("time >= '2023-11-14'", NOW - (22 * 3600 + 13 * 60 + 20) * 10**9, st.MAX_TIME),
    ("time >= 1700000000000ms", NOW, st.MAX_TIME),
    ("(time >= 10 or time <= 20)", 10, 20),  # InfluxDB intersects even under OR
])
def test_time_ranges(where, lo, hi):
    assert conditions.split(one(f"SELECT v FROM m WHERE {where}").condition, NOW)[:2] == (lo, hi)


@pytest.mark.parametrize("where, message", [
    ("time >= 'yesterday'", "not compatible"),
    ("time != 5", "invalid time comparison operator"),
    ("time >= '2023-02-30T00:00:00Z'", "invalid timestamp"),
])
def test_bad_time_conditions(where, message):
    with pytest.raises(conditions.QueryError, match=message):
        conditions.split(one(f"SELECT v FROM m WHERE {where}").condition, NOW)


def test_tag_filters():
    _lo, _hi, cond = conditions.split(one(
        "SELECT v FROM m WHERE (feed = 'a' OR feed =~ /^b/) AND channel != '1' AND time > 0").condition, NOW)
    assert conditions.matches(cond, {"feed": "a"})
    assert conditions.matches(cond, {"feed": "bee", "channel": "2"})
    assert not conditions.matches(cond, {"feed": "bee", "channel": "1"})
    assert not conditions.matches(cond, {"feed": "c"})
    assert conditions.keys_in(cond) == {"feed", "channel"}
    _lo, _hi, missing = conditions.split(one("SELECT v FROM m WHERE nothere = ''").condition, NOW)
    assert conditions.matches(missing, {})  # a missing tag is the empty string


# -- columns ------------------------------------------------------------------------

def test_column_names_follow_influxdb():
    fields = [st.SelectField(st.Call("mean", (st.VarRef("v"),))), st.SelectField(st.Call("mean", (st.VarRef("w"),))),
              st.SelectField(st.Call("max", (st.VarRef("v"),)), "mean_1"),
              st.SelectField(st.Call("mean", (st.VarRef("v"),))), st.SelectField(st.VarRef("v")),
              st.SelectField(st.Binary("*", st.Call("max", (st.VarRef("v"),)), st.VarRef("k")))]
    assert column_names(fields) == ["time", "mean", "mean_2", "mean_1", "mean_3", "v", "max_k"]


def test_wildcards_expand_sorted_fields_and_tags():
    catalog = Catalog([("g3_reader", "observatory.a.feeds.f.b_t", {}), ("g3_reader", "observatory.a.feeds.f.a_t", {}),
                       ("g3_reader", "observatory.a.feeds.f.state", {"type": "string"})])
    (m,) = catalog.measurements()
    raw = expand([st.SelectField(st.Wildcard())], [m], catalog, set())
    assert [f.expr.name for f in raw] == ["a_t", "b_t", "feed", "state"]
    assert [f.expr.name for f in expand([st.SelectField(st.Wildcard())], [m], catalog, {"feed"})] == \
        ["a_t", "b_t", "state"]
    means = expand([st.SelectField(st.Call("mean", (st.Wildcard(),)))], [m], catalog, set())
    assert [(f.expr.args[0].name, f.alias) for f in means] == [("a_t", "mean_a_t"), ("b_t", "mean_b_t")]
    lasts = expand([st.SelectField(st.Call("last", (st.RegexRef(re.compile("^s")),)))], [m], catalog, set())
    assert [f.alias for f in lasts] == ["last_state"]


# -- the mapping -----------------------------------------------------------------------

def test_mapping_of_sisock_names():
    assert locate("g3_reader", "observatory.LSA22YE.feeds.temperatures.Channel_01_T") == \
        ("observatory.LSA22YE", {"feed": "temperatures"}, "Channel_01_T")
    assert locate("apex_archive", "apex_temperature") == ("apex_archive", {}, "apex_temperature")
    stated = {"influxdb": {"measurement": "FakeDataAgent", "field": "temperature",
                           "tags": {"feed": "f", "channel": 0, "instance_id": "fake1", "address_root": "observatory"}}}
    assert locate("fake1", "channel_00", stated) == (
        "FakeDataAgent", {"feed": "f", "channel": "0", "instance_id": "fake1", "address_root": "observatory"},
        "temperature")


def test_catalog_merges_one_series_from_several_nodes():
    stated = {"influxdb": {"measurement": "observatory.x", "tags": {"feed": "f"}, "field": "c"}}
    catalog = Catalog([("g3_reader", "observatory.x.feeds.f.c", {}), ("x_live", "c", stated)])
    ((tags, columns),) = catalog.series_of("observatory.x").items()
    assert tags == (("feed", "f"),) and {c.node for c in columns} == {"g3_reader", "x_live"}
    assert catalog.field_keys("observatory.x") == {"c": "float"}


# -- answers -------------------------------------------------------------------------

@pytest.mark.parametrize("ns, text", [
    (0, "1970-01-01T00:00:00Z"), (NOW, "2023-11-14T22:13:20Z"), (NOW + 500_000_000, "2023-11-14T22:13:20.5Z"),
    (NOW + 1, "2023-11-14T22:13:20.000000001Z"), (-1, "1969-12-31T23:59:59.999999999Z"),
])
def test_rfc3339(ns, text):
    assert answer.rfc3339(ns) == text


@pytest.mark.parametrize("epoch, value", [
    ("ns", NOW + 1_234_567), ("u", (NOW + 1_234_567) // 1000), ("ms", (NOW + 1_234_567) // 10**6),
    ("s", NOW // 10**9), ("m", NOW // (60 * 10**9)), ("h", NOW // H), ("µ", NOW + 1_234_567),
])
def test_epochs(epoch, value):
    assert answer.epoch_value(NOW + 1_234_567, epoch) == value


def test_epoch_truncates_toward_zero():
    assert answer.epoch_value(-1_500_000, "ms") == -1


def test_answer_body_converts_only_time_columns():
    results = [{"statement_id": 0, "series": [{"name": "m", "columns": ["time", "mean"], "values": [[NOW, 1.5]]}]},
               {"statement_id": 1, "series": [{"name": "measurements", "columns": ["name"], "values": [["m"]]}]}]
    assert answer.body(results, None) == (b'{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time",'
                                          b'"mean"],"values":[["2023-11-14T22:13:20Z",1.5]]}]},{"statement_id":1,'
                                          b'"series":[{"name":"measurements","columns":["name"],"values":[["m"]]}]}]}')


def test_archived_channels_take_the_layout_their_live_feed_states():
    tagged = {"influxdb": {"measurement": "FakeDataAgent", "field": "temperature",
                           "tags": {"feed": "f", "channel": "0", "instance_id": "x", "address_root": "observatory"},
                           "source": "observatory.x.feeds.f.channel_00"}}
    catalog = Catalog([("g3_reader", "observatory.x.feeds.f.channel_00", {}), ("x_live", "channel_00", tagged),
                       ("g3_reader", "observatory.x.feeds.f.channel_01", {})])
    assert catalog.measurements() == ["FakeDataAgent", "observatory.x"]
    ((tags, columns),) = catalog.series_of("FakeDataAgent").items()
    assert dict(tags)["channel"] == "0" and {c.node for c in columns} == {"g3_reader", "x_live"}
    assert catalog.field_keys("observatory.x") == {"channel_01": "float"}  # no live layout known for it


def test_long_condition_chains_parse():
    stmt = one("SELECT a FROM m WHERE " + " OR ".join(f"host = 'h{i}'" for i in range(900)))
    _lo, _hi, cond = conditions.split(stmt.condition, NOW)
    assert conditions.matches(cond, {"host": "h899"}) and not conditions.matches(cond, {"host": "x"})


def test_statistics_combine_with_influxdbs_tie_rules():
    import numpy as np

    from sisock.components.http.influxql import functions

    def part(bucket, n, total, first, t_first, last, t_last, low, t_low, high, t_high):
        return {k: np.asarray(v) for k, v in dict(
            bucket=bucket, n=n, sum=total, first=first, t_first=t_first, last=last, t_last=t_last,
            min=low, t_min=t_low, max=high, t_max=t_high).items()}

    a = part([0, 10], [2, 1], [3.0, 5.0], [1.0, 5.0], [1, 11], [2.0, 5.0], [2, 11], [1.0, 5.0], [1, 11],
             [2.0, 5.0], [2, 11])
    b = part([0], [2], [9.0], [4.0], [1], [5.0], [3], [4.0], [1], [5.0], [3])
    out = functions.combine([a, b])
    assert out["bucket"].tolist() == [0, 10] and out["n"].tolist() == [4, 1] and out["sum"].tolist() == [12.0, 5.0]
    assert out["first"].tolist()[0] == 4.0  # equal first times: the larger value
    assert out["last"].tolist()[0] == 5.0 and out["t_last"].tolist()[0] == 3
    assert out["min"].tolist()[0] == 1.0 and out["max"].tolist()[0] == 5.0
    one = functions.combine([{**a, "bucket": np.zeros(2, np.int64)}])  # rows of one part, one bucket
    assert one["n"].tolist() == [3] and one["last"].tolist() == [5.0]


def test_the_parser_is_built_once_however_many_ask_for_it_first(monkeypatch):
    """The bridge builds it as it starts (``prepare``); a query arriving
    meanwhile waits for that build instead of making its own."""
    import threading

    from sisock.components.http.influxql import parser as module

    module._build.cache_clear()
    built, real = [], module.Lark
    monkeypatch.setattr(module, "Lark", lambda *a, **k: built.append(1) or real(*a, **k))
    askers = [threading.Thread(target=module.prepare) for _ in range(3)]
    askers.append(threading.Thread(target=module.parse, args=("SHOW DATABASES",)))
    for t in askers:
        t.start()
    for t in askers:
        t.join(60)
    assert built == [1]
    assert module.parse("SHOW DATABASES")
