"""The one mapping between sisock's names and InfluxDB's measurements,
tags and fields.

The OCS InfluxDB publisher (``ocs.common.influxdb_drivers.format_data``)
writes an agent's feed ``observatory.<instance>.feeds.<feed>`` as measurement
``observatory.<instance>`` with tag ``feed=<feed>`` and one field per channel.
The g3-reader names its fields ``observatory.<instance>.feeds.<feed>.<channel>``
(the aggregator's provider name and the channel), so the layout follows from
the name alone. A data-feed server states the layout in each field's info
(``influxdb``: measurement, tags, field, and the channel's OCS name as
``source``), including the tagged layout a feed with ``influxdb_tags`` is
published in; an archived channel of such a feed takes that layout too. Every other data node is a
measurement of its own name whose fields are its fields, without tags.

The same series may come from several nodes (an agent's archive and its
live feed): its columns are listed together, and the executor merges them
point by point as InfluxDB would hold one series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The database Grafana's datasource names: the OCS publisher's default.
DATABASE = "ocs_feeds"
RETENTION_POLICY = "autogen"

_OCS_FIELD = re.compile(r"^(?P<address>[^.]+\.[^.]+)\.feeds\.(?P<feed>[^.]+)\.(?P<channel>.+)$")


@dataclass(frozen=True)
class Column:
    """One sisock field seen as one InfluxDB field of one series."""
    node: str
    field: str
    measurement: str
    #: sorted ``((key, value), ...)``
    tags: tuple
    key: str
    #: InfluxDB's field type: "float", "integer", "string" or "boolean"
    type: str


def locate(node: str, field: str, info: dict | None = None) -> tuple[str, dict, str]:
    """``(measurement, tags, field key)`` of a sisock field."""
    stated = (info or {}).get("influxdb")
    if isinstance(stated, dict) and stated.get("measurement") and stated.get("field"):
        tags = {str(k): str(v) for k, v in (stated.get("tags") or {}).items()}
        return str(stated["measurement"]), tags, str(stated["field"])
    match = _OCS_FIELD.match(field)
    if match:
        return match["address"], {"feed": match["feed"]}, match["channel"]
    return node, {}, field


_TYPES = {"string": "string", "bool": "boolean"}


def layout(node: str, field: str, info: dict | None = None) -> dict:
    """:func:`locate` as a JSON object (the REST API's field list carries it)."""
    measurement, tags, key = locate(node, field, info)
    return {"measurement": measurement, "tags": tags, "field": key}


def _type(info: dict) -> str:
    info = info or {}
    if info.get("integer") is True and info.get("type", "number") == "number":
        return "integer"
    return _TYPES.get(info.get("type"), "float")


class Catalog:
    """Every column the bridge knows, indexed by measurement and series."""

    def __init__(self, rows):
        rows = list(rows)
        # A live feed states its layout (the tagged one when its agent sends
        # ``influxdb_tags``); the archive of the same feed, which cannot know
        # the tags, is shown in it too, so both are one series as in InfluxDB.
        stated = {}
        for _node, _field, info in rows:
            layout_of = (info or {}).get("influxdb")
            if isinstance(layout_of, dict) and layout_of.get("source"):
                stated.setdefault(layout_of["source"], {"influxdb": layout_of})
        self.columns: list[Column] = []
        for node, field, info in rows:
            measurement, tags, key = locate(node, field, stated.get(field, info))
            self.columns.append(Column(node, field, measurement, tuple(sorted(tags.items())), key, _type(info)))
        self._by_measurement: dict[str, list[Column]] = {}
        for column in self.columns:
            self._by_measurement.setdefault(column.measurement, []).append(column)

    @classmethod
    def of(cls, datasource) -> Catalog:
        return cls(datasource.field_infos())

    def measurements(self) -> list[str]:
        return sorted(self._by_measurement)

    def columns_of(self, measurement: str) -> list[Column]:
        return self._by_measurement.get(measurement, [])

    def series_of(self, measurement: str) -> dict[tuple, list[Column]]:
        """Tag sets (sorted pairs) of a measurement, each with its columns."""
        out: dict[tuple, list[Column]] = {}
        for column in self.columns_of(measurement):
            out.setdefault(column.tags, []).append(column)
        return dict(sorted(out.items()))

    def field_keys(self, measurement: str) -> dict[str, str]:
        """Field key to type, sorted by key; a key typed differently by two
        nodes is a float (InfluxDB would refuse the second type)."""
        keys: dict[str, str] = {}
        for column in self.columns_of(measurement):
            seen = keys.get(column.key)
            keys[column.key] = column.type if seen in (None, column.type) else "float"
        return dict(sorted(keys.items()))

    def tag_keys(self, measurement: str) -> list[str]:
        return sorted({k for column in self.columns_of(measurement) for k, _ in column.tags})
