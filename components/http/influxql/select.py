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

import math
from dataclasses import dataclass

import numpy as np

from . import conditions, functions
from . import statements as st
from .catalog import Catalog
from .conditions import QueryError
from .fetch import Reader

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


# -- fields ---------------------------------------------------------------------

def _calls(expr, out: list):
    if isinstance(expr, st.Call):
        if expr not in out:
            out.append(expr)
    elif isinstance(expr, st.Binary):
        _calls(expr.lhs, out)
        _calls(expr.rhs, out)
    return out


def _refs(expr, out: list):
    """Bare variable references (outside calls)."""
    if isinstance(expr, st.VarRef):
        out.append(expr.name)
    elif isinstance(expr, st.Binary):
        _refs(expr.lhs, out)
        _refs(expr.rhs, out)
    return out


def _field_name(expr) -> str:
    if isinstance(expr, st.Call):
        return expr.name
    if isinstance(expr, st.VarRef):
        return expr.name
    if isinstance(expr, st.Binary):
        names = []
        _binary_names(expr, names)
        return "_".join(names)
    return ""


def _binary_names(expr, names):
    if isinstance(expr, st.Call):
        names.append(expr.name)
    elif isinstance(expr, st.VarRef):
        names.append(expr.name)
    elif isinstance(expr, st.Binary):
        _binary_names(expr.lhs, names)
        _binary_names(expr.rhs, names)


def column_names(fields) -> list[str]:
    """InfluxDB's column names: aliases first, then generated names made
    unique with ``_1``, ``_2``, ..."""
    names = [f.alias or "" for f in fields]
    seen: dict[str, int] = {f.alias: 1 for f in fields if f.alias}
    for i, f in enumerate(fields):
        if names[i]:
            continue
        name = _field_name(f.expr)
        count = seen.get(name)
        if count is not None:
            while True:
                resolved = f"{name}_{count}"
                if resolved not in seen:
                    seen[name] = count + 1
                    name = resolved
                    break
                count += 1
        seen[name] = seen.get(name, 0) + 1
        names[i] = name
    return ["time", *names]


def expand(fields, measurements, catalog: Catalog, dimensions: set[str]) -> list[st.SelectField]:
    """Wildcards and regexes replaced by the fields (and, outside calls,
    tags) they stand for, sorted by name, as InfluxDB rewrites them."""
    field_keys: dict[str, str] = {}
    tag_keys: set[str] = set()
    for m in measurements:
        for key, kind in catalog.field_keys(m).items():
            field_keys.setdefault(key, kind)
        tag_keys.update(catalog.tag_keys(m))
    tag_keys -= dimensions
    out = []
    for f in fields:
        expr = f.expr
        if isinstance(expr, (st.Wildcard, st.RegexRef)):
            names = sorted(set(field_keys) | tag_keys)
            if isinstance(expr, st.RegexRef):
                names = [n for n in names if expr.pattern.search(n)]
            out.extend(st.SelectField(st.VarRef(n)) for n in names)
        elif isinstance(expr, st.Call) and expr.args and isinstance(expr.args[0], (st.Wildcard, st.RegexRef)):
            arg = expr.args[0]
            keys = [k for k in sorted(field_keys) if isinstance(arg, st.Wildcard) or arg.pattern.search(k)]
            if expr.name not in functions.FOR_STRINGS:
                keys = [k for k in keys if field_keys[k] != "string"]
            for key in keys:
                out.append(st.SelectField(st.Call(expr.name, (st.VarRef(key), *expr.args[1:])),
                                          f.alias and f"{f.alias}_{key}" or f"{expr.name}_{key}"))
        else:
            out.append(f)
    return out


def _field_of(call: st.Call) -> str:
    """The field a call reads (through a transformation's inner call)."""
    inner = call.args[0]
    return _field_of(inner) if isinstance(inner, st.Call) else inner.name


