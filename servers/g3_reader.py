"""The g3-reader DataNodeServer (``g3_reader``): the so3g archive, by index.

Field names are ``<provider description>.<field>``, each on its own timeline,
as in the original. A request asks the index which files hold the fields in
the range (one indexed query), reads only those, and keeps the decoded
arrays in a byte-bounded LRU cache keyed by file, size and mtime: a file that
grows is re-read, so an answer never depends on which requests came first.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections import defaultdict

import numpy as np
from twisted.internet import threads
from twisted.internet.defer import inlineCallbacks

from sisock import connect, contract
from sisock.base import DataNodeServer
from sisock.cache import ByteLRU
from sisock.components.g3_files import TICKS_PER_SECOND, read_hk
from sisock.components.g3_index import Index, database_url, describe_url

DEFAULT_CACHE_MB = 512
#: How often to look for a new scan; when there was one, the server announces
#: itself again so consumers (the HTTP bridge) refresh its field list.
WATCH_SECONDS = 10.0


def _us(t: float) -> int:
    return int(np.floor(t * 1e6))


def max_points_from_env(env=None) -> int | None:
    env = os.environ if env is None else env
    raw = env.get("MAX_POINTS")
    if raw in (None, ""):
        return None
    value = int(raw)
    if value < 2:
        raise ValueError("MAX_POINTS must be at least 2")
    return value


class Archive:
    """Decoded samples of files, by provider, through the cache."""

    def __init__(self, index: Index, data_dir: str, cache: ByteLRU):
        self.index = index
        self.data_dir = data_dir
        self.cache = cache

    def provider_samples(self, path: str, provider: str):
        """``{field: (t seconds, values)}`` of one provider in one file, or None if gone."""
        full = os.path.join(self.data_dir, path)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            return None
        key = (path, st.st_size, st.st_mtime_ns, provider)
        return self.cache.get_or_compute(key, lambda: self._decode(full, provider))

    @staticmethod
    def _decode(full: str, provider: str):
        hk = read_hk(full, providers={provider})
        out = {}
        for block in hk.blocks.values():
            ticks, values = block.arrays()
            t = ticks / TICKS_PER_SECOND
            for name, column in values.items():
                if name in out:  # a field seen in two blocks of the same provider
                    t0, v0 = out[name]
                    t_all = np.concatenate([t0, t])
                    order = np.argsort(t_all, kind="stable")
                    out[name] = (t_all[order], np.concatenate([v0, column])[order])
                else:
                    out[name] = (t, column)
        return out

    def series(self, names, start: float, end: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{full name: (t, values)}`` within ``[start, end]``, sorted by time."""
        chunks = defaultdict(list)
        for loc in self.index.locate(names, _us(start), _us(end) + 1):
            samples = self.provider_samples(loc.path, loc.provider)
            if not samples or loc.field not in samples:
                continue
            t, v = samples[loc.field]
            lo = np.searchsorted(t, start, side="left")
            hi = np.searchsorted(t, end, side="right")
            if hi > lo:
                chunks[loc.name].append((t[lo:hi], v[lo:hi]))
        out = {}
        for name, parts in chunks.items():
            t = np.concatenate([p[0] for p in parts])
            v = np.concatenate([p[1] for p in parts])
            if len(parts) > 1:
                order = np.argsort(t, kind="stable")
                t, v = t[order], v[order]
                keep = np.r_[True, t[1:] != t[:-1]]  # a sample indexed in two files counts once
                t, v = t[keep], v[keep]
            out[name] = (t, v)
        return out


class G3Reader(DataNodeServer):
    name = "g3_reader"
    description = "Housekeeping archive (so3g .g3 files)"

    def __init__(self, config=None, archive: Archive | None = None, max_points: int | None = None):
        super().__init__(config)
        self.archive = archive
        self.max_points = max_points

    def after_onJoin(self, details):
        from twisted.internet import task

        self._seen_version = None
        self._watch = task.LoopingCall(self._check_index)
        self._watch.start(WATCH_SECONDS, now=True)

    def onLeave(self, details):
        watch = getattr(self, "_watch", None)
        if watch is not None and watch.running:
            watch.stop()
        super().onLeave(details)

    @inlineCallbacks
    def _check_index(self):
        try:
            version = yield threads.deferToThread(self.archive.index.version)
        except Exception as exc:  # noqa: BLE001 - database down: try again next time
            self.log.warn("cannot read the index: {e}", e=exc)
            return
        if self._seen_version is not None and version != self._seen_version and self.session_id:
            self.log.info("the index changed; announcing new fields")
            yield self._announce(self.session_id)
        self._seen_version = version

    def _get_fields_blocking(self, start, end):
        names = self.archive.index.names(_us(start), _us(end) + 1)
        info = {name: contract.field_info(name, type="number") for name in names}
        return contract.fields_reply(info)

    def _get_data_blocking(self, field, start, end, min_stride=None):
        series = self.archive.series(field, start, end)
        stride = min_stride or 0
        if self.max_points and end > start:
            stride = max(stride, (end - start) / self.max_points)
        timelines = [contract.Timeline(name, t, {name: v}, finalized_until=None) for name, (t, v) in series.items()]
        return contract.data_reply(field, timelines, start, end, stride or None)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sisock-g3-reader-server", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", help="folder of the SQLite index (default: $SISOCK_STATE_DIR or .sisock)")
    args = parser.parse_args(argv)
    from sisock.components.g3_scanner import data_directory

    try:
        data_dir = data_directory()
        max_points = max_points_from_env()
        cache_mb = float(os.environ.get("G3_CACHE_MB") or DEFAULT_CACHE_MB)
        url = database_url(state_dir=args.state_dir)
        index = Index(url)
    except Exception as exc:  # noqa: BLE001 - configuration and database errors alike end here
        print(f"sisock-g3-reader-server: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"sisock-g3-reader-server: reading {data_dir} through the index {describe_url(url)}", flush=True)
    archive = Archive(index, data_dir, ByteLRU(cache_mb * 1024 * 1024))
    raise SystemExit(connect.run(functools.partial(G3Reader, archive=archive, max_points=max_points)))
