"""``/api/v1``: a small REST API made for Grafana's Infinity datasource.

Infinity calls any JSON URL, so a panel needs only
``/api/v1/data?target=node::field&from=${__from}&to=${__to}&intervalMs=${__interval_ms}``.
Everything here is GET with query parameters (Infinity's backend parser,
which alerting needs, handles GET best) and answers rows of plain objects,
the shape its parser turns into frames without configuration. The data path
is :meth:`DataSource.samples`, shared with the SimpleJson routes.
"""

from __future__ import annotations

import fnmatch
import time

import numpy as np
from flask import Blueprint, request

from . import openapi, series
from .influxql.catalog import layout
from .request import DEFAULT_MAX_ANSWER_POINTS, SEPARATOR, BadRequest, Target, split_metric, url_query

#: Answer for ``/api/v1/data`` without ``from``: the last six hours.
DEFAULT_SPAN = 6 * 3600.0
#: A glob may match a whole site; more series than this in one panel is a
#: mistake, and refusing it keeps one request from holding the bridge.
MAX_TARGETS = 100
#: Most points (all targets together) one ``/api/v1/data`` answer may hold
#: by default (``MAX_ANSWER_POINTS`` changes it).
MAX_TOTAL_POINTS = DEFAULT_MAX_ANSWER_POINTS
FORMATS = ("rows", "columns")
_GLOB = set("*?[")


class NotFound(LookupError):
    """A named data node does not exist; the API answers 404."""


def _is_glob(text: str) -> bool:
    return not _GLOB.isdisjoint(text)


def resolve_targets(patterns: list[str], datasource) -> list[str]:
    """Metric names for the ``target`` parameters, globs expanded, in order,
    without repeats. A field a known node does not list yet is kept (a live
    feed's channels appear over time); an unknown node is an error."""
    if not patterns:
        raise BadRequest("missing target: give target=<node>::<field> (repeatable, globs allowed)")
    datasource.require_link()
    known = None  # every metric name, listed only if a glob needs it
    out: dict[str, None] = {}
    for pattern in patterns:
        node, field = split_metric(pattern)
        if node is None:
            raise BadRequest(f"target must look like 'node{SEPARATOR}field', got {pattern[:64]!r}")
        if _is_glob(pattern):
            known = datasource.metrics() if known is None else known
            out.update(dict.fromkeys(name for name in known if fnmatch.fnmatchcase(name, pattern)))
        elif datasource.has_node(node):
            out[pattern] = None
        else:
            raise NotFound(f"no data node named {node[:64]!r}")
    if len(out) > MAX_TARGETS:
        raise BadRequest(f"the targets match {len(out)} fields; at most {MAX_TARGETS} per request")
    return list(out)


def _rows(parts: list[tuple], with_series: bool) -> list[dict]:
    """Long format, sorted by time: what Infinity's time-series format
    expects (a string column becomes the series label)."""
    if not parts:
        return []
    times = np.concatenate([t for _name, t, _values in parts]) * 1000.0
    values = [v for _name, _t, vals in parts for v in series.plain(vals)]
    names = [name for name, t, _values in parts for _ in range(len(t))]
    order = np.argsort(times, kind="stable").tolist()
    times = times.tolist()
    if with_series:
        return [{"time": times[i], "value": values[i], "series": names[i]} for i in order]
    return [{"time": times[i], "value": values[i]} for i in order]


def _columns(parts: list[tuple], datasource) -> dict:
    out = []
    for name, t, values in parts:
        node, field = split_metric(name)
        out.append({"target": name, "node": node, "field": field,
                    "units": datasource.field_info(node, field).get("units"),
                    "time": t * 1000.0, "value": values})
    return {"series": out}


def create_api(datasource, respond, max_answer_points: int = MAX_TOTAL_POINTS) -> Blueprint:
    """The blueprint; ``respond(obj, status=200)`` makes the JSON response."""
    api = Blueprint("api_v1", __name__, url_prefix="/api/v1")

    @api.get("/nodes")
    def nodes():
        """Data nodes and how many fields each has (filter: ``q``)."""
        counts: dict[str, int] = {}
        for node, _field, _info in datasource.field_infos():
            counts[node] = counts.get(node, 0) + 1
        needle = request.args.get("q", "").lower()
        return respond([{"node": n, "fields": counts.get(n, 0)} for n in datasource.nodes(needle)])

    @api.get("/fields")
    def fields():
        """Fields with their units, of one node (``node``) or all (filter: ``q``),
        and where ``/influxdb`` shows each (measurement, tags, field key)."""
        node = request.args.get("node") or None
        try:
            rows = datasource.field_infos(node, request.args.get("q", ""))
        except KeyError:
            raise NotFound(f"no data node named {node[:64]!r}") from None
        return respond([
            {"target": f"{n}{SEPARATOR}{f}", "node": n, "field": f, "units": info.get("units"),
             "type": info.get("type") or "number", "integer": info.get("integer") is True,
             "description": info.get("description"),
             "influxdb": layout(n, f, info)}
            for n, f, info in rows
        ])

    @api.get("/data")
    def data():
        """Samples of one or more targets between ``from`` and ``to``."""
        fmt = request.args.get("format", "rows")
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of {', '.join(FORMATS)}, got {fmt[:32]!r}")
        names = resolve_targets(request.args.getlist("target"), datasource)
        targets = tuple(Target(name, *split_metric(name), None, "timeserie") for name in names)
        q = url_query(request.args, targets, time.time(), DEFAULT_SPAN)
        parts = [(target.name, t, values) for target, t, values in datasource.samples(q, max_answer_points)]
        if fmt == "columns":
            return respond(_columns(parts, datasource))
        return respond(_rows(parts, with_series=len(targets) > 1))

    @api.get("/openapi.json")
    def spec():
        return respond(openapi.SPEC)

    return api
