"""Reading Grafana requests into plain values, with one-line errors.

Anything a client can get wrong is caught here and turned into
:class:`BadRequest`, whose message is what the client sees with a 400.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from sisock.contract import valid_node_name
from sisock.downsample import stride_for_points

DEFAULT_MAX_POINTS = 1000
MAX_POINTS_LIMIT = 1_000_000
#: Most points (all targets together) one answer may hold unless
#: ``MAX_ANSWER_POINTS`` says otherwise: an answer is built in memory, so
#: this bounds what one request can make the bridge hold.
DEFAULT_MAX_ANSWER_POINTS = 2_000_000
#: Most targets one SimpleJson ``/query`` may name: each distinct data node
#: costs a call through the router.
MAX_QUERY_TARGETS = 1000
SEPARATOR = "::"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)\s*$")


class BadRequest(ValueError):
    """The request cannot be answered as sent; the message says why."""


def json_body(raw: bytes, allow_empty: bool = False):
    """A request body read as JSON; None for an empty one where that is allowed."""
    if not raw.strip():
        if allow_empty:
            return None
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


class AnswerTooLarge(BadRequest):
    """The answer would hold more than the bridge or a data node ships at
    once (a data node says so by replying ``False`` to ``get_data``); a 400
    whose message names the limit and what to lower."""


@dataclass(frozen=True)
class Target:
    name: str
    node: str | None
    field: str | None
    ref_id: str | None
    type: str


@dataclass(frozen=True)
class Query:
    start: float
    end: float
    max_points: int
    targets: tuple
    #: The spacing Grafana asked for (``intervalMs``), seconds; None if not given.
    interval: float | None = None

    @property
    def min_stride(self) -> float:
        """The stride data nodes are asked for: the interval Grafana asked
        for, or wider when ``maxDataPoints`` allows fewer points
        (:func:`sisock.downsample.stride_for_points`)."""
        return max(self.interval or 0.0, stride_for_points(self.end - self.start, self.max_points))


def split_metric(name: str):
    """``"node::field"`` to ``(node, field)``; ``(None, None)`` if malformed."""
    node, sep, field = name.partition(SEPARATOR)
    if not sep or not node or not field:
        return None, None
    return node, field


def parse_time(value, what: str) -> float:
    """ISO 8601 (``Z`` or an offset; naive means UTC) or epoch ms, to UNIX s."""
    if isinstance(value, bool):
        raise BadRequest(f"{what} must be an ISO 8601 time, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value) / 1000.0
        except OverflowError:
            raise BadRequest(f"{what} is out of range: {str(value)[:64]!r}") from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text) / 1000.0 if text.lstrip("-").replace(".", "", 1).isdigit() else None
            if seconds is None:
                stamp = datetime.fromisoformat(text.replace("z", "Z"))
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=UTC)
                seconds = stamp.timestamp()
        except (ValueError, OverflowError):
            raise BadRequest(f"{what} is not an ISO 8601 time: {value[:64]!r}") from None
    else:
        raise BadRequest(f"{what} must be an ISO 8601 time, got {type(value).__name__}")
    if not math.isfinite(seconds) or abs(seconds) > 1e11:
        raise BadRequest(f"{what} is out of range: {str(value)[:64]!r}")
    return seconds


def parse_interval(value) -> float | None:
    """Grafana's ``interval`` (``"20s"``, ``"1m"``, ...) in seconds."""
    if value is None:
        return None
    match = _INTERVAL.match(str(value))
    if not match:
        raise BadRequest(f"interval is not a duration like '30s' or '5m': {str(value)[:32]!r}")
    return float(match[1]) * _UNITS[match[2]]


def _interval(body: dict) -> float | None:
    """Grafana's interval in seconds (``intervalMs``, else ``interval``)."""
    interval = body.get("intervalMs")
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0 \
                or not math.isfinite(interval):
            raise BadRequest("intervalMs must be a positive number")
        return interval / 1000.0
    return parse_interval(body.get("interval"))


