"""Rows of a SELECT answer: field expressions evaluated on one row's
values, bucket windows, and InfluxDB's fill() of empty buckets."""

from __future__ import annotations

import math

from . import statements as st
from .conditions import QueryError


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


def value_of(expr, known: dict):
    if isinstance(expr, st.Literal):
        return expr.value
    if isinstance(expr, st.Call):
        return known.get(expr)
    if isinstance(expr, st.VarRef):
        return known.get(expr.name)
    if isinstance(expr, st.Binary):
        return _arith(expr.op, value_of(expr.lhs, known), value_of(expr.rhs, known))
    if isinstance(expr, st.Duration):
        return expr.ns
    raise QueryError("unsupported field expression")


def window(t: int, interval: int, offset: int) -> int:
    return (t - offset) // interval * interval + offset


def place(points, n: int, positions) -> list:
    """A call's values at their rows (``positions`` of its bucket starts), None elsewhere."""
    column = [None] * n
    buckets, values = points[0], points[1]
    for i, value in zip(positions(buckets), values, strict=True):
        column[i] = value
    return column


def fill_column(kind: st.Fill, call: st.Call, column: list) -> list:
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
