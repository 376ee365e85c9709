"""InfluxDB 1.x's JSON answer: times as RFC3339 strings, or as integers
in the unit ``epoch=`` names.

InfluxDB 1.6 knows the epochs ``u``, ``ms``, ``s``, ``m`` and ``h``; any
other value (``ns``, and ``µ``, which 1.6 does not list) means
nanoseconds. Division truncates toward zero, as Go's does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

_EPOCH = {"u": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(ns: int) -> str:
    """Go's RFC3339Nano: trailing zeros of the fraction dropped, UTC ``Z``."""
    seconds, frac = divmod(int(ns), 1_000_000_000)
    stamp = (_EPOCH_START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        stamp += "." + f"{frac:09d}".rstrip("0")
    return stamp + "Z"


def epoch_value(ns: int, epoch: str) -> int:
    divisor = _EPOCH.get(epoch, 1)
    q = abs(int(ns)) // divisor
    return q if ns >= 0 else -q


def _convert(results: list[dict], epoch: str | None) -> None:
    """Time columns (the first of every row) in place; SHOW answers have none."""
    for result in results:
        for series in result.get("series", ()):
            if not series.get("columns") or series["columns"][0] != "time":
                continue
            for row in series["values"]:
                row[0] = rfc3339(row[0]) if epoch is None else epoch_value(row[0], epoch)


def body(results: list[dict], epoch: str | None = None) -> bytes:
    """The answer's bytes; ``epoch`` as the client sent it (None: RFC3339)."""
    _convert(results, epoch.strip() if epoch is not None and epoch.strip() else None)
    return orjson.dumps({"results": results}, option=orjson.OPT_SERIALIZE_NUMPY)


def error(message: str) -> bytes:
    return orjson.dumps({"error": " ".join(str(message).split())[:300]})