def _max_points(body: dict, span: float) -> int:
    raw = body.get("maxDataPoints")
    seconds = _interval(body)
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw < 1:
            raise BadRequest("maxDataPoints must be a positive number")
        return int(min(raw, MAX_POINTS_LIMIT))
    if seconds:
        points = span / seconds  # may overflow to inf for a tiny interval
        if not points < MAX_POINTS_LIMIT:
            return MAX_POINTS_LIMIT
        return max(math.ceil(points), 1)
    return DEFAULT_MAX_POINTS


def _targets(body: dict) -> tuple:
    raw = body.get("targets", [])
    if not isinstance(raw, list):
        raise BadRequest("targets must be a list")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadRequest("each target must be an object")
        if item.get("hide") is True:
            continue
        name = item.get("target")
        if name is None or name == "":
            continue
        if not isinstance(name, str):
            raise BadRequest("target must be a string like 'node::field'")
        kind = item.get("type") or "timeserie"
        if kind not in ("timeserie", "timeseries", "table"):
            raise BadRequest(f"target type must be 'timeserie' or 'table', got {str(kind)[:32]!r}")
        ref_id = item.get("refId")
        node, field = split_metric(name)
        # A name the contract forbids is never called (a.b would address
        # another node's procedure): an empty series, as for an unknown node.
        if not valid_node_name(node):
            node, field = None, None
        out.append(Target(name, node, field, ref_id if isinstance(ref_id, str) else None,
                          "table" if kind == "table" else "timeserie"))
        if len(out) > MAX_QUERY_TARGETS:
            raise BadRequest(f"more than {MAX_QUERY_TARGETS} targets in one query; split the panel")
    return tuple(out)


def parse_query(body) -> Query:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    rng = body.get("range")
    if not isinstance(rng, dict) or "from" not in rng or "to" not in rng:
        raise BadRequest("missing range: expected {\"range\": {\"from\": ..., \"to\": ...}}")
    start = parse_time(rng["from"], "range.from")
    end = parse_time(rng["to"], "range.to")
    if end <= start:
        raise BadRequest("range.to must be later than range.from")
    return Query(start, end, _max_points(body, end - start), _targets(body), _interval(body))


def check_allowance(parts, limit: int) -> None:
    """Refuse an answer holding more than ``limit`` points in all.

    Judged on what the range really holds, each target counted at most
    ``maxDataPoints``: a large ``maxDataPoints`` over a short window is
    fine. Data nodes bound their replies before reading (the g3-reader
    estimates from its index), so what reaches this check is bounded too.
    ``parts`` are ``(target, t, ...)``."""
    total = sum(len(p[1]) for p in parts)
    if total > limit:
        raise AnswerTooLarge(f"the answer holds {total} points, more than the {limit} one answer may hold; "
                             "lower maxDataPoints, shorten the range or ask for fewer targets")


def _number_arg(args, name: str):
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw[:32]!r}") from None


def url_query(args, targets: tuple, now: float, default_span: float) -> Query:
    """A query from URL parameters (``from``, ``to``, ``maxDataPoints`` or
    ``intervalMs``), as Grafana's Infinity datasource sends them. Times are
    epoch ms or ISO 8601; a missing ``to`` means now and a missing ``from``
    ``default_span`` seconds before it, so a bare URL in a browser works."""
    end = parse_time(args["to"], "to") if args.get("to") else now
    start = parse_time(args["from"], "from") if args.get("from") else end - default_span
    if end <= start:
        raise BadRequest("to must be later than from")
    sizing = {"maxDataPoints": _number_arg(args, "maxDataPoints"), "intervalMs": _number_arg(args, "intervalMs")}
    sizing = {k: v for k, v in sizing.items() if v is not None}
    return Query(start, end, _max_points(sizing, end - start), targets, _interval(sizing))


def search_text(body) -> str:
    """The filter text of a ``/search`` body (empty: everything)."""
    if body is None:
        return ""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    target = body.get("target", "")
    if target is None:
        return ""
    if not isinstance(target, str):
        raise BadRequest("target must be a string")
    return target
