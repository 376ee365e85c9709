"""WHERE clauses: the time range they give and the tag filter they leave.

Follows InfluxDB 1.x: every ``time`` comparison narrows one range (``>``
and ``<`` by one nanosecond), even under ``OR``; what remains filters
series by their tags, a missing tag reading as the empty string.
"""

from __future__ import annotations

import calendar
import re

from . import statements as st

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})?$")
_FLIP = {">": "<", "<": ">", ">=": "<=", "<=": ">="}


class QueryError(ValueError):
    """A statement that parses but cannot be run; the message is the
    statement's one-line ``error``."""


def time_literal_ns(text: str) -> int | None:
    """Nanoseconds of an InfluxQL date or date-time string; None if it is
    not one (``ValueError`` if it looks like one but is not a valid time)."""
    match = _DATE.match(text)
    if match:
        parts = [int(g) for g in match.groups()] + [0, 0, 0]
        frac, zone = "", "Z"
    else:
        match = _DATETIME.match(text)
        if not match:
            return None
        parts = [int(g) for g in match.groups()[:6]]
        frac, zone = match[7] or "", match[8] or "Z"
    year, month, day, hour, minute, second = parts
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
            and hour < 24 and minute < 60 and second < 60):
        raise QueryError("invalid timestamp string")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def _time_value(expr, now_ns: int) -> int:
    if isinstance(expr, st.Literal):
        value = expr.value
        if isinstance(value, str):
            ns = time_literal_ns(value)
            if ns is None:
                raise QueryError("invalid operation: time and *influxql.StringLiteral are not compatible")
            return ns
        if isinstance(value, bool):
            raise QueryError("invalid operation: time and *influxql.BooleanLiteral are not compatible")
        return int(value)
    if isinstance(expr, st.Duration):
        return expr.ns
    if isinstance(expr, st.Call) and expr.name == "now" and not expr.args:
        return now_ns
    if isinstance(expr, st.Binary) and expr.op in ("+", "-"):
        lhs, rhs = _time_value(expr.lhs, now_ns), _time_value(expr.rhs, now_ns)
        return lhs + rhs if expr.op == "+" else lhs - rhs
    raise QueryError(f"invalid operation: time and {_kind(expr)} are not compatible")


def _kind(expr) -> str:
    return {st.VarRef: "*influxql.VarRef", st.RegexRef: "*influxql.RegexLiteral",
            st.Call: "*influxql.Call"}.get(type(expr), "*influxql.BinaryExpr")


def _is_time(expr) -> bool:
    return isinstance(expr, st.VarRef) and expr.name.lower() == "time"


def split(cond, now_ns: int) -> tuple[int, int, object]:
    """``(min ns, max ns, rest)``: the range (InfluxDB's open bounds when
    unbounded) and the condition without its time comparisons (None: all)."""
    lo, hi = st.MIN_TIME, st.MAX_TIME
    if cond is None:
        return lo, hi, None
    if isinstance(cond, st.Binary) and cond.op in ("and", "or"):
        llo, lhi, lrest = split(cond.lhs, now_ns)
        rlo, rhi, rrest = split(cond.rhs, now_ns)
        rest = lrest if rrest is None else rrest if lrest is None else st.Binary(cond.op, lrest, rrest)
        return max(llo, rlo), min(lhi, rhi), rest
    if isinstance(cond, st.Binary) and (_is_time(cond.lhs) or _is_time(cond.rhs)):
        op, other = (cond.op, cond.rhs) if _is_time(cond.lhs) else (_FLIP.get(cond.op, cond.op), cond.lhs)
        value = _time_value(other, now_ns)
        if op == ">":
            return value + 1, hi, None
        if op == ">=":
            return value, hi, None
        if op == "<":
            return lo, value - 1, None
        if op == "<=":
            return lo, value, None
        if op == "=":
            return value, value, None
        raise QueryError(f"invalid time comparison operator: {op}")
    if isinstance(cond, st.Literal) and cond.value is True:
        return lo, hi, None
    return lo, hi, cond


