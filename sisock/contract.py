"""The WAMP contract between DataNodeServers, the hub and their consumers.

Everything two sisock processes must agree on to talk through the router is
defined here and nowhere else: the realm, every procedure, topic and error
URI, the rule a data node's name obeys, what a ``field`` argument means, and
the shapes ``get_fields`` and ``get_data`` answer with. It is the contract
of the original sisock, so old and new programs work together.

The module imports only the standard library: the hub, the settings and the
bridge's request parsing use its names, and none of them should pay for
numpy (it is imported by the functions that build replies from arrays).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping

# -- names ------------------------------------------------------------------

REALM = "test_realm"
BASE_URI = "org.simonsobservatory"


def uri(s: str) -> str:
    """The full URI of a procedure or topic: ``BASE_URI + "." + s``."""
    return f"{BASE_URI}.{s}"


#: Procedures the hub registers.
DATA_NODE_ADD = uri("data_node.add")
DATA_NODE_SUBTRACT = uri("data_node.subtract")
GET_DATA_NODE = uri("consumer.get_data_node")

#: Topics the hub publishes: a node (``{"name", "description"}``) came or
#: went, and the hub (re)started, which asks every server to announce itself
#: again so the registry heals without restarting them.
DATA_NODE_ADDED = uri("consumer.data_node_added")
DATA_NODE_SUBTRACTED = uri("consumer.data_node_subtracted")
HUB_STARTED = uri("hub.started")

#: Errors sisock raises.
ERROR_INVALID_NAME = uri("error.invalid_name")
ERROR_INDEX_UNAVAILABLE = uri("error.index_unavailable")
ERROR_INVALID_SHARING = uri("error.invalid_sharing")

#: The router's answer for a procedure nobody registered: consumers read it
#: as "that node (or the hub) is not there", never as a failure.
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"

_CONSUMER = uri("consumer.")
_GET_FIELDS = ".get_fields"
_GET_DATA = ".get_data"
_GET_DATA_PACKED = ".get_data_packed"
_GET_AGGREGATES = ".get_aggregates"


def get_fields_procedure(node: str) -> str:
    return f"{_CONSUMER}{node}{_GET_FIELDS}"


def get_data_procedure(node: str) -> str:
    return f"{_CONSUMER}{node}{_GET_DATA}"


def get_data_packed_procedure(node: str) -> str:
    """``get_data`` with numeric arrays sent as bytes (:func:`to_packed`):
    what sisock's own consumers call when a node registers it, since
    turning a few thousand floats into a list and back is most of what a
    warm request costs. Nodes that do not register it (every server
    written before it, and those overriding ``get_data``) are asked with
    ``get_data``."""
    return f"{_CONSUMER}{node}{_GET_DATA_PACKED}"


def get_aggregates_procedure(node: str) -> str:
    """``get_aggregates(field, start, end, interval, offset=0.0)``: exact
    statistics of each ``interval``-wide bucket of samples
    (:mod:`sisock.aggregate`), so InfluxQL's ``mean``, ``max``, ``count``
    and the like of ``GROUP BY time()`` buckets need no raw samples on the
    wire. Registered, like ``get_data_packed``, by servers answering
    through the blocking ``get_data`` path; consumers compute the same
    statistics from raw ``get_data`` for nodes without it."""
    return f"{_CONSUMER}{node}{_GET_AGGREGATES}"


def node_of_get_data(procedure) -> str | None:
    """The node whose ``get_data`` ``procedure`` is, or None: the hub
    rebuilds its registry from the router's registrations with it."""
    if not isinstance(procedure, str) or not procedure.startswith(_CONSUMER) or not procedure.endswith(_GET_DATA):
        return None
    name = procedure[len(_CONSUMER):-len(_GET_DATA)]
    return name if valid_node_name(name) else None


#: A node's name becomes one component of its procedures' URIs, so it holds
#: no ``.``, ``#``, whitespace or control character; the length bound keeps
#: a client from making the bridge build absurd URIs.
_NODE_NAME = re.compile(r"[^\s.#\x00-\x1f\x7f]{1,200}")


def node_name_problem(name) -> str | None:
    """Why ``name`` cannot be a data node's name, or None if it can.

    One rule for everyone: a dotted name would address another node's
    procedures (``a.b`` makes ``consumer.a.b.get_data``), so the hub refuses
    it, the bridge never calls it and a server refuses to start with it.
    """
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "must not be empty"
    if "." in name:
        return "must not contain dots (it is part of WAMP URIs)"
    if _NODE_NAME.fullmatch(name) is None:
        return "must be at most 200 characters, without '#', whitespace or control characters"
    return None


