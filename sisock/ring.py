"""Time-bounded sample buffers for live data.

A live server keeps only the last ``span`` seconds of a feed. The samples
sit in preallocated numpy arrays (one time axis, one row per channel) that
are compacted in place as old samples expire and doubled only when the feed
outpaces them, so memory follows the feed's rate times the span and never
the server's uptime. A hard ``max_samples`` caps even a runaway feed.
"""

from __future__ import annotations

import threading

import numpy as np


class TimeRing:
    """Samples of co-sampled channels (one OCS block) over a sliding window."""

    def __init__(self, span: float, capacity: int = 1024, max_samples: int = 20_000_000, channels=()):
        self.span = float(span)
        self.max_samples = int(max_samples)
        self.channels: dict[str, int] = {}
        self._t = np.empty(capacity, dtype=np.float64)
        self._v = np.empty((0, capacity), dtype=np.float64)
        self._head = 0  # first live sample
        self._tail = 0  # one past the last
        self.lock = threading.Lock()
        for name in channels:  # known from the start: listed (NaN) before their first sample
            self._add_channel(name)

    @property
    def capacity(self) -> int:
        """The most samples held at once (the window may hold fewer)."""
        return self.max_samples

    @property
    def newest(self) -> float | None:
        with self.lock:
            return float(self._t[self._tail - 1]) if self._tail > self._head else None

    def clear(self):
        """Forget every sample (the channels stay)."""
        with self.lock:
            self._head = self._tail = 0

    def __len__(self):
        return self._tail - self._head

    @property
    def nbytes(self) -> int:
        return self._t.nbytes + self._v.nbytes

    def _add_channel(self, name: str):
        self.channels[name] = len(self.channels)
        row = np.full((1, self._v.shape[1]), np.nan)  # no samples before it appeared
        self._v = np.vstack([self._v, row])

    def _make_room(self, n: int):
        """Drop what is older than the window, compact, and grow if still short."""
        if self._tail + n <= len(self._t):
            return
        live = self._tail - self._head
        need = live + n
        capacity = len(self._t)
        while capacity < need:
            capacity *= 2
        if capacity != len(self._t):
            t = np.empty(capacity, dtype=np.float64)
            v = np.empty((self._v.shape[0], capacity), dtype=np.float64)
        else:
            t, v = self._t, self._v
        t[:live] = self._t[self._head:self._tail]
        v[:, :live] = self._v[:, self._head:self._tail]
        self._t, self._v = t, v
        self._head, self._tail = 0, live

    def extend(self, t, columns: dict):
        """Append samples; ``columns`` maps channel name to values (same length as ``t``)."""
        t = np.asarray(t, dtype=np.float64)
        n = len(t)
        if n == 0:
            return
        with self.lock:
            for name in columns:
                if name not in self.channels:
                    self._add_channel(name)
            self._expire(float(t.max()))
            if n > self.max_samples:
                t, columns = t[-self.max_samples:], {k: np.asarray(v)[-self.max_samples:] for k, v in columns.items()}
                n = self.max_samples
            if len(self) + n > self.max_samples:
                self._head += len(self) + n - self.max_samples
            self._make_room(n)
            end = self._tail + n
            self._t[self._tail:end] = t
            self._v[:, self._tail:end] = np.nan
            for name, values in columns.items():
                self._v[self.channels[name], self._tail:end] = values
            first = self._tail
            self._tail = end
            behind = first > self._head and self._t[first - 1] > t[0]
            if behind or np.any(t[1:] < t[:-1]):
                self._sort()

    def _sort(self):
        """Restore time order after a message that arrived out of order (rare)."""
        live = slice(self._head, self._tail)
        order = np.argsort(self._t[live], kind="stable")
        self._t[live] = self._t[live][order]
        self._v[:, live] = self._v[:, live][:, order]

    def _expire(self, newest: float):
        cutoff = newest - self.span
        t = self._t[self._head:self._tail]
        drop = int(np.searchsorted(t, cutoff, side="left"))
        self._head += drop

    def expire_before(self, cutoff: float):
        with self.lock:
            t = self._t[self._head:self._tail]
            self._head += int(np.searchsorted(t, cutoff, side="left"))

    def snapshot(self, start: float = -np.inf, end: float = np.inf):
        """``(t, {channel: values})`` copies of the samples within ``[start, end]``."""
        with self.lock:
            t = self._t[self._head:self._tail]
            lo = int(np.searchsorted(t, start, side="left"))
            hi = int(np.searchsorted(t, end, side="right"))
            t_out = t[lo:hi].copy()
            block = self._v[:, self._head + lo:self._head + hi]
            values = {name: block[row].copy() for name, row in self.channels.items()}
        return t_out, values
