"""SELECT: InfluxDB 1.x's answer computed from the data nodes.

The statement's sources name measurements; its condition gives a time
range and a tag filter choosing series; ``GROUP BY`` tags gather series
into output series, and ``GROUP BY time()`` cuts buckets aligned to the
epoch (plus the offset), each labelled with its start. Aggregates come from
per-bucket statistics (``DataSource.aggregates``), ``median`` and raw
selects from samples (``DataSource.raw``). Times stay integer nanoseconds
until the answer is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import conditions, functions
from . import statements as st
from .catalog import Catalog
from .conditions import QueryError
from .fetch import Reader
from .fields import calls_in, check_call, column_names, counts_distinct, expand, field_of, from_samples, refs_in
from .rows import fill_column, place, value_of, window

#: InfluxDB 1.6 cuts a series into chunks of this many rows and, answering
#: without ``chunked=true``, joins them back but leaves the series marked
#: ``"partial": true``: clients see that on every longer series.
CHUNK_ROWS = 10_000
#: Buckets (ns) a series held by several nodes is merged on when the
#: statement has no GROUP BY time: a multiple of the g3-reader's summaries.
SHARED_GRID = 3600 * 1_000_000_000
#: Zones whose buckets and times are UTC's: ``tz()`` naming them changes nothing.
UTC_ZONES = ("UTC", "Etc/UTC", "GMT", "Etc/GMT", "Zulu", "Etc/Zulu", "Universal", "Etc/Universal")


@dataclass
class Context:
    datasource: object
    catalog: Catalog
    now_ns: int
    #: most values (rows times columns) one statement may answer
    max_points: int


@dataclass(frozen=True)
class Group:
    measurement: str
    #: the GROUP BY tags and their values (sorted pairs)
    tags: tuple
    #: ``[(series tags, [columns])]``
    series: tuple


# -- sources and groups ------------------------------------------------------------

def measurements_of(sources, catalog: Catalog) -> list[str]:
    known = catalog.measurements()
    out = []
    for source in sources:
        out.extend(m for m in known if source.matches(m) and m not in out)
    return sorted(out)


def groups_of(stmt: st.Select, measurements, tag_cond, catalog: Catalog) -> list[Group]:
    """Output series: the measurements' series passing ``tag_cond`` (None:
    all), gathered by their GROUP BY tags."""
    out = []
    for m in measurements:
        tag_keys = catalog.tag_keys(m)
        if stmt.all_tags:
            dims = list(tag_keys)
        else:
            dims = list(dict.fromkeys(stmt.group_tags))
            dims += [k for k in tag_keys if any(r.search(k) for r in stmt.group_tag_regexes) and k not in dims]
        dims = sorted(dims)
        grouped: dict[tuple, list] = {}
        for tags, columns in catalog.series_of(m).items():
            tag_map = dict(tags)
            if not conditions.matches(tag_cond, tag_map):
                continue
            key = tuple((d, tag_map.get(d, "")) for d in dims)
            grouped.setdefault(key, []).append((tags, columns))
        for key in sorted(grouped):
            out.append(Group(m, key, tuple(grouped[key])))
    return out


class SelectRun:
    """One SELECT over one catalog."""

    def __init__(self, stmt: st.Select, ctx: Context):
        self.stmt = stmt
        self.ctx = ctx

    def run(self) -> list[dict]:
        stmt, ctx = self.stmt, self.ctx
        measurements = measurements_of(stmt.sources, ctx.catalog)
        lo, hi, tag_cond = conditions.split(stmt.condition, ctx.now_ns)
        dims = set(stmt.group_tags)
        fields = expand(stmt.fields, measurements, ctx.catalog, dims)
        calls: list[st.Call] = []
        for f in fields:
            calls_in(f.expr, calls)
        for call in calls:
            check_call(call, stmt.interval)
        bare = [n for f in fields for n in refs_in(f.expr, [])]
        if calls and bare:
            if not all(c.name in functions.SELECTORS for c in calls):
                raise QueryError("mixing aggregate and non-aggregate queries is not supported")
            if len(calls) > 1:
                raise QueryError("mixing multiple selector functions with tags or fields is not supported")
        self.aux = bare
        if stmt.interval is not None and stmt.interval <= 0:
            raise QueryError("GROUP BY time() needs a positive interval")
        if stmt.tz is not None and stmt.tz not in UTC_ZONES:
            raise QueryError(f"tz('{stmt.tz}') is not supported: answers are in UTC (drop tz() or use tz('UTC'))")
        if not calls and stmt.fill.kind in ("none", "linear"):
            raise QueryError(f"fill({stmt.fill.kind}) must be used with a function")
        if not calls and stmt.interval:
            raise QueryError("GROUP BY requires at least one aggregate function")
        if not fields:
            return []
        if not calls and not any(isinstance(f.expr, (st.VarRef, st.Binary)) for f in fields):
            raise QueryError("at least 1 non-time field must be queried")
        self.columns = column_names(fields)
        self.fields = fields
        self.calls = calls
        if stmt.interval and hi == st.MAX_TIME:
            hi = ctx.now_ns
        if lo > hi or not measurements:
            return []
        self.lo, self.hi = lo, hi
        # A condition naming fields filters points, evaluated on each point
        # with its series' tags; one naming only tags chooses series.
        field_keys = {k for m in measurements for k in ctx.catalog.field_keys(m)}
        self.cond_fields = sorted(conditions.keys_in(tag_cond) & field_keys)
        self.point_filter = tag_cond if self.cond_fields else None
        if self.point_filter is not None and any(c.name in functions.TRANSFORMS for c in calls):
            raise QueryError("conditions on field values with derivative() and the other transformations "
                             "are not supported; filter on tags and time")
        groups = groups_of(stmt, measurements, None if self.point_filter is not None else tag_cond, ctx.catalog)
        if stmt.soffset:
            groups = groups[stmt.soffset:]
        if stmt.slimit:
            groups = groups[:stmt.slimit]
        self.reader = Reader(ctx.datasource, lo, hi, ctx.now_ns, ctx.max_points)
        raw_transforms = [c for c in calls if c.name in functions.TRANSFORMS and isinstance(c.args[0], st.VarRef)]
        if raw_transforms and len(raw_transforms) != len(calls):
            raise QueryError("transformations of raw fields cannot be combined with other functions here")
        if raw_transforms:
            series = self._raw_transforms(groups)
        elif calls and bare:
            series = self._selected(groups)
        else:
            series = self._aggregate(groups) if calls else self._raw(groups)
        total = sum(len(s["values"]) * (len(s["columns"])) for s in series)
        if total > ctx.max_points:
            raise QueryError(f"the answer holds {total} values, more than the {ctx.max_points} one answer may "
                             "hold (MAX_ANSWER_POINTS); shorten the range or widen GROUP BY time()")
        return series

    # -- output ---------------------------------------------------------------
    def _series(self, group: Group, rows: list) -> dict | None:
        stmt = self.stmt
        if stmt.descending:
            rows = rows[::-1]
        if stmt.offset:
            rows = rows[stmt.offset:]
        if stmt.limit:
            rows = rows[:stmt.limit]
        if not rows:
            return None
        out = {"name": group.measurement}
        if group.tags or stmt.group_tags or stmt.all_tags or stmt.group_tag_regexes:
            out["tags"] = dict(group.tags)
        out["columns"] = self.columns
        out["values"] = rows
        if len(rows) > CHUNK_ROWS:
            out["partial"] = True
        return out

    # -- aggregates -------------------------------------------------------------
    def _grid(self) -> tuple[int, int]:
        if self.stmt.interval:
            return self.stmt.interval, self.stmt.interval_offset % self.stmt.interval
        # One bucket holding the whole range (what a data node is asked for).
        start, end = self.reader.start, self.reader.end
        interval = int((end - start) * 1e9) + 4_000_000_000
        return interval, int(start * 1e9) - 2_000_000_000

    def _check_buckets(self, groups):
        if not self.stmt.interval or self.stmt.fill.kind == "none":
            return
        interval, offset = self._grid()
        lo = self.lo if self.lo != st.MIN_TIME else 0
        buckets = (window(self.hi, interval, offset) - window(lo, interval, offset)) // interval + 1
        total = buckets * len(self.columns) * max(len(groups), 1)
        if total > self.ctx.max_points:
            raise QueryError(f"the answer would hold {total} values ({buckets} buckets), more than the "
                             f"{self.ctx.max_points} one answer may hold (MAX_ANSWER_POINTS); "
                             "shorten the range or widen GROUP BY time()")

    def _fetch(self, calls, groups, reader: Reader, interval: int, offset: int) -> dict:
        """Statistics for ``calls``: one request per node for series held by
        one node; series held by several are merged from their samples."""
        stat_keys = {field_of(c) for c in calls
                     if c.name in functions.FROM_STATS and not counts_distinct(c)}
        single, shared = [], []
        for group in groups:
            for _tags, columns in group.series:
                by_key: dict[str, list] = {}
                for column in columns:
                    if column.key in stat_keys:
                        by_key.setdefault(column.key, []).append(column)
                for cols in by_key.values():
                    (single if len(cols) == 1 else shared).append(tuple(cols))
        sample_keys = {field_of(c) for c in calls if from_samples(c)}
        reader.samples([c for g in groups for _tags, cols in g.series for c in cols if c.key in sample_keys])
        # Without GROUP BY time the one bucket is the whole range: a shared
        # series is merged on hour buckets (so only the hours where both
        # nodes have samples are read as samples), then made one bucket.
        grid = (interval, offset) if self.stmt.interval else (SHARED_GRID, 0)
        stats = reader.stats([c[0] for c in single], interval, offset) if single else {}
        asked = [c for cols in shared for c in cols]
        own = reader.stats(asked, *grid) if asked else {}
        for cols in shared:
            merged = self._merge_shared(cols, own, reader, *grid)
            if merged is not None and not self.stmt.interval:
                merged = functions.combine([{**merged, "bucket": np.zeros(len(merged["bucket"]), np.int64)}])
            if merged is not None:
                stats[cols] = merged
        buckets = sum(len(s["bucket"]) for s in stats.values())
        if buckets > self.ctx.max_points:  # judged before any row is built
            raise QueryError(f"the answer would hold more than {self.ctx.max_points} values ({buckets} non-empty "
                             "buckets), more than one answer may hold (MAX_ANSWER_POINTS); "
                             "shorten the range or widen GROUP BY time()")
        return stats

    def _merge_shared(self, cols: tuple, stats: dict, reader: Reader, interval: int, offset: int) -> dict | None:
        """One series held by several nodes (an archive and a live feed):
        each node's statistics where it alone has samples, and statistics
        of the merged samples (a time both hold counted once) for the
        buckets where their samples overlap."""
        held = [(c, stats[c]) for c in cols if c in stats and len(stats[c]["bucket"])]
        if len(held) <= 1:
            return held[0][1] if held else None
        spans = [(int(s["t_first"].min()), int(s["t_last"].max())) for _c, s in held]
        overlaps = [(max(a[0], b[0]), min(a[1], b[1])) for i, a in enumerate(spans) for b in spans[i + 1:]]
        overlaps = [(lo, hi) for lo, hi in overlaps if lo <= hi]
        if not overlaps:
            return functions.combine([s for _c, s in held])
        first = window(min(lo for lo, _hi in overlaps), interval, offset)
        last = window(max(hi for _lo, hi in overlaps), interval, offset) + interval - 1
        parts = [functions.select_buckets(s, (s["bucket"] < first) | (s["bucket"] > last)) for _c, s in held]
        inside = Reader(self.ctx.datasource, max(first, reader.lo_ns), min(last, reader.hi_ns),
                        self.ctx.now_ns, self.ctx.max_points)
        merged = inside.series_stats([c for c, _s in held], interval, offset)
        return functions.combine(parts + ([merged] if merged is not None else []))

    def _aggregate(self, groups: list[Group]) -> list[dict]:
        self._check_buckets(groups)
        interval, offset = self._grid()
        keys = {field_of(call) for call in self.calls}
        for group in groups:
            for _tags, columns in group.series:
                for column in columns:
                    if column.key in keys and column.type == "string":
                        for call in self.calls:
                            inner = call.args[0] if call.name in functions.TRANSFORMS else call
                            if field_of(call) == column.key and inner.name not in functions.FOR_STRINGS:
                                raise QueryError(f"unsupported {inner.name} iterator type: "
                                                 f"{column.key} is a string field")
        plain = [c for c in self.calls if c.name not in functions.TRANSFORMS]
        self.filtered = None
        if self.point_filter is not None:
            self.filtered = self._filtered_samples(groups, plain)
            stats = {held: functions.stats_of_samples(t, v, interval, offset)
                     for held, (t, v) in self.filtered.items() if len(t)}
        else:
            stats = self._fetch(plain, groups, self.reader, interval, offset)
        # A transformation but cumulative_sum reads its inner aggregate from
        # one bucket before the range too, as InfluxDB 1.6 does (for
        # moving_average too: it widens the range only after reading).
        wanted: dict[int, dict] = {}
        for call in self.calls:
            if call.name in functions.TRANSFORMS:
                extra = 0 if call.name == "cumulative_sum" else 1
                lo = self.lo - extra * interval if self.lo != st.MIN_TIME else self.lo
                wanted.setdefault(lo, {})[call] = call.args[0]
        self.extended = {}
        for lo, inner in wanted.items():
            reader = Reader(self.ctx.datasource, lo, self.hi, self.ctx.now_ns, self.ctx.max_points)
            self.extended[lo] = (reader, inner, self._fetch(list(inner.values()), groups, reader, interval, offset))
        out = []
        for group in groups:
            series = self._aggregate_group(group, stats, interval, offset)
            if series is not None:
                out.append(series)
        return out

    def _transform_points(self, call: st.Call, group: Group, interval: int, offset: int):
        lo, (reader, inner, stats) = next((lo, e) for lo, e in self.extended.items() if call in e[1])
        inner_call = inner[call]
        buckets, values, _times = self._call_points(inner_call, group, stats, interval, offset, reader)
        if self.stmt.fill.kind != "none" and len(buckets):
            first = window(lo, interval, offset) if lo != st.MIN_TIME else int(buckets[0])
            last = window(self.hi, interval, offset)
            times = list(range(first, last + 1, interval))
            column = place((buckets, values), len(times), lambda b: ((b - first) // interval).tolist())
            column = fill_column(self.stmt.fill, inner_call, column)
            pairs = [(t, v) for t, v in zip(times, column, strict=True) if v is not None]
        else:
            pairs = [(t, v) for t, v in zip(buckets.tolist(), values, strict=True) if v is not None]
        unit = call.args[1].ns if call.name.endswith("derivative") and len(call.args) == 2 else interval
        span = call.args[1].value if call.name == "moving_average" else None
        t_out, v_out = functions.transform(call.name, pairs, unit, span)
        t_out = np.asarray(t_out, dtype=np.int64)
        return t_out, v_out, t_out

    def _call_points(self, call: st.Call, group: Group, stats: dict, interval: int, offset: int,
                     reader: Reader | None = None):
        if call.name in functions.TRANSFORMS:
            return self._transform_points(call, group, interval, offset)
        reader = reader or self.reader
        key = field_of(call)
        if from_samples(call):
            helds = [tuple(c for c in cols if c.key == key) for _tags, cols in group.series]
            if self.filtered is not None:
                parts = [self.filtered[h] for h in helds if h in self.filtered]
            else:
                parts = [reader.series_samples(list(h)) for h in helds if h]
            parts = [p for p in parts if len(p[0])]
            if not parts:
                return np.zeros(0, np.int64), [], np.zeros(0, np.int64)
            t_ns = np.concatenate([p[0] for p in parts])
            if counts_distinct(call):
                values = np.concatenate([np.asarray(p[1], dtype=object) for p in parts])
                return functions.count_distinct(t_ns, values, interval, offset)
            values = np.concatenate([np.asarray(p[1], dtype=np.float64) for p in parts])
            order = np.argsort(t_ns, kind="stable")
            arg = call.args[1].value if len(call.args) > 1 else None
            return functions.of_samples(call.name, t_ns[order], values[order], interval, offset, 0, arg)
        parts = []
        for _tags, cols in group.series:
            held = tuple(c for c in cols if c.key == key)
            if len(held) == 1 and held[0] in stats:
                parts.append(stats[held[0]])
            elif held in stats:
                parts.append(stats[held])
        if not self.stmt.interval:  # one bucket, however each part labelled it
            parts = [{**part, "bucket": np.zeros(len(part["bucket"]), np.int64)} for part in parts]
        return functions.evaluate(call.name, functions.combine(parts))

    def _aggregate_group(self, group: Group, stats: dict, interval: int, offset: int) -> dict | None:
        stmt = self.stmt
        points = {call: self._call_points(call, group, stats, interval, offset) for call in self.calls}
        if not any(len(p[0]) for p in points.values()):
            return None
        if not stmt.interval:
            time_ns = self.lo if self.lo != st.MIN_TIME else 0
            if len(self.calls) == 1 and self.calls[0].name in functions.SELECTORS:
                time_ns = int(points[self.calls[0]][2][0])
            known = {call: (p[1][0] if len(p[0]) else None) for call, p in points.items()}
            return self._series(group, [[time_ns, *[value_of(f.expr, known) for f in self.fields]]])
        only_transforms = all(call.name in functions.TRANSFORMS for call in self.calls)
        if stmt.fill.kind == "none" or only_transforms:
            times = sorted(set().union(*[set(p[0].tolist()) for p in points.values()]))
            position = {t: i for i, t in enumerate(times)}
            filled = [place(points[call], len(times), lambda b: [position[t] for t in b.tolist()])
                      for call in self.calls]
        else:
            if self.lo != st.MIN_TIME:
                first = window(self.lo, interval, offset)
            else:
                first = min(int(p[0][0]) for p in points.values() if len(p[0]))
            last = window(self.hi, interval, offset)
            times = list(range(first, last + 1, interval))
            filled = []
            for call in self.calls:
                column = place(points[call], len(times), lambda b: ((b - first) // interval).tolist())
                transformed = call.name in functions.TRANSFORMS  # InfluxDB fills their input, not them
                filled.append(fill_column(stmt.fill, call, column) if len(points[call][0]) and not transformed
                              else column)
        return self._series(group, self._rows(times, filled))

    def _rows(self, times: list, filled: list[list]) -> list[list]:
        """Rows from each call's column: a field that is a call takes its
        column as it is; expressions are computed row by row."""
        index = {call: i for i, call in enumerate(self.calls)}
        columns = []
        for f in self.fields:
            if isinstance(f.expr, st.Call):
                columns.append(filled[index[f.expr]])
            else:
                columns.append([value_of(f.expr, {call: filled[i][r] for call, i in index.items()})
                                for r in range(len(times))])
        return [list(row) for row in zip(times, *columns, strict=True)]

    # -- raw ----------------------------------------------------------------------
    def _points(self, columns, keys) -> dict[int, dict]:
        """One series' points: ``{time: {field key: value}}`` for ``keys``."""
        wanted: dict[str, list] = {}
        for column in columns:
            if column.key in keys:
                wanted.setdefault(column.key, []).append(column)
        by_time: dict[int, dict] = {}
        for key, cols in wanted.items():
            t_ns, values = self.reader.series_samples(cols)
            for t, v in zip(t_ns.tolist(), functions.plain(values), strict=True):
                by_time.setdefault(t, {})[key] = v
        return by_time

    def _passes(self, tags: dict, point: dict) -> bool:
        if self.point_filter is None:
            return True
        return conditions.point_matches(self.point_filter, tags, {k: point.get(k) for k in self.cond_fields})

    def _raw(self, groups: list[Group]) -> list[dict]:
        refs = {n for f in self.fields for n in refs_in(f.expr, [])}
        keys = refs | set(self.cond_fields)
        self.reader.samples([c for g in groups for _tags, cols in g.series for c in cols if c.key in keys])
        out = []
        for group in groups:
            rows = []
            for tags, columns in group.series:
                tag_map = dict(tags)
                field_refs = [n for n in refs if any(c.key == n for c in columns)]
                if not field_refs:
                    continue
                by_time = self._points(columns, keys)
                for t in sorted(by_time):
                    point = by_time[t]
                    if not any(point.get(n) is not None for n in field_refs) or not self._passes(tag_map, point):
                        continue
                    known = {**{k: v for k, v in tag_map.items() if k in refs}, **point}
                    rows.append([t, *[value_of(f.expr, known) for f in self.fields]])
            rows.sort(key=lambda row: row[0])
            series = self._series(group, rows)
            if series is not None:
                out.append(series)
        return out

    def _raw_transforms(self, groups: list[Group]) -> list[dict]:
        """Transformations of raw fields (no GROUP BY time): on the group's
        samples in time order, a time seen twice taken once, the unit 1 s
        unless given."""
        keys = {c.args[0].name for c in self.calls} | set(self.cond_fields)
        self.reader.samples([c for g in groups for _tags, cols in g.series for c in cols if c.key in keys])
        out = []
        for group in groups:
            points = {}
            for call in self.calls:
                key = call.args[0].name
                pairs = []
                for tags, columns in group.series:
                    tag_map = dict(tags)
                    for t, point in self._points(columns, keys).items():
                        if point.get(key) is not None and self._passes(tag_map, point):
                            pairs.append((t, point[key]))
                pairs.sort(key=lambda pair: pair[0])
                if call.name != "cumulative_sum" and call.name != "moving_average":
                    pairs = [p for i, p in enumerate(pairs) if i == 0 or p[0] != pairs[i - 1][0]]
                unit = call.args[1].ns if call.name.endswith("derivative") and len(call.args) == 2 else 10**9
                span = call.args[1].value if call.name == "moving_average" else None
                points[call] = dict(zip(*functions.transform(call.name, pairs, unit, span), strict=True))
            times = sorted(set().union(*[set(p) for p in points.values()]))
            if not times:
                continue
            filled = [[points[call].get(t) for t in times] for call in self.calls]
            series = self._series(group, self._rows(times, filled))
            if series is not None:
                out.append(series)
        return out

    def _selected(self, groups: list[Group]) -> list[dict]:
        """One selector with raw fields beside it: per bucket, the selected
        point's own values of those fields (and tags), as InfluxDB answers;
        computed from the samples, which carry each point whole."""
        (call,) = self.calls
        if call.name == "percentile":
            raise QueryError("percentile() with raw fields beside it is not supported by this server")
        key = call.args[0].name
        self._check_buckets(groups)
        interval, offset = self._grid()
        aux = set(self.aux)
        keys = {key} | aux | set(self.cond_fields)
        self.reader.samples([c for g in groups for _tags, cols in g.series for c in cols if c.key in keys])
        out = []
        for group in groups:
            best: dict[int, tuple] = {}  # bucket start -> (rank, time, value, point, tags)
            for tags, columns in group.series:
                tag_map = dict(tags)
                for t, point in self._points(columns, keys).items():
                    value = point.get(key)
                    if value is None or not self._passes(tag_map, point):
                        continue
                    bucket = window(t, interval, offset)
                    rank = functions.selector_rank(call, value, t)
                    if bucket not in best or rank < best[bucket][0]:
                        best[bucket] = (rank, t, value, point, tag_map)
            if not best:
                continue
            rows = []
            buckets = sorted(best)
            if self.stmt.interval and self.stmt.fill.kind != "none":
                first = window(self.lo, interval, offset) if self.lo != st.MIN_TIME else buckets[0]
                times = list(range(first, window(self.hi, interval, offset) + 1, interval))
            else:
                times = buckets
            column = fill_column(self.stmt.fill, call, [best[b][2] if b in best else None for b in times]) \
                if self.stmt.interval else [best[b][2] for b in times]
            for b, selected in zip(times, column, strict=True):
                chosen = best.get(b)
                known = {call: selected}
                if chosen is not None:
                    known.update({k: v for k, v in chosen[4].items() if k in aux})
                    known.update({k: v for k, v in chosen[3].items() if k in aux})
                t = b if self.stmt.interval else chosen[1]
                rows.append([t, *[value_of(f.expr, known) for f in self.fields]])
            series = self._series(group, rows)
            if series is not None:
                out.append(series)
        return out

    def _filtered_samples(self, groups, calls) -> dict:
        """With a field condition: each series' samples of each key the calls
        read, only at the points passing it; keyed as statistics are."""
        keys = {field_of(c) for c in calls}
        self.reader.samples([c for g in groups for _tags, cols in g.series for c in cols
                             if c.key in keys or c.key in self.cond_fields])
        out = {}
        for group in groups:
            for tags, columns in group.series:
                tag_map = dict(tags)
                by_time = self._points(columns, keys | set(self.cond_fields))
                for key in keys:
                    held = tuple(c for c in columns if c.key == key)
                    if not held:
                        continue
                    kept = [(t, p[key]) for t, p in sorted(by_time.items())
                            if p.get(key) is not None and self._passes(tag_map, p)]
                    values = np.asarray([v for _t, v in kept])
                    out[held] = (np.asarray([t for t, _v in kept], dtype=np.int64), values)
        return out


def run(stmt: st.Select, ctx: Context) -> list[dict]:
    return SelectRun(stmt, ctx).run()
