"""Reading columns through the bridge's DataSource: statistics or samples,
one call per data node, the same series from several nodes merged.

Everything here speaks integer nanoseconds; the DataSource speaks float
seconds, so the conversion (truncation, as the OCS publisher does it) is
made once, here.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sisock.aggregate import present, to_ns

from ..request import AnswerTooLarge
from .functions import in_ns, stats_of_samples

#: Unbounded ends of an InfluxQL range, as asked of data nodes: just after
#: the epoch (sisock reads a time of 0 or less as relative to now), and a
#: year past now (archives hold nothing later).
FUTURE_NS = 366 * 86400 * 1_000_000_000
EARLIEST_NS = 1
#: Data nodes one statement asks at once.
MAX_PARALLEL_NODES = 8


def _ns(t: float) -> int:
    return int(np.float64(t) * 1e9)


def seconds_window(lo_ns: int, hi_ns: int, now_ns: int) -> tuple[float, float]:
    """The float seconds ``[start, end]`` holding exactly the samples whose
    truncated nanoseconds lie in ``[lo_ns, hi_ns]``: ``time < X`` must not
    take a sample at X just because X - 1 ns rounds to X in seconds."""
    lo = max(lo_ns, EARLIEST_NS)
    hi = min(hi_ns, now_ns + FUTURE_NS)
    start, end = np.float64(lo / 1e9), np.float64(hi / 1e9)
    while _ns(start) >= lo and _ns(np.nextafter(start, -np.inf)) >= lo:
        start = np.nextafter(start, -np.inf)
    while _ns(start) < lo:
        start = np.nextafter(start, np.inf)
    while _ns(end) <= hi and _ns(np.nextafter(end, np.inf)) <= hi:
        end = np.nextafter(end, np.inf)
    while _ns(end) > hi:
        end = np.nextafter(end, -np.inf)
    return float(start), float(end)


class Reader:
    """Columns' statistics or samples for one statement's range."""

    def __init__(self, datasource, lo_ns: int, hi_ns: int, now_ns: int | None = None,
                 max_points: int | None = None):
        self.datasource = datasource
        #: the most samples one request for raw samples may bring
        self.max_points = max_points
        self.lo_ns, self.hi_ns = lo_ns, hi_ns
        now_ns = time.time_ns() if now_ns is None else now_ns
        self.start, self.end = seconds_window(lo_ns, hi_ns, now_ns)
        self._samples: dict = {}

    @staticmethod
    def _by_node(columns) -> dict[str, list]:
        nodes: dict[str, list] = {}
        for column in columns:
            if column.field not in nodes.setdefault(column.node, []):
                nodes[column.node].append(column.field)
        return nodes

    def _keep(self, t_ns: np.ndarray) -> np.ndarray:
        return (t_ns >= self.lo_ns) & (t_ns <= self.hi_ns)

    def _each_node(self, columns, ask) -> dict:
        """``ask(node, fields)`` for every node at once (each call blocks on
        the router, so nodes are asked in parallel); ``{node: answer}``."""
        nodes = self._by_node(columns)
        if len(nodes) <= 1:
            return {node: ask(node, fields) for node, fields in nodes.items()}
        with ThreadPoolExecutor(max_workers=min(len(nodes), MAX_PARALLEL_NODES)) as pool:
            futures = {node: pool.submit(ask, node, fields) for node, fields in nodes.items()}
            return {node: future.result() for node, future in futures.items()}

    def samples(self, columns) -> dict:
        """``{column: (t ns ascending, values)}`` without NaN samples; each
        column read once per statement."""
        missing = [c for c in columns if c not in self._samples]

        def ask(node, fields):
            return self.datasource.raw(node, fields, self.start, self.end, limit=self.max_points)

        for node, got in self._each_node(missing, ask).items():
            for column in missing:
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
                self._samples[column] = (t_ns, values)
        return {c: self._samples[c] for c in columns}

    def series_samples(self, columns) -> tuple[np.ndarray, np.ndarray]:
        """One series' samples from all the columns holding it: a time held
        by several nodes is one point (the first node's)."""
        got = self.samples(columns)
        parts = [got[c] for c in columns if c in got and len(got[c][0])]
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0)
        if len(parts) == 1:
            return parts[0]
        t_ns = np.concatenate([p[0] for p in parts])
        values = np.concatenate([np.asarray(p[1]) for p in parts])
        order = np.argsort(t_ns, kind="stable")
        t_ns, values = t_ns[order], values[order]
        keep = np.r_[True, t_ns[1:] != t_ns[:-1]]
        return t_ns[keep], values[keep]

    def stats(self, columns, interval_ns: int, offset_ns: int) -> dict:
        """``{column: statistics}`` (ns times) on the bucket grid."""
        interval, offset = interval_ns / 1e9, offset_ns / 1e9

        def ask(node, fields):
            try:
                return self.datasource.aggregates(node, fields, self.start, self.end, interval, offset)
            except AnswerTooLarge:
                if len(fields) == 1:
                    raise
            # Too much for one reply together: one field per reply.
            out = {}
            for field in fields:
                out.update(self.datasource.aggregates(node, [field], self.start, self.end, interval, offset))
            return out

        out = {}
        for node, got in self._each_node(columns, ask).items():
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
