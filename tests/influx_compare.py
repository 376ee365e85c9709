"""Comparing two InfluxDB 1.x JSON answers: structure and names equal,
times exact, values to 1e-9 relative.

Numbers compare by value (InfluxDB writes an integer field's sum as ``5``
where another implementation may write ``5.0``: the same number to any
client), booleans and strings exactly. A time derived from ``now()`` may be
allowed to differ by ``now_slack`` ns: the two servers read their clocks at
different moments, and nothing else."""

from __future__ import annotations

import math

REL = 1e-9
ABS = 1e-12  # for results that cancel to ~0 (a spread, a mean around zero)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _cell_diff(a, b, is_time: bool, now_slack: int) -> str | None:
    if is_time:
        if a == b:
            return None
        if now_slack and _number(a) and _number(b) and abs(a - b) <= now_slack:
            return None
        return f"time {a!r} != {b!r}"
    if _number(a) and _number(b):
        return None if math.isclose(a, b, rel_tol=REL, abs_tol=ABS) else f"value {a!r} != {b!r}"
    return None if (type(a) is type(b) and a == b) else f"value {a!r} != {b!r}"


def same_point(want: dict, got: dict) -> bool:
    """Two points as the ``influxdb`` client's ``get_points`` yields them: same keys,
    the same time, values equal by the rules above."""
    return set(want) == set(got) and all(_cell_diff(want[k], got[k], k == "time", 0) is None for k in want)


def _series_diff(want: dict, got: dict, now_slack: int) -> str | None:
    for key in ("name", "tags", "columns", "partial"):
        if want.get(key) != got.get(key):
            return f"{key}: {want.get(key)!r} != {got.get(key)!r}"
    extra = set(got) - {"name", "tags", "columns", "values", "partial"}
    if extra:
        return f"unexpected keys {sorted(extra)}"
    wv, gv = want.get("values", []), got.get("values", [])
    if len(wv) != len(gv):
        return f"{len(wv)} rows != {len(gv)} rows"
    columns = want.get("columns", [])
    for i, (wr, gr) in enumerate(zip(wv, gv, strict=True)):
        if len(wr) != len(gr):
            return f"row {i}: {len(wr)} cells != {len(gr)}"
        for j, (a, b) in enumerate(zip(wr, gr, strict=True)):
            problem = _cell_diff(a, b, j < len(columns) and columns[j] == "time", now_slack)
            if problem:
                return f"row {i} {columns[j] if j < len(columns) else j}: {problem}"
    return None


def diff(want: dict, got: dict, now_slack: int = 0) -> str | None:
    """``None`` when ``got`` answers as ``want`` does, else the first difference, in one line."""
    if set(want) != set(got):
        return f"top-level keys {sorted(want)} != {sorted(got)}"
    if "error" in want:
        return None if want["error"] == got["error"] else f"error {want['error']!r} != {got['error']!r}"
    wr, gr = want.get("results", []), got.get("results", [])
    if len(wr) != len(gr):
        return f"{len(wr)} results != {len(gr)}"
    for w, g in zip(wr, gr, strict=True):
        sid = w.get("statement_id")
        if set(w) != set(g):
            return f"statement {sid}: keys {sorted(w)} != {sorted(g)} ({g.get('error') or w.get('error')})"
        for key in ("statement_id", "error", "partial"):
            if w.get(key) != g.get(key):
                return f"statement {sid}: {key} {w.get(key)!r} != {g.get(key)!r}"
        ws, gs = w.get("series", []), g.get("series", [])
        if len(ws) != len(gs):
            return (f"statement {sid}: {len(ws)} series != {len(gs)} "
                    f"({[s.get('name') for s in ws]} vs {[s.get('name') for s in gs]})")
        for k, (a, b) in enumerate(zip(ws, gs, strict=True)):
            problem = _series_diff(a, b, now_slack)
            if problem:
                return f"statement {sid} series {k} ({a.get('name')} {a.get('tags', '')}): {problem}"
    return None


def error_shaped(status: int, body) -> str | None:
    """``None`` when an answer is in InfluxDB's shape: 200 with ``results`` (each an
    ``error`` string or series), or 4xx with a one-line ``{"error": ...}``."""
    if not isinstance(body, dict):
        return f"body is not an object: {body!r:.80}"
    if 400 <= status < 500:
        if set(body) != {"error"} or not isinstance(body["error"], str):
            return f"{status} body {body!r:.120}"
        return None if "\n" not in body["error"].strip() else f"multi-line error {body['error']!r:.120}"
    if status != 200:
        return f"status {status}"
    results = body.get("results")
    if not isinstance(results, list):
        return f"200 without results: {body!r:.120}"
    for r in results:
        if not isinstance(r, dict) or not isinstance(r.get("statement_id"), int):
            return f"result without statement_id: {r!r:.120}"
        if "error" in r and (not isinstance(r["error"], str) or "\n" in r["error"].strip()):
            return f"bad error {r['error']!r:.120}"
    return None