def valid_node_name(name) -> bool:
    return node_name_problem(name) is None


# -- shared data nodes -----------------------------------------------------------
#
# Several processes may serve one data node name. Each registers both
# procedures with the same invocation policy of the router's shared
# registrations, and the router picks one of them for every call. Each
# announces itself with ``data_node.add(name, description, session_id,
# shared=policy)``; without the keyword (every older server) the node is
# exclusive, as it always was.

#: Invocation policies a shared data node may use: the router's names.
SHARED_POLICIES = ("roundrobin", "random")
#: The keyword argument of ``data_node.add`` that says a node is shared.
SHARED_KEYWORD = "shared"
#: The router's invocation policy of a registration that is not shared.
INVOKE_SINGLE = "single"

#: The router's answers when a procedure is registered already: by an
#: exclusive registrant, or by shared ones with another policy.
PROCEDURE_ALREADY_EXISTS = "wamp.error.procedure_already_exists"
PROCEDURE_POLICY_CONFLICT = "wamp.error.procedure_exists_with_different_invocation_policy"


def shared_policy(value) -> str | None:
    """The policy ``value`` names, None for an exclusive node (None or an
    empty string); ValueError for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value in SHARED_POLICIES:
        return value
    raise ValueError(f"must be one of {', '.join(SHARED_POLICIES)} (or empty for an exclusive node), "
                     f"got {value!r}")


# -- arguments ----------------------------------------------------------------


def field_list(field) -> list:
    """The field names a ``get_data`` request asks for, as a list.

    A string is one field's name: taken as an iterable it would ask for one
    field per character, which is never what the caller meant.
    """
    if isinstance(field, str):
        return [field]
    return list(field)


def sisock_to_unix_time(t: float) -> float:
    """A positive ``t`` is a UNIX time; zero or negative means ``-t`` seconds ago."""
    return t if t > 0 else time.time() + t


# -- replies ------------------------------------------------------------------

FIELD_TYPES = ("number", "string", "bool")

#: Most numbers (times and values together) one get_data reply may carry.
#: The router refuses WAMP messages over 64 MiB; a msgpack float is 9 bytes
#: and a JSON one up to ~24, so this keeps any reply comfortably below it.
MAX_REPLY_VALUES = 2_500_000


def field_info(timeline: str, description=None, units=None, type: str = "number", integer: bool = False) -> dict:
    """One field's ``get_fields`` entry. ``integer`` marks a number field
    whose samples are integers (an optional key, absent otherwise, so
    consumers that do not know it see the original shape)."""
    if type not in FIELD_TYPES:
        raise ValueError(f"field type must be one of {FIELD_TYPES}, got {type!r}")
    info = {"description": description, "timeline": timeline, "type": type, "units": units}
    if integer and type == "number":
        info["integer"] = True
    return info


def fields_reply(fields: Mapping[str, dict], intervals: Mapping[str, float | None] | None = None):
    """``(field, timeline)`` from per-field info; timelines derived from it."""
    intervals = intervals or {}
    timeline: dict = {}
    for name, info in fields.items():
        tl = timeline.setdefault(info["timeline"], {"interval": intervals.get(info["timeline"]), "field": []})
        tl["field"].append(name)
    return dict(fields), timeline


def reply_size(reply) -> int:
    """Numbers in a ``get_data`` reply (times and values)."""
    if not isinstance(reply, dict):
        return 0
    return (sum(len(v) for v in reply.get("data", {}).values())
            + sum(len(tl.get("t", ())) for tl in reply.get("timeline", {}).values()))


class WireReply(dict):
    """A ``get_data`` reply :func:`to_wire` made: only lists, ready to send.

    Converting copies every array, so a reply built by :func:`data_reply`
    is marked as converted and the server's answer path sends it as is
    instead of copying it a second time.
    """

    __slots__ = ()


def _as_list(values):
    tolist = getattr(values, "tolist", None)  # numpy arrays, without importing numpy
    return tolist() if tolist is not None else list(values)


def to_wire(reply):
    """Make a ``get_data`` reply serializable (numpy arrays to lists).

    Servers may build replies from numpy arrays; this is the single point
    where they become lists, after they have been reduced to the answer.
    """
    if reply is False or reply is None:
        return reply
    return WireReply(_converted(reply, _as_list))


def _converted(reply, convert) -> dict:
    """``reply`` with every array passed through ``convert``."""
    data = {name: convert(v) for name, v in reply.get("data", {}).items()}
    timeline = {}
    for name, tl in reply.get("timeline", {}).items():
        fin = tl.get("finalized_until")
        timeline[name] = {
            **{k: v for k, v in tl.items() if k not in ("t", "finalized_until")},
            "t": convert(tl.get("t", [])),
            "finalized_until": None if fin is None else float(fin),
        }
    return {"data": data, "timeline": timeline}


#: The numpy kinds :func:`to_packed` sends as bytes (strings stay lists).
_PACKABLE = "fiub"


def pack(values):
    """Numbers as ``{"dtype": <numpy dtype string>, "data": bytes}``,
    anything else as a list."""
    import numpy as np

    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in _PACKABLE:
        return _as_list(values)
    return {"dtype": array.dtype.str, "data": np.ascontiguousarray(array).tobytes()}


def unpack(values):
    """What :func:`pack` made, back as a numpy array (a list as it is)."""
    if isinstance(values, dict) and "dtype" in values and "data" in values:
        import numpy as np

        dtype = np.dtype(values["dtype"])
        if dtype.kind not in _PACKABLE:
            raise ValueError(f"cannot unpack values of dtype {dtype}")
        return np.frombuffer(values["data"], dtype=dtype)
    return values


def to_packed(reply):
    """:func:`to_wire` with numeric arrays as bytes (:func:`pack`)."""
    if reply is False or reply is None:
        return reply
    return _converted(reply, pack)


def on_wire(reply):
    """``reply`` ready to send: converted by :func:`to_wire` unless it
    already was."""
    if isinstance(reply, WireReply):
        return reply
    return to_wire(reply)


def series_reply(requested: Iterable[str], series: Mapping[str, tuple], wire: bool = True) -> dict:
    """A ``get_data`` reply where each field is its own timeline (named
    after the field), from ``{name: (t, values)}`` already reduced; with
    ``wire=False`` its arrays are left as they are, for the server's
    answer path to convert once (to lists, or to bytes when packed)."""
    requested = field_list(requested)
    reply = {"data": {name: [] for name in requested}, "timeline": {}}
    for name in requested:
        if name in series and len(series[name][0]):
            t, values = series[name]
            reply["data"][name] = values
            reply["timeline"][name] = {"t": t, "finalized_until": None}
    return to_wire(reply) if wire else reply


def field_series(reply, field: str, timeline: str | None = None):
    """``(t, values)`` of ``field`` in a ``get_data`` reply (lists, or
    arrays from :func:`unpack`), or None when the reply holds none of it.

    A reply does not say which timeline a field is on: ``timeline`` comes
    from ``get_fields``, and may be left out when the reply holds only one.
    A reply that cannot be read that way raises ValueError saying why.
    """
    values = unpack((reply.get("data") or {}).get(field))
    timelines = reply.get("timeline") or {}
    if values is None or len(values) == 0 or not timelines:
        return None
    if timeline not in timelines:
        if len(timelines) != 1:
            raise ValueError(f"no timeline known for field {field}")
        timeline = next(iter(timelines))
    t = unpack(timelines[timeline].get("t"))
    t = [] if t is None else t
    if len(t) != len(values):
        raise ValueError(f"{field} has {len(values)} values but its timeline {len(t)} times")
    return t, values


class Timeline:
    """Samples of fields sharing one time axis, held as numpy arrays."""

    __slots__ = ("name", "t", "fields", "finalized_until")

    def __init__(self, name: str, t, fields: Mapping[str, Iterable], finalized_until=None):
        import numpy as np

        self.name = name
        self.t = np.asarray(t, dtype=np.float64)
        self.fields = {k: np.asarray(v) for k, v in fields.items()}
        self.finalized_until = finalized_until


def data_reply(requested: Iterable[str], timelines: Iterable[Timeline], start: float, end: float,
               min_stride: float | None = None, max_points: int | None = None) -> dict:
    """Answer ``get_data`` from in-memory timelines.

    Selects samples with ``start <= t <= end``; if ``min_stride`` asks for
    fewer samples than the range holds, keeps each field's per-bucket
    minimum and maximum samples (:func:`sisock.downsample.decimate_timeline`),
    on buckets widened until a timeline holds at most ``max_points``.
    Unknown fields come back as empty lists; a timeline is included only if
    one of the requested fields has data in the range.
    """
    import numpy as np

    from sisock.downsample import decimate_timeline

    requested = field_list(requested)
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
            t, values = decimate_timeline(t, values, float(min_stride), max_points=max_points)
        reply["timeline"][tl.name] = {"t": t, "finalized_until": tl.finalized_until}
        reply["data"].update(values)
    return to_wire(reply)
