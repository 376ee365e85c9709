"""``sisock dashboard``: a Grafana dashboard for the fields a bridge serves.

Dashboards kept as generated JSON files can be reviewed, diffed and
provisioned like any other code, instead of living only in Grafana's
database where a click can change them unnoticed. The builder is a set of
pure functions from the bridge's field list to dicts, so the same
selection always gives byte-identical output (stable diffs, stable uid).

Infinity queries use absolute URLs. Infinity can prefix a URL set on the
datasource, but its backend only does so when the query URL does not
already start with that prefix, and earlier releases documented the
datasource URL as deprecated: a relative URL therefore works only with one
particular datasource configuration and fails with Infinity's default (an
empty URL), while an absolute URL works with an empty datasource URL and
with one equal to ``--grafana-url``. Moving the bridge means regenerating
the file, which is the point of keeping dashboards as code.

Each field is its own Infinity query rather than one URL with several
targets: the bridge then answers plain ``time``/``value`` rows, every
series is a frame with its own ``refId``, and legends and per-field units
attach to that ``refId`` (``byFrameRefID``). A multi-target URL would give
one long frame whose series names Grafana derives from a label, which the
overrides would have to guess. The cost, one request per field, is small
for housekeeping data.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from itertools import groupby

from sisock.components.http.influxql.catalog import layout

#: ``--datasource`` choices and the Grafana plugin id each stands for.
DATASOURCES = {
    "infinity": "yesoreyeram-infinity-datasource",
    "simplejson": "grafana-simple-json-datasource",
    "json": "simpod-json-datasource",
    "influxdb": "influxdb",
}
DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_DATASOURCE_UID = "sisock"
#: The compose stack provisions the bridge twice (Infinity, InfluxDB), and
#: Grafana needs a uid per datasource: this is the InfluxDB one.
INFLUXDB_DATASOURCE_UID = "sisock-influxdb"
DEFAULT_UIDS = {"influxdb": INFLUXDB_DATASOURCE_UID}


def default_datasource_uid(datasource: str) -> str:
    return DEFAULT_UIDS.get(datasource, DEFAULT_DATASOURCE_UID)
SCHEMA_VERSION = 39
#: Grafana's grid is 24 columns wide; two panels per row stay readable on a
#: laptop and still show a day of data at a useful resolution.
GRID_COLUMNS = 24
PANEL_WIDTH = 12
PANEL_HEIGHT = 8
#: Grafana refuses dashboard uids longer than this.
MAX_UID = 40
FETCH_TIMEOUT = 15.0

#: Units as data nodes spell them → Grafana's unit ids, so axes and
#: tooltips format values (and convert prefixes) instead of showing bare
#: numbers. Exact spellings only: case matters (``s`` second vs ``S``
#: siemens, ``A`` ampere vs ``a`` year).
UNITS = {
    **dict.fromkeys(("C", "degC", "deg C", "°C", "℃", "celsius", "Celsius"), "celsius"),
    **dict.fromkeys(("F", "degF", "°F", "fahrenheit"), "fahrenheit"),
    **dict.fromkeys(("K", "kelvin", "Kelvin"), "kelvin"),
    **dict.fromkeys(("%", "percent", "%RH", "% RH"), "percent"),
    **dict.fromkeys(("hPa", "hpa"), "pressurehpa"),
    **dict.fromkeys(("mbar", "mBar", "mb"), "pressurembar"),
    **dict.fromkeys(("Pa", "pa"), "pressurepa"),
    "kPa": "pressurekpa",
    "bar": "pressurebar",
    "psi": "pressurepsi",
    **dict.fromkeys(("m/s", "m s-1", "m s^-1", "ms-1"), "velocityms"),
    **dict.fromkeys(("km/h", "kmh", "kph"), "velocitykmh"),
    "mph": "velocitymph",
    **dict.fromkeys(("kn", "kt", "knot", "knots"), "velocityknot"),
    **dict.fromkeys(("deg", "degree", "degrees", "°"), "degree"),
    **dict.fromkeys(("rad", "radian", "radians"), "radian"),
    **dict.fromkeys(("V", "volt", "volts"), "volt"),
    "mV": "mvolt",
    "kV": "kvolt",
    **dict.fromkeys(("A", "amp", "amps", "ampere"), "amp"),
    "mA": "mamp",
    **dict.fromkeys(("W", "watt", "watts"), "watt"),
    "mW": "mwatt",
    "kW": "kwatt",
    **dict.fromkeys(("W/m2", "W/m^2", "W m-2"), "Wm2"),
    **dict.fromkeys(("Ohm", "ohm", "Ω"), "ohm"),
    **dict.fromkeys(("Hz", "hz"), "hertz"),
    "rpm": "rotrpm",
    **dict.fromkeys(("s", "sec", "seconds"), "s"),
    "ms": "ms",
    **dict.fromkeys(("us", "µs", "μs"), "µs"),
    "ns": "ns",
    "min": "m",
    "h": "h",
    "m": "lengthm",
    "mm": "lengthmm",
    "km": "lengthkm",
    "ppm": "ppm",
    "dB": "dB",
    "dBm": "dBm",
    "lux": "lux",
}


class BridgeError(Exception):
    """The field list could not be fetched; the message is one line for the user."""


# -- selection -------------------------------------------------------------


def grafana_unit(units: str | None) -> str | None:
    """Grafana's unit for ``units``; an unknown one is still shown, as a suffix,
    because a number without its unit is the worse failure."""
    if units is None or not units.strip():
        return None
    units = units.strip()
    return UNITS.get(units, f"suffix: {units}")


def select(fields: list[dict], nodes=(), patterns=()) -> list[dict]:
    """The numeric fields on any of ``nodes`` matching any of ``patterns``
    (globs on ``node::field``; none given: all), sorted, so the dashboard
    does not depend on the bridge's ordering. Strings and booleans are left
    out: a line plot is the wrong view of them (a state timeline is right)."""
    nodes, patterns = set(nodes or ()), list(patterns or ())
    chosen = [
        f for f in fields
        if (f.get("type") or "number") == "number"
        and (not nodes or f["node"] in nodes)
        and (not patterns or any(fnmatch.fnmatchcase(f["target"], p) for p in patterns))
    ]
    return sorted(chosen, key=lambda f: (f["node"], f["field"]))


def unmatched(fields: list[dict], nodes=(), patterns=()) -> list[str]:
    """Each ``--node``/``--match`` that selects nothing: usually a typo, worth
    saying even when other selections fill the dashboard."""
    numeric = select(fields)
    out = [f"no numeric fields on node {n!r}" for n in nodes or () if not any(f["node"] == n for f in numeric)]
    out += [f"no numeric fields match {p!r}" for p in patterns or ()
            if not any(fnmatch.fnmatchcase(f["target"], p) for f in numeric)]
    return out


def group(fields: list[dict], by: str) -> list[tuple[str, list[dict]]]:
    """``(title, fields)`` per panel. By unit, fields whose units Grafana
    formats alike share a panel whatever their spelling (``C``, ``degC``)."""
    keys = {"node": lambda f: f["node"], "unit": lambda f: grafana_unit(f.get("units")) or ""}
    if by not in keys:
        raise ValueError(f"group-by must be one of {', '.join(keys)}, got {by!r}")
    key = keys[by]
    out = []
    for _k, members in groupby(sorted(fields, key=lambda f: (key(f), f["node"], f["field"])), key):
        members = list(members)
        if by == "node":
            title = members[0]["node"]
        else:
            title = (members[0].get("units") or "").strip() or "no units"
        out.append((title, members))
    return out


# -- building --------------------------------------------------------------


def ref_id(index: int) -> str:
    """A, B, ..., Z, AA, AB, ...: Grafana's own scheme, so hand-added queries
    continue it."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def default_uid(title: str) -> str:
    """Readable and stable: the same title always provisions over the same
    dashboard instead of adding a copy."""
    digest = hashlib.sha1(title.encode("utf-8")).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower())[: MAX_UID - len(digest) - 1].strip("-")
    return f"{slug}-{digest}" if slug else digest