def _check_transform(call: st.Call, interval):
    name = call.name
    inner = call.args[0] if call.args else None
    if name in ("derivative", "non_negative_derivative"):
        if not 1 <= len(call.args) <= 2:
            raise QueryError(f"invalid number of arguments for {name}, expected at least 1 but no more than 2, "
                             f"got {len(call.args)}")
        if len(call.args) == 2 and not isinstance(call.args[1], st.Duration):
            raise QueryError(f"second argument to {name} must be a duration")
        if len(call.args) == 2 and call.args[1].ns <= 0:
            raise QueryError(f"duration argument must be positive, got {call.args[1].ns}ns")
    elif name == "moving_average":
        if len(call.args) != 2:
            raise QueryError(f"invalid number of arguments for moving_average, expected 2, got {len(call.args)}")
        n = call.args[1]
        if not (isinstance(n, st.Literal) and isinstance(n.value, int) and not isinstance(n.value, bool)):
            raise QueryError("second argument for moving_average must be an integer")
        if n.value <= 1:
            raise QueryError(f"moving_average window must be greater than 1, got {n.value}")
    elif len(call.args) != 1:
        raise QueryError(f"invalid number of arguments for {name}, expected 1, got {len(call.args)}")
    if not interval:
        if isinstance(inner, st.Call):
            raise QueryError(f"{name} aggregate requires a GROUP BY interval")
        if not isinstance(inner, st.VarRef):
            raise QueryError(f"expected field argument in {name}()")
        return  # of a raw field: on its samples
    if not isinstance(inner, st.Call):
        raise QueryError(f"aggregate function required inside the call to {name}")
    if inner.name in functions.TRANSFORMS:
        raise QueryError(f"{name}({inner.name}()) is not supported by this server")
    _check_call(inner, interval)


def _check_call(call: st.Call, interval=None):
    if call.name in functions.TRANSFORMS:
        _check_transform(call, interval)
        return
    if call.name not in functions.SUPPORTED:
        if call.name in functions.KNOWN:
            raise QueryError(f"{call.name}() is not supported by this server; "
                             f"use one of {', '.join(functions.SUPPORTED)}")
        raise QueryError(f"undefined function {call.name}()")
    expected = 2 if call.name == "percentile" else 1
    if len(call.args) != expected:
        raise QueryError(f"invalid number of arguments for {call.name}, expected {expected}, got {len(call.args)}")
    if not isinstance(call.args[0], st.VarRef):
        raise QueryError(f"expected field argument in {call.name}()")
    if expected == 2 and not (isinstance(call.args[1], st.Literal) and isinstance(call.args[1].value, (int, float))
                              and not isinstance(call.args[1].value, bool)):
        raise QueryError("expected float argument in percentile()")


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


# -- values ----------------------------------------------------------------------

def _arith(op: str, a, b):
    if a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b != 0 else 0.0
    if op == "%":
        return math.fmod(a, b) if b != 0 else 0.0
    raise QueryError(f"invalid operator {op} in a field expression")


def _value(expr, known: dict):
    if isinstance(expr, st.Literal):
        return expr.value
    if isinstance(expr, st.Call):
        return known.get(expr)
    if isinstance(expr, st.VarRef):
        return known.get(expr.name)
    if isinstance(expr, st.Binary):
        return _arith(expr.op, _value(expr.lhs, known), _value(expr.rhs, known))
    if isinstance(expr, st.Duration):
        return expr.ns
    raise QueryError("unsupported field expression")


def _window(t: int, interval: int, offset: int) -> int:
    return (t - offset) // interval * interval + offset


def _place(points, n: int, positions) -> list:
    """A call's values at their rows (``positions`` of its bucket starts), None elsewhere."""
    column = [None] * n
    buckets, values = points[0], points[1]
    for i, value in zip(positions(buckets), values, strict=True):
        column[i] = value
    return column


