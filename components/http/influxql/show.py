"""SHOW statements, in the shapes InfluxDB 1.x answers them."""

from __future__ import annotations

from . import conditions
from . import statements as st
from .catalog import DATABASE, RETENTION_POLICY, Catalog
from .conditions import QueryError


def _page(values: list, limit: int, offset: int) -> list:
    if offset:
        values = values[offset:]
    if limit:
        values = values[:limit]
    return values


def _measurements_with_series(catalog: Catalog, measurements, cond) -> list[str]:
    if cond is None:
        return list(measurements)
    _lo, _hi, tag_cond = conditions.split(cond, 0)
    return [m for m in measurements
            if any(conditions.matches(tag_cond, dict(tags)) for tags in catalog.series_of(m))]


def _sources(catalog: Catalog, sources) -> list[str]:
    known = catalog.measurements()
    if not sources:
        return known
    return sorted({m for m in known for s in sources if s.matches(m)})


def show_databases() -> list[dict]:
    return [{"name": "databases", "columns": ["name"], "values": [[DATABASE]]}]


def show_retention_policies() -> list[dict]:
    return [{"columns": ["name", "duration", "shardGroupDuration", "replicaN", "default"],
             "values": [[RETENTION_POLICY, "0s", "168h0m0s", 1, True]]}]


def show_measurements(stmt: st.ShowMeasurements, catalog: Catalog) -> list[dict]:
    names = catalog.measurements()
    if stmt.match is not None:
        op, value = stmt.match
        if op == "=":
            names = [n for n in names if n == value]
        elif op == "!=":
            names = [n for n in names if n != value]
        elif op == "=~":
            names = [n for n in names if value.search(n)]
        else:
            names = [n for n in names if not value.search(n)]
    names = _page(_measurements_with_series(catalog, names, stmt.condition), stmt.limit, stmt.offset)
    if not names:
        return []
    return [{"name": "measurements", "columns": ["name"], "values": [[n] for n in names]}]


def show_field_keys(stmt: st.ShowFieldKeys, catalog: Catalog) -> list[dict]:
    out = []
    for m in _sources(catalog, stmt.sources):
        keys = _page(list(catalog.field_keys(m).items()), stmt.limit, stmt.offset)
        if keys:
            out.append({"name": m, "columns": ["fieldKey", "fieldType"], "values": [list(k) for k in keys]})
    return out


def show_tag_keys(stmt: st.ShowTagKeys, catalog: Catalog) -> list[dict]:
    out = []
    _lo, _hi, tag_cond = conditions.split(stmt.condition, 0)
    for m in _sources(catalog, stmt.sources):
        series = [tags for tags in catalog.series_of(m) if conditions.matches(tag_cond, dict(tags))]
        keys = _page(sorted({k for tags in series for k, _ in tags}), stmt.limit, stmt.offset)
        if keys:
            out.append({"name": m, "columns": ["tagKey"], "values": [[k] for k in keys]})
    return out


def _key_matches(key_spec, key: str) -> bool:
    op, value = key_spec
    if op in ("=", "in"):
        return key in value
    if op == "!=":
        return key not in value
    if op == "=~":
        return value.search(key) is not None
    if op == "!~":
        return value.search(key) is None
    raise QueryError(f"invalid WITH KEY operator {op}")


def show_tag_values(stmt: st.ShowTagValues, catalog: Catalog) -> list[dict]:
    out = []
    _lo, _hi, tag_cond = conditions.split(stmt.condition, 0)
    for m in _sources(catalog, stmt.sources):
        pairs = set()
        for tags in catalog.series_of(m):
            if not conditions.matches(tag_cond, dict(tags)):
                continue
            pairs.update((k, v) for k, v in tags if _key_matches(stmt.key, k))
        values = _page(sorted(pairs), stmt.limit, stmt.offset)
        if values:
            out.append({"name": m, "columns": ["key", "value"], "values": [list(p) for p in values]})
    return out


def _escape(text: str, chars: str) -> str:
    for ch in chars:
        text = text.replace(ch, "\\" + ch)
    return text


def series_key(measurement: str, tags) -> str:
    """InfluxDB's series key: ``measurement,tag=value,...`` escaped as line protocol."""
    parts = [_escape(measurement, ", ")] + [f"{_escape(k, ', =')}={_escape(v, ', =')}" for k, v in tags]
    return ",".join(parts)


def show_series(stmt: st.ShowSeries, catalog: Catalog) -> list[dict]:
    _lo, _hi, tag_cond = conditions.split(stmt.condition, 0)
    keys = sorted(series_key(m, tags) for m in _sources(catalog, stmt.sources)
                  for tags in catalog.series_of(m) if conditions.matches(tag_cond, dict(tags)))
    keys = _page(keys, stmt.limit, stmt.offset)
    return [{"columns": ["key"], "values": [[k] for k in keys]}] if keys else []
