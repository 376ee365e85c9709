"""The InfluxQL statements sisock's ``/influxdb/query`` is compared on.

Most are what Grafana's InfluxDB query builder writes: ``SELECT
mean("f") FROM "m" WHERE ("tag" = 'v') AND $timeFilter GROUP BY
time($__interval) fill(null)``, with ``$timeFilter`` expanded the way
Grafana's backend does for an absolute range (``time >= <from>ms and time
<= <to>ms``) and ``$__interval`` computed as Grafana computes it (range /
panel width, rounded by :func:`grafana_round_interval`). The rest are the
edges a dashboard reaches sooner or later: empty ranges, ranges past the
data, intervals that do not divide the range, every fill mode, regular
expressions for measurements, fields and tags, several fields and several
statements in one request, the SHOW statements of the builder's pickers
and of template variables, raw selects with LIMIT, every epoch, and
``now()``-relative ranges on the live feed.

Each statement is built from a few tables (ranges, intervals, functions,
fills), so the corpus is generated rather than listed, plus a hand-written
list. :func:`corpus` returns them with the time of the live feed's first
sample, which is only known when the test starts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from influx_samples import (
    ARCHIVED_BEFORE,
    ARCHIVED_OVERLAP,
    DATABASE,
    END,
    LIVE_AGENT,
    LIVE_FEED,
    LIVE_N,
    LIVE_RATE,
    START,
    TAGGED_AGENT,
    TAGGED_CLASS,
    TYPED_N,
    TYPED_START,
)

THERM, GAUGE, FAST, TYPED = ("observatory.therm1", "observatory.gauge2", "observatory.fast3", "observatory.typed1")
LIVE_M = f"observatory.{LIVE_AGENT}"
PANEL_WIDTH = 1000  # px: Grafana's maxDataPoints for a full-width panel


@dataclass(frozen=True)
class Case:
    q: str
    epoch: str | None = "ms"  # Grafana's backend asks with epoch=ms
    db: str | None = DATABASE
    #: Relative to ``now()``: the two answers are read at slightly different
    #: moments, so a time that is ``now()``-derived may differ by the time
    #: between them (and only such a time).
    now: bool = False
    method: str = "GET"


def grafana_round_interval(ms: float) -> int:
    """Grafana's ``kbn.round_interval``: the nice interval (ms) nearest above a raw one."""
    steps = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
             (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
             (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
             (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
             (32400000, 21600000), (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
             (3628800000, 2592000000)]
    for limit, value in steps:
        if ms < limit:
            return value
    return 31536000000


def grafana_interval_text(ms: int) -> str:
    """Grafana's ``kbn.secondsToHms`` of a rounded interval: ``20s``, ``1m``, ``10m``, ``1h``, ``1d``."""
    seconds = ms / 1000
    for unit, size in (("y", 31536000), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(ms)}ms"


def grafana_interval(from_ms: int, to_ms: int, width: int = PANEL_WIDTH) -> str:
    """``$__interval`` for a panel of ``width`` px over ``[from_ms, to_ms]``."""
    return grafana_interval_text(grafana_round_interval((to_ms - from_ms) / width))


def time_filter(from_ms: int, to_ms: int) -> str:
    """``$timeFilter`` as Grafana's backend expands it for an absolute range."""
    return f"time >= {from_ms}ms and time <= {to_ms}ms"


def builder(selects, measurement, from_ms, to_ms, *, tags=(), interval=None, fill="null", group_tags=(),
            policy=None) -> str:
    """One statement exactly as the query builder renders it."""
    source = f'"{policy}"."{measurement}"' if policy else f'"{measurement}"'
    where = "".join(f"(\"{k}\" {op} {v}) AND " for k, op, v in tags)
    group = ", ".join([f"time({interval or grafana_interval(from_ms, to_ms)})", *(f'"{t}"' for t in group_tags)])
    return (f"SELECT {', '.join(selects)} FROM {source} WHERE {where}{time_filter(from_ms, to_ms)} "
            f"GROUP BY {group} fill({fill})")


def ms(t: float) -> int:
    return int(round(t * 1000))


#: Absolute ranges, ms: whole, partial, odd edges, in the gap, before, past, straddling the end.
RANGES = {
    "all": (ms(START), ms(END)),
    "1h": (ms(START + 600), ms(START + 4200)),
    "odd": (ms(START + 1234.567), ms(START + 5678.901)),
    "6h": (ms(END - 6 * 3600), ms(END)),
    "gap": (ms(START + 5100), ms(START + 6400)),
    "before": (ms(START - 7200), ms(START - 3600)),
    "past": (ms(END + 3600), ms(END + 7200)),
    "straddle": (ms(END - 1800), ms(END + 1800)),
    "point": (ms(START + 100), ms(START + 100)),
}
SERIES = [  # (measurement, feed tag, fields)
    (THERM, "temperatures", ["ch1_t", "ch2_t", "ch3_t"]),
    (GAUGE, "pressures", ["p_main", "p_aux"]),
    (FAST, "fast", ["x", "y"]),
]
FUNCTIONS = ["mean", "max", "min", "sum", "count", "first", "last", "spread"]
FILLS = ["null", "none", "previous", "0", "-1.5", "linear"]


def _builder_cases() -> list[Case]:
    out = []
    # The dashboard's bread and butter: one field, mean and max, each range, Grafana's interval.
    for (name, (a, b)), (m, feed, fields) in itertools.product(RANGES.items(), SERIES):
        if name == "point":
            continue
        for fn in ("mean", "max"):
            out.append(Case(builder([f'{fn}("{fields[0]}")'], m, a, b, tags=[("feed", "=", f"'{feed}'")])))
    # Every function on one series, two ranges.
    for fn, rng in itertools.product(FUNCTIONS + ["median", "stddev"], ("1h", "odd")):
        a, b = RANGES[rng]
        out.append(Case(builder([f'{fn}("ch2_t")'], THERM, a, b, tags=[("feed", "=", "'temperatures'")])))
    # Every fill mode, on ranges with holes (the gap) and edges.
    for fill, rng in itertools.product(FILLS, ("all", "odd", "straddle")):
        a, b = RANGES[rng]
        out.append(Case(builder(['mean("ch1_t")'], THERM, a, b, tags=[("feed", "=", "'temperatures'")],
                                interval="5m", fill=fill)))
    # Intervals that do not divide the range, or the hour, or the minute.
    for interval in ("7s", "13s", "90s", "7m", "1h", "25m", "1d", "500ms"):
        a, b = RANGES["odd"] if interval != "500ms" else (ms(START + 3), ms(START + 40))
        out.append(Case(builder(['mean("p_main")', 'max("p_main")'], GAUGE, a, b, interval=interval)))
    # Several fields, several functions, aliases, as the builder writes them.
    for a, b in (RANGES["1h"], RANGES["all"]):
        out.append(Case(builder(['mean("ch1_t")', 'mean("ch2_t")', 'mean("ch3_t")'], THERM, a, b)))
        out.append(Case(builder(['mean("ch1_t") AS "mean"', 'max("ch1_t") AS "max"', 'min("ch1_t") AS "min"'],
                                THERM, a, b, tags=[("feed", "=", "'temperatures'")])))
        out.append(Case(builder(['mean("x")', 'count("y")'], FAST, a, b)))
    # Tags: group by feed (two feeds share ch1_t), tag regex, retention policy prefix.
    for a, b in (RANGES["1h"], RANGES["odd"]):
        out.append(Case(builder(['mean("ch1_t")'], THERM, a, b, group_tags=["feed"])))
        out.append(Case(builder(['max("ch1_t")'], THERM, a, b, tags=[("feed", "=~", "/^temp/")])))
        out.append(Case(builder(['max("ch1_t")'], THERM, a, b, tags=[("feed", "!=", "'temperatures'")])))
        out.append(Case(builder(['mean("ch1_t")'], THERM, a, b, policy="autogen")))
        out.append(Case(builder(['last("heater")'], THERM, a, b, tags=[("feed", "=", "'diagnostics'")],
                                interval="10m")))
    # Integer, boolean, string and float fields of one provider.
    ta, tb = ms(TYPED_START), ms(TYPED_START + 2 * TYPED_N)
    for select in ('mean("count")', 'sum("count")', 'max("count")', 'count("state")', 'last("state")',
                   'first("ok")', 'count("ok")', 'mean("level")', 'max("level")'):
        out.append(Case(builder([select], TYPED, ta, tb, tags=[("feed", "=", "'status'")])))
    return out


def _edge_cases() -> list[Case]:
    a, b = RANGES["1h"]
    tf = time_filter(a, b)
    oa, ob = RANGES["odd"]
    otf = time_filter(oa, ob)
    t_all = time_filter(*RANGES["all"])
    statements = [
        # Raw selects: LIMIT, several fields, wildcard, order, OFFSET-free paging.
        f'SELECT "ch1_t" FROM "{THERM}" WHERE {tf} LIMIT 10',
        f'SELECT "ch1_t", "ch2_t" FROM "{THERM}" WHERE ("feed" = \'temperatures\') AND {tf} LIMIT 5',
        f'SELECT * FROM "{GAUGE}" WHERE {tf} LIMIT 4',
        f'SELECT "x" FROM "{FAST}" WHERE {otf} LIMIT 7',
        f'SELECT "x" FROM "{FAST}" WHERE {otf} ORDER BY time DESC LIMIT 3',
        f'SELECT "p_main" FROM "{GAUGE}" WHERE time >= {a}ms AND time < {a + 20000}ms',
        f'SELECT "p_main" FROM "{GAUGE}" WHERE time > {a}ms AND time <= {a + 20000}ms',
        f'SELECT "ch1_t" FROM "{THERM}" WHERE time >= {ms(START + 4990)}ms and time <= {ms(START + 6510)}ms',
        f'SELECT "ch1_t" FROM "{THERM}" WHERE {time_filter(*RANGES["gap"])}',
        f'SELECT "ch1_t" FROM "{THERM}" WHERE {time_filter(*RANGES["past"])} LIMIT 10',
        f'SELECT "ch1_t" FROM "{THERM}" WHERE {time_filter(*RANGES["point"])}',
        f'SELECT /p_/ FROM "{GAUGE}" WHERE {tf} LIMIT 3',
        f'SELECT "state", "count", "ok", "level" FROM "{TYPED}" WHERE time >= {ms(TYPED_START)}ms LIMIT 6',
        f"SELECT \"ch1_t\" FROM \"{THERM}\" WHERE \"feed\" = 'diagnostics' AND {tf} LIMIT 5",
        f'SELECT "ch1_t" FROM "{THERM}" WHERE {tf} GROUP BY "feed" LIMIT 2',
        f'SELECT "x" FROM "{FAST}" WHERE time >= \'2023-11-14T22:13:20Z\' AND time <= \'2023-11-14T22:13:25.5Z\'',
        # Selectors and aggregates without GROUP BY time.
        f'SELECT max("ch1_t") FROM "{THERM}" WHERE {tf}',
        f'SELECT min("ch1_t") FROM "{THERM}" WHERE {t_all}',
        f'SELECT last("p_aux") FROM "{GAUGE}" WHERE {otf}',
        f'SELECT first("p_aux") FROM "{GAUGE}" WHERE {otf}',
        f'SELECT count("ch3_t") FROM "{THERM}" WHERE {t_all}',
        f'SELECT mean("ch3_t") FROM "{THERM}" WHERE {otf}',
        f'SELECT sum("y") FROM "{FAST}" WHERE {tf}',
        f'SELECT spread("y") FROM "{FAST}" WHERE {tf}',
        f'SELECT max("ch1_t"), min("ch1_t") FROM "{THERM}" WHERE {tf}',
        f'SELECT mean("ch1_t"), count("ch1_t") FROM "{THERM}" WHERE {tf} GROUP BY "feed"',
        f'SELECT last("ch1_t") FROM "{THERM}" WHERE {time_filter(*RANGES["gap"])}',
        f'SELECT max("ch1_t") FROM "{THERM}" WHERE {time_filter(*RANGES["past"])}',
        f'SELECT median("p_main") FROM "{GAUGE}" WHERE {otf}',
        f'SELECT count("ch1_t") FROM "{THERM}" WHERE {time_filter(*RANGES["point"])}',
        # Regular expressions for measurements and fields.
        f'SELECT mean(/ch[12]_t/) FROM "{THERM}" WHERE {tf} GROUP BY time(10m) fill(null)',
        f'SELECT max(/^p_/) FROM "{GAUGE}" WHERE {tf} GROUP BY time(15m) fill(none)',
        f'SELECT mean("ch1_t") FROM /^observatory\\.therm/ WHERE {tf} GROUP BY time(10m) fill(null)',
        f'SELECT mean("x") FROM /fast/ WHERE {tf} GROUP BY time(20m) fill(none)',
        f'SELECT last("ch1_t") FROM /therm1$/ WHERE {tf} GROUP BY time(30m), "feed" fill(none)',
        f'SELECT mean("x") FROM /nothing-matches/ WHERE {tf} GROUP BY time(20m) fill(null)',
        # Unknown names: empty, not an error.
        f'SELECT mean("no_such_field") FROM "{THERM}" WHERE {tf} GROUP BY time(10m) fill(null)',
        f'SELECT mean("ch1_t") FROM "observatory.nobody" WHERE {tf} GROUP BY time(10m) fill(null)',
        f"SELECT mean(\"ch1_t\") FROM \"{THERM}\" WHERE (\"feed\" = 'nofeed') AND {tf} GROUP BY time(10m)",
        # GROUP BY time with an offset, and without a lower bound on time's side.
        f'SELECT mean("p_main") FROM "{GAUGE}" WHERE {tf} GROUP BY time(10m, 3m) fill(null)',
        f'SELECT count("p_main") FROM "{GAUGE}" WHERE {tf} GROUP BY time(1h, -15m) fill(0)',
        # Bucket edges: ranges ending exactly on a bucket boundary, strict comparisons.
        f'SELECT count("ch1_t") FROM "{THERM}" WHERE time >= {a}ms and time < {a + 600000}ms GROUP BY time(1m)',
        f'SELECT count("ch1_t") FROM "{THERM}" WHERE time > {a}ms and time <= {a + 600000}ms GROUP BY time(1m)',
        f'SELECT sum("x") FROM "{FAST}" WHERE time >= {a + 250}ms and time <= {a + 10750}ms GROUP BY time(1s)',
        f'SELECT first("x"), last("x") FROM "{FAST}" WHERE time >= {a}ms and time <= {a + 30000}ms '
        "GROUP BY time(7s) fill(previous)",
        # More than 10,000 rows in one series: InfluxDB 1.x sends them all, flagged "partial": true.
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE ("feed" = \'temperatures\') AND {t_all} '
        "GROUP BY time(1s) fill(null)",
        f'SELECT "x" FROM "{FAST}" WHERE {t_all} LIMIT 12000',
        # Whole-day buckets over a range shorter than one.
        f'SELECT mean("ch2_t") FROM "{THERM}" WHERE {t_all} GROUP BY time(1d) fill(null)',
        f'SELECT max("ch2_t") FROM "{THERM}" WHERE {t_all} GROUP BY time(1w) fill(null)',
        # Other spellings of the same thing: lower case, no quotes, ns and s literals, seconds in ranges.
        f'select mean(ch1_t) from "{THERM}" where {tf} group by time(10m) fill(null)',
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE time >= {a * 1000000} AND time <= {b * 1000000} '
        "GROUP BY time(10m)",
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE time >= {a // 1000}s AND time <= {b // 1000}s '
        "GROUP BY time(10m)",
        f'SELECT mean("ch1_t") FROM "{DATABASE}"."autogen"."{THERM}" WHERE {tf} GROUP BY time(10m)',
    ]
    # What Grafana's builder adds on top (math, transformations, percentile, OR'd tags), and what
    # raw-mode users write (field conditions, several measurements, wildcards, paging the buckets).
    g = "GROUP BY time(5m) fill(null)"
    statements += [
        f'SELECT mean("ch1_t") * 2 FROM "{THERM}" WHERE {tf} {g}',
        f'SELECT mean("p_main") / 100 + 1 FROM "{GAUGE}" WHERE {tf} {g}',
        f'SELECT percentile("ch2_t", 95) FROM "{THERM}" WHERE ("feed" = \'temperatures\') AND {tf} {g}',
        f'SELECT derivative(mean("p_main"), 1s) FROM "{GAUGE}" WHERE {tf} {g}',
        f'SELECT non_negative_derivative(max("x"), 1m) FROM "{FAST}" WHERE {tf} {g}',
        f'SELECT difference(last("y")) FROM "{FAST}" WHERE {tf} {g}',
        f'SELECT moving_average(mean("ch3_t"), 3) FROM "{THERM}" WHERE {tf} {g}',
        f'SELECT cumulative_sum(count("ch3_t")) FROM "{THERM}" WHERE {tf} {g}',
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE ("feed" = \'temperatures\' OR "feed" = \'diagnostics\') '
        f"AND {tf} {g}",
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE ("feed" !~ /^temp/) AND {tf} {g}',
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE ("feed" <> \'diagnostics\') AND {tf} {g}',
        f'SELECT "ch1_t" FROM "{THERM}" WHERE "ch1_t" > 500 AND {t_all}',
        f'SELECT count("ch1_t") FROM "{THERM}" WHERE "ch1_t" < 18.75 AND {tf} GROUP BY time(10m) fill(0)',
        f'SELECT mean("ch1_t"), mean("p_main") FROM "{THERM}", "{GAUGE}" WHERE {tf} GROUP BY time(20m) fill(null)',
        f'SELECT mean(*) FROM "{GAUGE}" WHERE {tf} GROUP BY time(20m) fill(null)',
        f'SELECT last(*) FROM "{THERM}" WHERE {tf} GROUP BY "feed"',
        f'SELECT max("ch1_t") FROM "{THERM}" WHERE {tf} GROUP BY *',
        f'SELECT max("ch1_t"), "ch2_t" FROM "{THERM}" WHERE ("feed" = \'temperatures\') AND {tf}',
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE {tf} GROUP BY time(10m) fill(null) ORDER BY time DESC',
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE {tf} GROUP BY time(1m) fill(null) LIMIT 5 OFFSET 3',
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE {tf} GROUP BY time(10m), "feed" fill(null) SLIMIT 1',
        f'SELECT "x" FROM "{FAST}" WHERE {tf} LIMIT 3 OFFSET 5',
        f'SELECT count(distinct("state")) FROM "{TYPED}" WHERE time >= {ms(TYPED_START)}ms and '
        f'time <= {ms(TYPED_START + 2 * TYPED_N)}ms GROUP BY time(30m)',
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE {tf} GROUP BY time(10m) fill(null) tz(\'UTC\')',
        f'SELECT mean("ch1_t") AS "T" FROM "{THERM}" WHERE {tf} GROUP BY time(30m), "feed" fill(none)',
    ]
    out = [Case(q) for q in statements]
    # Several statements in one request (Grafana sends a panel's queries joined by ';').
    out.append(Case(";".join([
        builder(['mean("ch1_t")'], THERM, a, b, tags=[("feed", "=", "'temperatures'")]),
        builder(['max("p_main")'], GAUGE, a, b),
        builder(['mean("x")'], FAST, a, b, fill="none"),
    ])))
    out.append(Case(f'SELECT max("ch1_t") FROM "{THERM}" WHERE {tf}; SHOW MEASUREMENTS; '
                    f'SELECT "p_main" FROM "{GAUGE}" WHERE {tf} LIMIT 2'))
    out.append(Case(f'SHOW TAG KEYS FROM "{THERM}";SHOW FIELD KEYS FROM "{THERM}"'))
    # The same statement through POST, as Grafana does for long queries.
    out.append(Case(builder(['mean("ch1_t")'], THERM, a, b), method="POST"))
    out.append(Case(f'SELECT "x" FROM "{FAST}" WHERE {otf} LIMIT 5', method="POST"))
    return out


def _epoch_cases() -> list[Case]:
    a, b = ms(START + 3), ms(START + 9)
    raw = f'SELECT "x", "y" FROM "{FAST}" WHERE time >= {a}ms and time <= {b}ms'
    agg = f'SELECT mean("x") FROM "{FAST}" WHERE time >= {a}ms and time <= {b}ms GROUP BY time(2s) fill(null)'
    sel = f'SELECT max("ch1_t") FROM "{THERM}" WHERE {time_filter(*RANGES["1h"])}'
    out = []
    for epoch in (None, "ns", "n", "u", "µ", "ms", "s", "m", "h"):
        out += [Case(raw, epoch=epoch), Case(agg, epoch=epoch), Case(sel, epoch=epoch)]
    return out


def _show_cases() -> list[Case]:
    statements = [
        "SHOW DATABASES",
        "SHOW MEASUREMENTS",
        "SHOW MEASUREMENTS LIMIT 2",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /therm/",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)GAUGE/ LIMIT 100",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /^observatory\\./ LIMIT 3",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /nothing/",
        f'SHOW MEASUREMENTS WITH MEASUREMENT = "{GAUGE}"',
        "SHOW FIELD KEYS",
        f'SHOW FIELD KEYS FROM "{THERM}"',
        f'SHOW FIELD KEYS FROM "{TYPED}"',
        f'SHOW FIELD KEYS FROM "autogen"."{GAUGE}"',
        "SHOW FIELD KEYS FROM /^observatory\\.(fast|gauge)/",
        'SHOW FIELD KEYS FROM "observatory.nobody"',
        "SHOW TAG KEYS",
        f'SHOW TAG KEYS FROM "{THERM}"',
        "SHOW TAG KEYS FROM /gauge/",
        'SHOW TAG VALUES WITH KEY = "feed"',
        f'SHOW TAG VALUES FROM "{THERM}" WITH KEY = "feed"',
        f'SHOW TAG VALUES FROM "autogen"."{THERM}" WITH KEY = "feed"',
        'SHOW TAG VALUES WITH KEY =~ /fe.d/',
        'SHOW TAG VALUES WITH KEY =~ /^nothing/',
        'SHOW TAG VALUES WITH KEY IN ("feed")',
        f'SHOW TAG VALUES FROM "{GAUGE}" WITH KEY IN ("feed", "nothing")',
        'SHOW TAG VALUES FROM /observatory/ WITH KEY = "feed"',
        'SHOW TAG VALUES WITH KEY = "feed" LIMIT 2',
        "SHOW RETENTION POLICIES",
        f'SHOW FIELD KEYS ON "{DATABASE}" FROM "{GAUGE}"',
        'SHOW TAG VALUES WITH KEY = "feed" WHERE "feed" =~ /^t/',
        f"SHOW TAG VALUES FROM \"{THERM}\" WITH KEY = \"feed\" WHERE \"feed\" != 'diagnostics'",
        "SHOW MEASUREMENTS WHERE \"feed\" = 'pressures'",
        'SHOW MEASUREMENTS WITH MEASUREMENT =~ /^observatory\\.(therm|fast)/',
        "SHOW SERIES",
        f'SHOW SERIES FROM "{THERM}"',
        "SHOW TAG KEYS LIMIT 2",
        f'SHOW RETENTION POLICIES ON "{DATABASE}"',
        f"SHOW RETENTION POLICIES ON {DATABASE}",
    ]
    out = [Case(q, epoch=None) for q in statements]
    out.append(Case("SHOW DATABASES", epoch=None, db=None))
    out.append(Case(f'SHOW MEASUREMENTS ON "{DATABASE}"', epoch=None, db=None))
    out.append(Case(f'SHOW RETENTION POLICIES ON "{DATABASE}"', epoch=None, db=None))
    return out


def _live_cases(live_t0: int) -> list[Case]:
    """The live feed: absolute ranges around what was published, and ``now()``-relative
    ranges that hold all of it (so the samples answered do not depend on the moment)."""
    t1 = live_t0 + (LIVE_N - 1) / LIVE_RATE
    a, b = ms(live_t0 - 10), ms(t1 + 10)
    m = LIVE_M
    tag = [("feed", "=", f"'{LIVE_FEED}'")]
    out = [
        Case(builder(['mean("channel_00")'], m, a, b, tags=tag)),
        Case(builder(['max("channel_00")', 'min("channel_01")'], m, a, b, tags=tag, interval="7s")),
        Case(builder(['count("channel_01")'], m, a, b, interval="1m", fill="0")),
        Case(builder(['last("channel_00")'], m, a, b, interval="10s", fill="previous")),
        Case(f'SELECT "channel_00", "channel_01" FROM "{m}" WHERE {time_filter(a, b)} LIMIT 20'),
        Case(f'SELECT max("channel_00") FROM "{m}" WHERE {time_filter(a, b)}'),
        Case(f'SHOW FIELD KEYS FROM "{m}"', epoch=None),
        Case(f'SHOW TAG VALUES FROM "{m}" WITH KEY = "feed"', epoch=None),
    ]
    # The same series from the feed's archive (g3-reader) and the live feed (data-feed server),
    # overlapping for a minute: one series, each point once.
    half = 1 / LIVE_RATE
    wa, wb = ms(live_t0 - ARCHIVED_BEFORE * half - 10), ms(t1 + 10)
    oa, ob = ms(live_t0 - 5), ms(live_t0 + ARCHIVED_OVERLAP * half + 5)
    out += [
        Case(builder(['mean("channel_00")', 'max("channel_01")'], m, wa, wb, tags=tag)),
        Case(builder(['count("channel_00")'], m, wa, wb, interval="1m", fill="0")),
        Case(builder(['first("channel_01")', 'last("channel_01")'], m, oa, ob, interval="7s", fill="none")),
        Case(f'SELECT "channel_00", "channel_01" FROM "{m}" WHERE {time_filter(oa, ob)}'),
        Case(f'SELECT "channel_00" FROM "{m}" WHERE {time_filter(wa, wb)} LIMIT 1000'),
        Case(f'SELECT count("channel_00"), max("channel_00"), first("channel_01"), last("channel_01") FROM "{m}" '
             f"WHERE {time_filter(wa, wb)}"),
        Case(f'SELECT mean("channel_01") FROM "{m}" WHERE {time_filter(oa, ob)} GROUP BY "feed"'),
    ]
    relative = [
        f'SELECT mean("channel_00") FROM "{m}" WHERE time >= now() - 1h GROUP BY time(10s) fill(none)',
        f'SELECT max("channel_01") FROM "{m}" WHERE ("feed" = \'{LIVE_FEED}\') AND time >= now() - 6h '
        "GROUP BY time(1m) fill(none)",
        f'SELECT "channel_00" FROM "{m}" WHERE time > now() - 30m',
        f'SELECT "channel_01" FROM "{m}" WHERE time > now() - 1h LIMIT 5',
        f'SELECT last("channel_00") FROM "{m}" WHERE time >= now() - 1h',
        f'SELECT max("channel_00") FROM "{m}" WHERE time >= now() - 1h and time <= now()',
        f'SELECT count("channel_00") FROM "{m}" WHERE time >= now() - 1h',
        f'SELECT mean("ch1_t") FROM "{THERM}" WHERE time >= now() - 6h GROUP BY time(20s) fill(null)',
        f'SELECT "ch1_t" FROM "{THERM}" WHERE time >= now() - 1d',
    ]
    out += [Case(q, now=True) for q in relative]
    # The feed with influxdb_tags: measurement = agent class, one field, channel and instance as tags.
    c = TAGGED_CLASS
    inst = [("instance_id", "=", f"'{TAGGED_AGENT}'")]
    out += [
        Case(builder(['mean("temperature")'], c, a, b, tags=inst, group_tags=["channel"])),
        Case(builder(['max("temperature")'], c, a, b, tags=[*inst, ("channel", "=", "'1'")], interval="15s")),
        Case(builder(['count("temperature")'], c, a, b, interval="1m", fill="none")),
        Case(f'SELECT "temperature" FROM "{c}" WHERE ("channel" = \'0\') AND {time_filter(a, b)} LIMIT 6'),
        Case(f'SELECT last("temperature") FROM "{c}" WHERE {time_filter(a, b)} GROUP BY "channel", "instance_id"'),
        Case(f'SHOW TAG KEYS FROM "{c}"', epoch=None),
        Case(f'SHOW TAG VALUES FROM "{c}" WITH KEY = "channel"', epoch=None),
        Case(f'SHOW TAG VALUES FROM "{c}" WITH KEY IN ("instance_id", "address_root")', epoch=None),
        Case(f'SHOW FIELD KEYS FROM "{c}"', epoch=None),
        Case(f'SELECT mean("temperature") FROM "{c}" WHERE time >= now() - 1h GROUP BY time(30s), "channel" '
             "fill(none)", now=True),
    ]
    return out


def corpus(live_t0: int) -> list[Case]:
    return [*_builder_cases(), *_edge_cases(), *_epoch_cases(), *_show_cases(), *_live_cases(live_t0)]