def data_url(grafana_url: str, target: str) -> str:
    """``intervalMs`` lets the bridge downsample to the panel's resolution;
    Grafana (and Infinity's backend, for alerting) fill in the variables."""
    return (f"{grafana_url.rstrip('/')}/api/v1/data?target={urllib.parse.quote(target, safe='')}"
            "&from=${__from}&to=${__to}&intervalMs=${__interval_ms}")


def infinity_target(field: dict, ref: str, ds: dict, grafana_url: str) -> dict:
    """The backend parser, because only it serves alerting and public
    dashboards; one target per URL, so no ``series`` column is needed."""
    return {
        "refId": ref,
        "datasource": ds,
        "type": "json",
        "source": "url",
        "parser": "backend",
        "format": "timeseries",
        "url": data_url(grafana_url, field["target"]),
        "url_options": {"method": "GET", "data": "", "params": [], "headers": []},
        "root_selector": "",
        "columns": [
            {"selector": "time", "text": "time", "type": "timestamp_epoch"},
            {"selector": "value", "text": "value", "type": "number"},
        ],
        "filters": [],
    }


def influx_layout(field: dict) -> dict:
    """Measurement, tags and field key of a field in the bridge's
    ``/influxdb`` API (bridges before it: derived from the name alone)."""
    stated = field.get("influxdb")
    if isinstance(stated, dict) and stated.get("measurement"):
        return stated
    return layout(field["node"], field["field"])


