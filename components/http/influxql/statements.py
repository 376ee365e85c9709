"""The parsed statements: plain frozen values the executor reads.

Kept separate from the grammar so the executor never sees parse trees,
and so tests can build statements without text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: InfluxDB's bounds on time (int64 ns, less the two values it reserves).
MIN_TIME = -9223372036854775806
MAX_TIME = 9223372036854775806


# -- expressions ---------------------------------------------------------------

@dataclass(frozen=True)
class VarRef:
    name: str


@dataclass(frozen=True)
class RegexRef:
    pattern: re.Pattern


@dataclass(frozen=True)
class Wildcard:
    pass


@dataclass(frozen=True)
class Literal:
    #: int, float, str or bool
    value: object


@dataclass(frozen=True)
class Duration:
    ns: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: object
    rhs: object


# -- clauses ---------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """A measurement name or pattern, with the database and retention
    policy it was qualified with (None when not given)."""
    name: str | None = None
    regex: re.Pattern | None = None
    database: str | None = None
    retention: str | None = None

    def matches(self, measurement: str) -> bool:
        if self.regex is not None:
            return self.regex.search(measurement) is not None
        return measurement == self.name


@dataclass(frozen=True)
class SelectField:
    expr: object
    alias: str | None = None


@dataclass(frozen=True)
class Fill:
    #: "null", "none", "previous", "linear" or "number"
    kind: str = "null"
    value: float | int | None = None


# -- statements -------------------------------------------------------------

@dataclass(frozen=True)
class Select:
    fields: tuple
    sources: tuple
    condition: object = None
    interval: int | None = None  # ns
    interval_offset: int = 0     # ns
    #: tag names, or None with ``all_tags`` for ``GROUP BY *``
    group_tags: tuple = ()
    group_tag_regexes: tuple = ()
    all_tags: bool = False
    fill: Fill = field(default_factory=Fill)
    descending: bool = False
    limit: int = 0
    offset: int = 0
    slimit: int = 0
    soffset: int = 0
    #: ``tz('...')``: the zone name, None when not given
    tz: str | None = None


@dataclass(frozen=True)
class ShowDatabases:
    pass


@dataclass(frozen=True)
class ShowMeasurements:
    database: str | None = None
    #: ("=", name), ("!=", name), ("=~", pattern), ("!~", pattern) or None
    match: tuple | None = None
    condition: object = None
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class ShowFieldKeys:
    database: str | None = None
    sources: tuple = ()
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class ShowTagKeys:
    database: str | None = None
    sources: tuple = ()
    condition: object = None
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class ShowTagValues:
    database: str | None = None
    sources: tuple = ()
    #: ("=", names), ("!=", names), ("=~", pattern), ("!~", pattern), ("in", names)
    key: tuple = ("=", ())
    condition: object = None
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class ShowRetentionPolicies:
    database: str | None = None


@dataclass(frozen=True)
class ShowSeries:
    database: str | None = None
    sources: tuple = ()
    condition: object = None
    limit: int = 0
    offset: int = 0
