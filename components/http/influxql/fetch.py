"""Reading columns through the bridge's DataSource: statistics or samples,
one call per data node, the same series from several nodes merged.

Everything here speaks integer nanoseconds; the DataSource speaks float
seconds, so the conversion (truncation, as the OCS publisher does it) is
made once, here.
"""

from __future__ import annotations

import time

import numpy as np

from sisock.aggregate import present, to_ns

from .functions import in_ns, stats_of_samples

#: Unbounded ends of an InfluxQL range, as asked of data nodes: the epoch,
#: and a year past now (archives hold nothing later).
FUTURE_NS = 366 * 86400 * 1_000_000_000


def seconds_window(lo_ns: int, hi_ns: int, now_ns: int) -> tuple[float, float]:
    lo = max(lo_ns, 0)
    hi = min(hi_ns, now_ns + FUTURE_NS)
    return lo / 1e9, hi / 1e9


class Reader:
    """Columns' statistics or samples for one statement's range."""

    def __init__(self, datasource, lo_ns: int, hi_ns: int, now_ns: int | None = None):
        self.datasource = datasource
        self.lo_ns, self.hi_ns = lo_ns, hi_ns
        now_ns = time.time_ns() if now_ns is None else now_ns
        self.start, self.end = seconds_window(lo_ns, hi_ns, now_ns)

    @staticmethod
    def _by_node(columns) -> dict[str, list]:
        nodes: dict[str, list] = {}
        for column in columns:
            if column.field not in nodes.setdefault(column.node, []):
                nodes[column.node].append(column.field)
        return nodes

    def _keep(self, t_ns: np.ndarray) -> np.ndarray:
        return (t_ns >= self.lo_ns) & (t_ns <= self.hi_ns)

    def samples(self, columns, limit: int | None = None) -> dict:
        """``{column: (t ns ascending, values)}`` without NaN samples."""
        out = {}
        for node, fields in self._by_node(columns).items():
            got = self.datasource.raw(node, fields, self.start, self.end, limit=limit)
            for column in columns:
                if column.node != node:
                    continue
                t, values = got.get(column.field, (np.zeros(0), np.zeros(0)))
                t_ns = to_ns(t)
                values = np.asarray(values)
                keep = self._keep(t_ns) & present(values) if len(values) else np.zeros(0, bool)
                t_ns, values = t_ns[keep], values[keep]
                if len(t_ns) > 1 and np.any(t_ns[1:] < t_ns[:-1]):
                    order = np.argsort(t_ns, kind="stable")
                    t_ns, values = t_ns[order], values[order]
                out[column] = (t_ns, values)
        return out

    def series_samples(self, columns, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One series' samples from all the columns holding it: a time held
        by several nodes is one point (the first node's)."""
        got = self.samples(columns, limit)
        parts = [got[c] for c in columns if c in got and len(got[c][0])]
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0)
        if len(parts) == 1:
            return parts[0]
        t_ns = np.concatenate([p[0] for p in parts])
        values = np.concatenate([np.asarray(p[1], dtype=object) for p in parts])
        order = np.argsort(t_ns, kind="stable")
        t_ns, values = t_ns[order], values[order]
        keep = np.r_[True, t_ns[1:] != t_ns[:-1]]
        values = values[keep]
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            pass
        return t_ns[keep], values

    def stats(self, columns, interval_ns: int, offset_ns: int) -> dict:
        """``{column: statistics}`` (ns times) on the bucket grid."""
        out = {}
        for node, fields in self._by_node(columns).items():
            got = self.datasource.aggregates(node, fields, self.start, self.end, interval_ns / 1e9, offset_ns / 1e9)
            for column in columns:
                if column.node == node and column.field in got:
                    out[column] = in_ns(got[column.field])
        return out

    def series_stats(self, columns, interval_ns: int, offset_ns: int) -> dict | None:
        """Statistics of the series the columns hold together, from samples
        merged point by point (used when several nodes hold the series)."""
        t_ns, values = self.series_samples(columns)
        if not len(t_ns):
            return None
        return stats_of_samples(t_ns, values, interval_ns, offset_ns)
