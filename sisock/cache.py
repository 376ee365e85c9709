"""A least-recently-used cache bounded in bytes, shared by worker threads.

Servers cache decoded data so a refreshing dashboard does not decode the
same files every few seconds; the bound is in bytes (not entries) because
entries differ in size by orders of magnitude, and memory must not grow with
uptime. Concurrent requests for the same missing key compute it once: the
first caller computes, the others wait for its result.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future

import numpy as np


def nbytes(value) -> int:
    """Rough memory held by ``value`` (numpy arrays, containers of them, or
    objects that say so with an ``nbytes`` attribute)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return value.nbytes + 64 * value.size
        return value.nbytes
    if isinstance(value, dict):
        return 64 + sum(nbytes(k) + nbytes(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return 56 + sum(nbytes(v) for v in value)
    if isinstance(value, str):
        return 49 + len(value)
    size = getattr(value, "nbytes", None)
    return int(size) if isinstance(size, (int, np.integer)) else 32


_MISSING = object()


class Coalescer:
    """Runs a computation once for all callers that ask for the same key at
    the same time; nothing is kept once it is done (no staleness)."""

    def __init__(self):
        self._pending: dict = {}
        self._lock = threading.Lock()

    def run(self, key, compute):
        with self._lock:
            future = self._pending.get(key)
            owner = future is None
            if owner:
                future = self._pending[key] = Future()
        if not owner:
            return future.result()
        try:
            value = compute()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value
        finally:
            with self._lock:
                del self._pending[key]


class ByteLRU:
    def __init__(self, max_bytes: int, sizeof=nbytes):
        self.max_bytes = int(max_bytes)
        self.sizeof = sizeof
        self.bytes = 0
        self._data: OrderedDict = OrderedDict()
        self._inflight = Coalescer()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._data)

    def get(self, key, default=None):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key][0]
            return default

    def put(self, key, value):
        size = self.sizeof(value)
        with self._lock:
            self._store(key, value, size)

    def _store(self, key, value, size):
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if size > self.max_bytes:
            return  # larger than the whole cache: serve it, never keep it
        self._data[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, evicted) = self._data.popitem(last=False)
            self.bytes -= evicted

    def discard(self, predicate):
        """Drop entries whose key satisfies ``predicate`` (e.g. a changed file)."""
        with self._lock:
            for key in [k for k in self._data if predicate(k)]:
                self.bytes -= self._data.pop(key)[1]

    def get_or_compute(self, key, compute):
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value

        def fill():
            again = self.get(key, _MISSING)  # a caller just before us may have stored it
            if again is not _MISSING:
                return again
            result = compute()
            self.put(key, result)
            return result

        return self._inflight.run(key, fill)
