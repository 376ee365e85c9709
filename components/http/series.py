"""Grafana responses built straight from numpy arrays.

Each target's samples become an ``(n, 2)`` float array that orjson writes
directly (NaN as null), so no Python loop runs per sample on the way out.
"""

from __future__ import annotations

import numpy as np
import orjson

from sisock.downsample import cap_indices

_EMPTY = np.zeros((0, 2), dtype=np.float64)


def as_numbers(values):
    """Values as float64 (None to NaN, bools to 0/1); None if not numeric."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def reduce(t, values, max_points: int, min_stride: float | None = None):
    """Sort by time and cap at ``max_points``: each bucket of the grid data
    nodes use for ``min_stride`` keeps its minimum and maximum sample (its
    first and last for strings), so the points stay real samples."""
    t = np.asarray(t, dtype=np.float64)
    numbers = as_numbers(values)
    if len(t) > 1 and np.any(t[1:] < t[:-1]):
        order = np.argsort(t, kind="stable")
        t = t[order]
        values = np.asarray(values, dtype=object)[order] if numbers is None else numbers[order]
        numbers = None if numbers is None else values
    if len(t) <= max_points:
        return t, (numbers if numbers is not None else list(values))
    if numbers is None:  # strings: each bucket's first and last
        keep = cap_indices(t, np.asarray(values, dtype=object), max_points, min_stride)
        return t[keep], [values[i] for i in keep]
    keep = cap_indices(t, numbers, max_points, min_stride)
    return t[keep], numbers[keep]


def pairs(first, second):
    """Rows ``[first, second]`` as an array, or a list when not numeric."""
    if isinstance(first, np.ndarray) and isinstance(second, np.ndarray) and first.dtype.kind == "f" \
            and second.dtype.kind == "f":
        if len(first) == 0:
            return _EMPTY
        return np.column_stack([first, second])
    return [[a, b] for a, b in zip(plain(first), plain(second), strict=True)]


def plain(values):
    """A list of Python values (numpy scalars converted)."""
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def timeserie(name: str, ref_id, t, values) -> dict:
    out = {"target": name, "datapoints": pairs(values, t * 1000.0)}
    if ref_id is not None:
        out["refId"] = ref_id
    return out


def table(name: str, ref_id, t, values) -> dict:
    numeric = isinstance(values, np.ndarray) and values.dtype.kind == "f"
    out = {
        "type": "table",
        "columns": [{"text": "Time", "type": "time"}, {"text": name, "type": "number" if numeric else "string"}],
        "rows": pairs(t * 1000.0, values),
    }
    if ref_id is not None:
        out["refId"] = ref_id
    return out


def dumps(obj) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