def _fill(kind: st.Fill, call: st.Call, column: list) -> list:
    """One call's column over the whole bucket range, its empty buckets filled."""
    fill = kind
    if fill.kind == "null" and call.name == "count":
        fill = st.Fill("number", 0)
    if fill.kind == "null":
        return column
    if fill.kind == "number":
        return [fill.value if v is None else v for v in column]
    if fill.kind == "linear":
        known = [(i, v) for i, v in enumerate(column) if v is not None]
        out = list(column)
        for (i0, v0), (i1, v1) in zip(known, known[1:], strict=False):
            for i in range(i0 + 1, i1):
                out[i] = v0 + (v1 - v0) * (i - i0) / (i1 - i0)
        return out
    out, previous = [], None
    for v in column:  # previous
        previous = v if v is not None else previous
        out.append(previous)
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
            _calls(f.expr, calls)
        for call in calls:
            _check_call(call, stmt.interval)
        bare = [n for f in fields for n in _refs(f.expr, [])]
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
        buckets = (_window(self.hi, interval, offset) - _window(lo, interval, offset)) // interval + 1
        total = buckets * len(self.columns) * max(len(groups), 1)
        if total > self.ctx.max_points:
            raise QueryError(f"the answer would hold {total} values ({buckets} buckets), more than the "
                             f"{self.ctx.max_points} one answer may hold (MAX_ANSWER_POINTS); "
                             "shorten the range or widen GROUP BY time()")

    def _fetch(self, calls, groups, reader: Reader, interval: int, offset: int) -> dict:
        """Statistics for ``calls``: one request per node for series held by
        one node; series held by several are merged from their samples."""
        stat_keys = {_field_of(c) for c in calls if c.name in functions.FROM_STATS}
        single, shared = [], []
        for group in groups:
            for _tags, columns in group.series:
                by_key: dict[str, list] = {}
                for column in columns:
                    if column.key in stat_keys:
                        by_key.setdefault(column.key, []).append(column)
                for cols in by_key.values():
                    (single if len(cols) == 1 else shared).append(tuple(cols))
        sample_keys = {_field_of(c) for c in calls if c.name in functions.FROM_SAMPLES}
        reader.samples([c for g in groups for _tags, cols in g.series for c in cols if c.key in sample_keys]
                       + [c for cols in shared for c in cols])
        stats = reader.stats([c[0] for c in single], interval, offset) if single else {}
        for cols in shared:
            merged = reader.series_stats(list(cols), interval, offset)
            if merged is not None:
                stats[cols] = merged
        buckets = sum(len(s["bucket"]) for s in stats.values())
        if buckets > self.ctx.max_points:  # judged before any row is built
            raise QueryError(f"the answer would hold more than {self.ctx.max_points} values ({buckets} non-empty "
                             "buckets), more than one answer may hold (MAX_ANSWER_POINTS); "
                             "shorten the range or widen GROUP BY time()")
        return stats

    def _aggregate(self, groups: list[Group]) -> list[dict]:
        self._check_buckets(groups)
        interval, offset = self._grid()
        keys = {_field_of(call) for call in self.calls}
        for group in groups:
            for _tags, columns in group.series:
                for column in columns:
                    if column.key in keys and column.type == "string":
                        for call in self.calls:
                            inner = call.args[0] if call.name in functions.TRANSFORMS else call
                            if _field_of(call) == column.key and inner.name not in functions.FOR_STRINGS:
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
            first = _window(lo, interval, offset) if lo != st.MIN_TIME else int(buckets[0])
            last = _window(self.hi, interval, offset)
            times = list(range(first, last + 1, interval))
            column = _place((buckets, values), len(times), lambda b: ((b - first) // interval).tolist())
            column = _fill(self.stmt.fill, inner_call, column)
            pairs = [(t, v) for t, v in zip(times, column, strict=True) if v is not None]
        else:
            pairs = [(t, v) for t, v in zip(buckets.tolist(), values, strict=True) if v is not None]
        unit = call.args[1].ns if call.name.endswith("derivative") and len(call.args) == 2 else interval
        window = call.args[1].value if call.name == "moving_average" else None
        t_out, v_out = functions.transform(call.name, pairs, unit, window)
        t_out = np.asarray(t_out, dtype=np.int64)
        return t_out, v_out, t_out

    def _call_points(self, call: st.Call, group: Group, stats: dict, interval: int, offset: int,
                     reader: Reader | None = None):
        if call.name in functions.TRANSFORMS:
            return self._transform_points(call, group, interval, offset)
        reader = reader or self.reader
        key = call.args[0].name
        if call.name in functions.FROM_SAMPLES:
            helds = [tuple(c for c in cols if c.key == key) for _tags, cols in group.series]
            if self.filtered is not None:
                parts = [self.filtered[h] for h in helds if h in self.filtered]
            else:
                parts = [reader.series_samples(list(h)) for h in helds if h]
            parts = [p for p in parts if len(p[0])]
            if not parts:
                return np.zeros(0, np.int64), [], np.zeros(0, np.int64)
            t_ns = np.concatenate([p[0] for p in parts])
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
            return self._series(group, [[time_ns, *[_value(f.expr, known) for f in self.fields]]])
        only_transforms = all(call.name in functions.TRANSFORMS for call in self.calls)
        if stmt.fill.kind == "none" or only_transforms:
            times = sorted(set().union(*[set(p[0].tolist()) for p in points.values()]))
            position = {t: i for i, t in enumerate(times)}
            filled = [_place(points[call], len(times), lambda b: [position[t] for t in b.tolist()])
                      for call in self.calls]
        else:
            if self.lo != st.MIN_TIME:
                first = _window(self.lo, interval, offset)
            else:
                first = min(int(p[0][0]) for p in points.values() if len(p[0]))
            last = _window(self.hi, interval, offset)
            times = list(range(first, last + 1, interval))
            filled = []
            for call in self.calls:
                column = _place(points[call], len(times), lambda b: ((b - first) // interval).tolist())
                transformed = call.name in functions.TRANSFORMS  # InfluxDB fills their input, not them
                filled.append(_fill(stmt.fill, call, column) if len(points[call][0]) and not transformed
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
                columns.append([_value(f.expr, {call: filled[i][r] for call, i in index.items()})
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
        refs = {n for f in self.fields for n in _refs(f.expr, [])}
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
                    rows.append([t, *[_value(f.expr, known) for f in self.fields]])
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
                window = call.args[1].value if call.name == "moving_average" else None
                points[call] = dict(zip(*functions.transform(call.name, pairs, unit, window), strict=True))
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
                    bucket = _window(t, interval, offset)
                    rank = functions.selector_rank(call, value, t)
                    if bucket not in best or rank < best[bucket][0]:
                        best[bucket] = (rank, t, value, point, tag_map)
            if not best:
                continue
            rows = []
            buckets = sorted(best)
            if self.stmt.interval and self.stmt.fill.kind != "none":
                first = _window(self.lo, interval, offset) if self.lo != st.MIN_TIME else buckets[0]
                times = list(range(first, _window(self.hi, interval, offset) + 1, interval))
            else:
                times = buckets
            column = _fill(self.stmt.fill, call, [best[b][2] if b in best else None for b in times]) \
                if self.stmt.interval else [best[b][2] for b in times]
            for b, selected in zip(times, column, strict=True):
                chosen = best.get(b)
                known = {call: selected}
                if chosen is not None:
                    known.update({k: v for k, v in chosen[4].items() if k in aux})
                    known.update({k: v for k, v in chosen[3].items() if k in aux})
                t = b if self.stmt.interval else chosen[1]
                rows.append([t, *[_value(f.expr, known) for f in self.fields]])
            series = self._series(group, rows)
            if series is not None:
                out.append(series)
        return out

    def _filtered_samples(self, groups, calls) -> dict:
        """With a field condition: each series' samples of each key the calls
        read, only at the points passing it; keyed as statistics are."""
        keys = {_field_of(c) for c in calls}
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