def influxdb_target(field: dict, ref: str, ds: dict, alias: str) -> dict:
    """Grafana's InfluxQL query builder model: the mean per panel interval,
    the series chosen by its tags, as a dashboard made for the OCS
    InfluxDB publisher queries it (and still editable in the builder)."""
    lay = influx_layout(field)
    tags = [{"key": k, "operator": "=", "value": v, **({"condition": "AND"} if i else {})}
            for i, (k, v) in enumerate(sorted(lay.get("tags", {}).items()))]
    return {
        "refId": ref,
        "datasource": ds,
        "alias": alias,
        "measurement": lay["measurement"],
        "policy": "default",
        "resultFormat": "time_series",
        "orderByTime": "ASC",
        "rawQuery": False,
        "tags": tags,
        "groupBy": [{"type": "time", "params": ["$__interval"]}, {"type": "fill", "params": ["null"]}],
        "select": [[{"type": "field", "params": [lay["field"]]}, {"type": "mean", "params": []}]],
    }


def simplejson_target(field: dict, ref: str, ds: dict) -> dict:
    return {"refId": ref, "datasource": ds, "target": field["target"], "type": "timeserie"}


def _override(matcher: str, option: str, properties: dict) -> dict:
    return {"matcher": {"id": matcher, "options": option},
            "properties": [{"id": k, "value": v} for k, v in properties.items()]}


def panel(panel_id: int, title: str, fields: list[dict], datasource: str, ds: dict,
          grafana_url: str, grid_pos: dict, short_names: bool) -> dict:
    """A shared unit goes on the panel; mixed units go per series.

    Infinity frames are named after their ``refId``, so its series get their
    legend name and unit by ``byFrameRefID``; InfluxDB queries name their
    series with an alias and take units by ``refId`` too. SimpleJson and
    JSON frames are already named after the target, which ``byName`` matches."""
    units = {grafana_unit(f.get("units")) for f in fields}
    shared = units.pop() if len(units) == 1 else None
    targets, overrides = [], []
    for index, field in enumerate(fields):
        ref = ref_id(index)
        props = {}
        if datasource == "infinity":
            targets.append(infinity_target(field, ref, ds, grafana_url))
            props["displayName"] = field["field"] if short_names else field["target"]
        elif datasource == "influxdb":
            targets.append(influxdb_target(field, ref, ds, field["field"] if short_names else field["target"]))
        else:
            targets.append(simplejson_target(field, ref, ds))
        unit = grafana_unit(field.get("units"))
        if len(units) > 1 and unit:
            props["unit"] = unit
        if props:
            matcher, option = (("byFrameRefID", ref) if datasource in ("infinity", "influxdb")
                               else ("byName", field["target"]))
            overrides.append(_override(matcher, option, props))
    defaults = {"custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never"}}
    if shared:
        defaults["unit"] = shared
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": ds,
        "gridPos": grid_pos,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides},
        "options": {
            "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }


def grid(index: int, count: int) -> dict:
    """Rows of two half-width panels; a lone panel takes the whole width."""
    width = GRID_COLUMNS if count == 1 else PANEL_WIDTH
    per_row = GRID_COLUMNS // width
    return {"h": PANEL_HEIGHT, "w": width, "x": (index % per_row) * width, "y": (index // per_row) * PANEL_HEIGHT}


def dashboard(fields: list[dict], *, title: str, uid: str | None = None, datasource: str = "infinity",
              datasource_uid: str | None = None, grafana_url: str = DEFAULT_URL,
              group_by: str = "node", refresh: str = "30s", time_from: str = "now-6h",
              timezone: str = "utc") -> dict:
    """The dashboard for already selected ``fields``. ``id`` is null so that
    importing or provisioning never collides with an existing dashboard's
    database id; ``uid`` is what identifies it."""
    if datasource not in DATASOURCES:
        raise ValueError(f"datasource must be one of {', '.join(DATASOURCES)}, got {datasource!r}")
    ds = {"type": DATASOURCES[datasource], "uid": datasource_uid or default_datasource_uid(datasource)}
    groups = group(fields, group_by)
    panels = [
        panel(i + 1, name, members, datasource, ds, grafana_url, grid(i, len(groups)), group_by == "node")
        for i, (name, members) in enumerate(groups)
    ]
    return {
        "id": None,
        "uid": uid or default_uid(title),
        "title": title,
        "description": "Generated by `sisock dashboard`; regenerate rather than edit.",
        "tags": ["sisock"],
        "timezone": timezone,
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "weekStart": "",
        "templating": {"list": []},
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }]},
        "panels": panels,
    }


