"""SELECT's fields: calls and references in them, InfluxDB's column names,
wildcards expanded, and which calls the server answers."""

from __future__ import annotations

from . import functions
from . import statements as st
from .catalog import Catalog
from .conditions import QueryError


def calls_in(expr, out: list):
    if isinstance(expr, st.Call):
        if expr not in out:
            out.append(expr)
    elif isinstance(expr, st.Binary):
        calls_in(expr.lhs, out)
        calls_in(expr.rhs, out)
    return out


def refs_in(expr, out: list):
    """Bare variable references (outside calls)."""
    if isinstance(expr, st.VarRef):
        out.append(expr.name)
    elif isinstance(expr, st.Binary):
        refs_in(expr.lhs, out)
        refs_in(expr.rhs, out)
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


def field_of(call: st.Call) -> str:
    """The field a call reads (through a transformation's inner call)."""
    inner = call.args[0]
    return field_of(inner) if isinstance(inner, st.Call) else inner.name


def counts_distinct(call: st.Call) -> bool:
    """``count(distinct("f"))``: computed from samples."""
    return (call.name == "count" and len(call.args) == 1 and isinstance(call.args[0], st.Call)
            and call.args[0].name == "distinct")


def from_samples(call: st.Call) -> bool:
    return call.name in functions.FROM_SAMPLES or counts_distinct(call)


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
    check_call(inner, interval)


def check_call(call: st.Call, interval=None):
    if call.name in functions.TRANSFORMS:
        _check_transform(call, interval)
        return
    if call.name not in functions.SUPPORTED:
        if call.name in functions.KNOWN:
            raise QueryError(f"{call.name}() is not supported by this server; "
                             f"use one of {', '.join(functions.SUPPORTED)}")
        raise QueryError(f"undefined function {call.name}()")
    if counts_distinct(call):
        inner = call.args[0]
        if len(call.args) != 1 or len(inner.args) != 1 or not isinstance(inner.args[0], st.VarRef):
            raise QueryError("expected field argument in distinct()")
        return
    expected = 2 if call.name == "percentile" else 1
    if len(call.args) != expected:
        raise QueryError(f"invalid number of arguments for {call.name}, expected {expected}, got {len(call.args)}")
    if not isinstance(call.args[0], st.VarRef):
        raise QueryError(f"expected field argument in {call.name}()")
    if expected == 2 and not (isinstance(call.args[1], st.Literal) and isinstance(call.args[1].value, (int, float))
                              and not isinstance(call.args[1].value, bool)):
        raise QueryError("expected float argument in percentile()")
