"""The data contract between DataNodeServers and their consumers.

``get_fields`` returns ``(field, timeline)`` and ``get_data`` returns
``{"data": ..., "timeline": ...}`` (the WAMP contract of the original sisock). The shapes
are built here and nowhere else, so every server answers alike and the bridge
and client can rely on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from sisock.downsample import decimate_timeline

FIELD_TYPES = ("number", "string", "bool")

#: Most numbers (times and values together) one get_data reply may carry.
#: The router refuses WAMP messages over 64 MiB; a msgpack float is 9 bytes
#: and a JSON one up to ~24, so this keeps any reply comfortably below it.
MAX_REPLY_VALUES = 2_500_000


def field_info(timeline: str, description=None, units=None, type: str = "number") -> dict:
    if type not in FIELD_TYPES:
        raise ValueError(f"field type must be one of {FIELD_TYPES}, got {type!r}")
    return {"description": description, "timeline": timeline, "type": type, "units": units}


def fields_reply(fields: Mapping[str, dict], intervals: Mapping[str, float | None] | None = None):
    """``(field, timeline)`` from per-field info; timelines derived from it."""
    intervals = intervals or {}
    timeline: dict = {}
    for name, info in fields.items():
        tl = timeline.setdefault(info["timeline"], {"interval": intervals.get(info["timeline"]), "field": []})
        tl["field"].append(name)
    return dict(fields), timeline


def empty_data_reply() -> dict:
    return {"data": {}, "timeline": {}}


def reply_size(reply) -> int:
    """Numbers in a ``get_data`` reply (times and values)."""
    if not isinstance(reply, dict):
        return 0
    return (sum(len(v) for v in reply.get("data", {}).values())
            + sum(len(tl.get("t", ())) for tl in reply.get("timeline", {}).values()))


def _as_list(values):
    if isinstance(values, np.ndarray):
        return values.tolist()
    return list(values)


def to_wire(reply):
    """Make a ``get_data`` reply serializable (numpy arrays to lists).

    Servers may build replies from numpy arrays; this is the single point
    where they become lists, after they have been reduced to the answer.
    """
    if reply is False or reply is None:
        return reply
    data = {name: _as_list(v) for name, v in reply.get("data", {}).items()}
    timeline = {}
    for name, tl in reply.get("timeline", {}).items():
        fin = tl.get("finalized_until")
        timeline[name] = {
            **{k: v for k, v in tl.items() if k not in ("t", "finalized_until")},
            "t": _as_list(tl.get("t", [])),
            "finalized_until": None if fin is None else float(fin),
        }
    return {"data": data, "timeline": timeline}


def series_reply(requested: Iterable[str], series: Mapping[str, tuple]) -> dict:
    """A ``get_data`` reply where each field is its own timeline (named
    after the field), from ``{name: (t, values)}`` already reduced."""
    requested = list(requested)
    reply = {"data": {name: [] for name in requested}, "timeline": {}}
    for name in requested:
        if name in series and len(series[name][0]):
            t, values = series[name]
            reply["data"][name] = values
            reply["timeline"][name] = {"t": t, "finalized_until": None}
    return to_wire(reply)


class Timeline:
    """Samples of fields sharing one time axis, held as numpy arrays."""

    __slots__ = ("name", "t", "fields", "finalized_until")

    def __init__(self, name: str, t, fields: Mapping[str, Iterable], finalized_until=None):
        self.name = name
        self.t = np.asarray(t, dtype=np.float64)
        self.fields = {k: np.asarray(v) for k, v in fields.items()}
        self.finalized_until = finalized_until


def data_reply(requested: Iterable[str], timelines: Iterable[Timeline], start: float, end: float,
               min_stride: float | None = None) -> dict:
    """Answer ``get_data`` from in-memory timelines.

    Selects samples with ``start <= t <= end``; if ``min_stride`` asks for
    fewer samples than the range holds, decimates with per-bucket min/max.
    Unknown fields come back as empty lists; a timeline is included only if
    one of the requested fields has data in the range.
    """
    requested = list(requested)
    reply = {"data": {name: [] for name in requested}, "timeline": {}}
    wanted = set(requested)
    for tl in timelines:
        names = [name for name in tl.fields if name in wanted]
        if not names:
            continue
        lo = int(np.searchsorted(tl.t, start, side="left"))
        hi = int(np.searchsorted(tl.t, end, side="right"))
        if hi <= lo:
            continue
        t = tl.t[lo:hi]
        values = {name: tl.fields[name][lo:hi] for name in names}
        if min_stride and min_stride > 0 and len(t) > 1 and (t[-1] - t[0]) / (len(t) - 1) < min_stride:
            t, values = decimate_timeline(t, values, float(min_stride), t0=float(start), t1=float(end))
        reply["timeline"][tl.name] = {"t": t, "finalized_until": tl.finalized_until}
        reply["data"].update(values)
    return to_wire(reply)