def uid_argument(text: str) -> str:
    """``--uid`` checked up front: Grafana would reject the file only when
    provisioning it, far from the command that wrote it."""
    if not re.fullmatch(f"[A-Za-z0-9_-]{{1,{MAX_UID}}}", text):
        raise argparse.ArgumentTypeError(f"use 1 to {MAX_UID} letters, digits, '-' or '_'")
    return text


def default_title(nodes=()) -> str:
    """From the arguments, not from what the bridge returns, so the derived
    uid does not change when a node comes or goes."""
    return f"sisock: {', '.join(nodes)}" if nodes else "sisock"


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- I/O -------------------------------------------------------------------


def fetch_fields(url: str, timeout: float = FETCH_TIMEOUT) -> list[dict]:
    """The bridge's field list; any failure is a :class:`BridgeError` whose
    message says what to check, not a traceback."""
    endpoint = f"{url.rstrip('/')}/api/v1/fields"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BridgeError(f"--url {url!r} is not an http(s) URL such as {DEFAULT_URL}")
    request = urllib.request.Request(endpoint, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc).get("message") or exc.reason
        except (ValueError, AttributeError):
            detail = exc.reason
        hint = " (a bridge without the /api/v1 REST API?)" if exc.code == 404 else ""
        raise BridgeError(f"{endpoint} answered HTTP {exc.code}: {detail}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BridgeError(f"cannot reach the bridge at {url}: {reason}") from None
    except ValueError as exc:
        raise BridgeError(f"{endpoint} did not answer JSON: {exc}") from None
    if not isinstance(body, list) or not all(isinstance(f, dict) and "target" in f for f in body):
        raise BridgeError(f"{endpoint} did not answer a list of fields")
    return body


def write(text: str, path: str | None) -> None:
    """Replaces the file in one step, because Grafana re-reads provisioned
    dashboards on a timer and must never see half a file."""
    if path in (None, "-"):
        sys.stdout.write(text)
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".dashboard-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run(args) -> int:
    """Exit code 2 for a bridge that cannot be asked or a selection that is
    empty, so a provisioning script stops instead of writing an empty board."""
    def fail(message: str) -> int:
        print(f"sisock dashboard: {message}", file=sys.stderr)
        return 2

    try:
        fields = fetch_fields(args.url)
    except BridgeError as exc:
        return fail(str(exc))
    chosen = select(fields, args.node, args.match)
    if not chosen:
        asked = " ".join([*(f"--node {n}" for n in args.node), *(f"--match {p}" for p in args.match)])
        return fail(f"no numeric fields at {args.url} match {asked or 'anything'}")
    for warning in unmatched(fields, args.node, args.match):
        print(f"sisock dashboard: warning: {warning}", file=sys.stderr)
    title = args.title or default_title(args.node)
    doc = dashboard(chosen, title=title, uid=args.uid, datasource=args.datasource,
                    datasource_uid=args.datasource_uid, grafana_url=args.grafana_url or args.url,
                    group_by=args.group_by, refresh=args.refresh, time_from=args.time_from,
                    timezone=args.timezone)
    try:
        write(to_json(doc), args.output)
    except OSError as exc:
        return fail(f"cannot write {args.output}: {exc.strerror or exc}")
    return 0