def keys_in(cond) -> set[str]:
    """Names a tag filter refers to."""
    if isinstance(cond, st.Binary):
        return keys_in(cond.lhs) | keys_in(cond.rhs)
    if isinstance(cond, st.VarRef):
        return {cond.name}
    return set()


def matches(cond, tags: dict) -> bool:
    """Whether a series with ``tags`` passes the tag filter ``cond``."""
    if cond is None:
        return True
    if isinstance(cond, st.Literal):
        return bool(cond.value) if isinstance(cond.value, bool) else False
    if not isinstance(cond, st.Binary):
        raise QueryError("invalid condition expression")
    if cond.op == "and":
        return matches(cond.lhs, tags) and matches(cond.rhs, tags)
    if cond.op == "or":
        return matches(cond.lhs, tags) or matches(cond.rhs, tags)
    lhs, rhs = cond.lhs, cond.rhs
    if not isinstance(lhs, st.VarRef) and isinstance(rhs, st.VarRef):
        lhs, rhs = rhs, lhs
    if not isinstance(lhs, st.VarRef):
        raise QueryError("invalid condition expression: tags can only be compared with strings or regexes")
    value = tags.get(lhs.name, "")
    if cond.op in ("=~", "!~"):
        if not isinstance(rhs, st.RegexRef):
            raise QueryError(f"invalid operation: {cond.op} needs a regular expression")
        found = rhs.pattern.search(value) is not None
        return found if cond.op == "=~" else not found
    if cond.op in ("=", "!="):
        if isinstance(rhs, st.VarRef):
            same = value == tags.get(rhs.name, "")
        elif isinstance(rhs, st.Literal) and isinstance(rhs.value, str):
            same = value == rhs.value
        else:
            same = False
        return same if cond.op == "=" else not same
    if cond.op in ("<", "<=", ">", ">="):
        return False
    raise QueryError(f"invalid condition operator: {cond.op}")


_COMPARE = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _operand(expr, tags: dict, fields: dict):
    if isinstance(expr, st.VarRef):
        if expr.name in fields:
            return fields[expr.name]
        return tags.get(expr.name, "" if expr.name not in fields else None)
    if isinstance(expr, st.Literal):
        return expr.value
    if isinstance(expr, st.Binary) and expr.op in ("+", "-", "*", "/"):
        a, b = _operand(expr.lhs, tags, fields), _operand(expr.rhs, tags, fields)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
            return None
        if expr.op == "/":
            return a / b if b else 0.0
        return {"+": a + b, "-": a - b, "*": a * b}[expr.op]
    raise QueryError("invalid condition expression")


def point_matches(cond, tags: dict, fields: dict) -> bool:
    """Whether one point (its series' tags, its field values at that time,
    None for a field it lacks) passes ``cond``: InfluxDB's field filter. A
    comparison with a missing field is false."""
    if cond is None:
        return True
    if isinstance(cond, st.Literal):
        return cond.value is True
    if not isinstance(cond, st.Binary):
        raise QueryError("invalid condition expression")
    if cond.op == "and":
        return point_matches(cond.lhs, tags, fields) and point_matches(cond.rhs, tags, fields)
    if cond.op == "or":
        return point_matches(cond.lhs, tags, fields) or point_matches(cond.rhs, tags, fields)
    if cond.op in ("=~", "!~"):
        value = _operand(cond.lhs, tags, fields)
        if not isinstance(value, str) or not isinstance(cond.rhs, st.RegexRef):
            return False
        found = cond.rhs.pattern.search(value) is not None
        return found if cond.op == "=~" else not found
    compare = _COMPARE.get(cond.op)
    if compare is None:
        raise QueryError(f"invalid condition operator: {cond.op}")
    a, b = _operand(cond.lhs, tags, fields), _operand(cond.rhs, tags, fields)
    if a is None or b is None:
        return False
    numbers = (int, float)
    if isinstance(a, numbers) != isinstance(b, numbers) or isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(compare(a, b))
    except TypeError:
        return False
