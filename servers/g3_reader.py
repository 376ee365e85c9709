"""The g3-reader DataNodeServer (``g3_reader``): the so3g archive, by index.

Field names are ``<provider description>.<field>``, each on its own timeline,
as in the original. A request asks the index which files hold the fields in
the range (one indexed query), reads only those, and keeps the decoded
arrays in a byte-bounded LRU cache keyed by file, size and mtime: a file that
grows is re-read, so an answer never depends on which requests came first.

A file that cannot be read (garbage, or damaged since it was indexed) is
skipped with a log line and the rest is served. While the index database is
unreachable, every request fails at once with the error
``org.simonsobservatory.error.index_unavailable`` saying so, and the server
answers again as soon as the database is back. At start, the server waits
for the database, and for whoever is creating the index, before it joins
the router: it can be started together with the database and the scanner.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import txaio
from autobahn.wamp.exception import ApplicationError
from twisted.internet import threads
from twisted.internet.defer import inlineCallbacks

from sisock import config, contract, runtime
from sisock.base import DataNodeServer
from sisock.cache import ByteLRU, Coalescer
from sisock.downsample import grid_width, merge_on_grid, sorted_unique, stride_for
from sisock.g3.files import TICKS_PER_SECOND, UnreadableFile, read_hk
from sisock.g3.index import Index, database_url, describe_url, error_reason, locate, open_index, unavailable
from sisock.g3.summary import Summary, choose_level
from sisock.runtime import Setting

DEFAULT_CACHE_MB = 512
#: How often to look for a new scan; when there was one, the server announces
#: itself again so consumers (the HTTP bridge) refresh its field list.
WATCH_SECONDS = 10.0
#: The error of every request made while the index database is unreachable.
INDEX_UNAVAILABLE = contract.ERROR_INDEX_UNAVAILABLE

log = txaio.make_logger()


def _us(t: float) -> int:
    return int(np.floor(t * 1e6))


class Archive:
    """Decoded samples of files, by provider, through the cache."""

    def __init__(self, index: Index, data_dir: str, cache: ByteLRU):
        self.index = index
        self.data_dir = data_dir
        self.cache = cache
        self._down = False
        self._down_lock = threading.Lock()

    def index_state(self, down: bool) -> bool:
        """Record whether the index database answered; True if that is news.
        (Kept here, not in the session: a reconnection makes a new session.)"""
        with self._down_lock:
            changed, self._down = self._down != down, down
        return changed

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
        try:
            hk = read_hk(full, providers={provider})
        except FileNotFoundError:
            return {}
        except (UnreadableFile, OSError) as exc:
            # Damaged or replaced since the scanner indexed it: serve the
            # other files. Remembered (as empty) under this size and mtime,
            # so it is neither read nor logged again until it changes.
            log.warn("skipping unreadable file {p}: {e}", p=full, e=" ".join(str(exc).split()))
            return {}
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

    def locate(self, names, start: float, end: float):
        """:func:`sisock.g3.index.locate` on per-name file tables cached
        until the index changes (one primary-key read per request, not a join)."""
        generation = self.index.generation()
        tables, missing = [], []
        for name in set(names):
            table = self.cache.get(("files", generation, name))
            if table is None:
                missing.append(name)
            else:
                tables.append(table)
        if missing:
            for name, table in self.index.name_tables(missing).items():
                tables.append(table)
                self.cache.put(("files", generation, name), table)
        return locate(tables, _us(start), _us(end) + 1)

    def series(self, names, start: float, end: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{full name: (t, values)}``: every sample within ``[start, end]``, sorted by time."""
        locations, _ = self.locate(names, start, end)
        chunks = defaultdict(list)
        for loc in locations:
            part = self._raw(loc, start, end)
            if part is not None:
                chunks[loc.name].append(part)
        return {name: _join(parts) for name, parts in chunks.items()}

    def _raw(self, loc, start, end):
        samples = self.provider_samples(loc.path, loc.provider)
        if not samples or loc.field not in samples:
            return None
        t, v = samples[loc.field]
        lo = np.searchsorted(t, start, side="left")
        hi = np.searchsorted(t, end, side="right")
        return (t[lo:hi], v[lo:hi]) if hi > lo else None

    def summaries(self, feed_ids, level: int) -> dict[int, dict[str, Summary]]:
        """``{feed id: {block: Summary}}`` at ``level``, through the cache."""
        out, missing = {}, []
        for feed in feed_ids:
            cached = self.cache.get(("summary", feed, level))
            if cached is None:
                missing.append(feed)
            else:
                out[feed] = cached
        if missing:
            fetched = defaultdict(dict)
            for (feed, block), blob in self.index.summaries(missing, level).items():
                fetched[feed][block] = Summary.decode(blob)
            for feed in missing:
                out[feed] = fetched.get(feed, {})
                self.cache.put(("summary", feed, level), out[feed])
        return out

    def panel(self, names, start: float, end: float, min_stride: float):
        """``{name: (t, values)}`` decimated to ``min_stride`` from summaries,
        or None when the stride is finer than the finest summary.

        Answer buckets are a multiple of the summary level wide and aligned
        like the summaries, so each holds whole summary buckets and its min
        and max are those of its samples. Raw samples fill in where
        summaries cannot be used as they are: a name's newest file (it may
        have grown since it was summarized) and files cut by the range's
        edges, so every point is a real sample inside ``[start, end]``.
        """
        level = choose_level(min_stride)
        if level is None:
            return None
        width = grid_width(min_stride, level)
        locations, newest = self.locate(names, start, end)
        summarized = [loc for loc in locations if newest.get(loc.name) != loc.feed_id]
        summaries = self.summaries({loc.feed_id for loc in summarized}, level)
        parts = defaultdict(list)
        for loc in locations:
            piece = None
            if newest.get(loc.name) != loc.feed_id:
                piece = _summary_part(summaries.get(loc.feed_id, {}), loc.field, start, end)
            if piece is None:
                raw = self._raw(loc, start, end)
                if raw is None:
                    continue
                t, v = raw
                v = np.asarray(v, dtype=np.float64)
                piece = (t, t, v, v, np.ones(len(t), dtype=bool))
            if len(piece[0]):
                parts[loc.name].append(piece)
        out = {}
        for name, pieces in parts.items():
            columns = [np.concatenate([p[i] for p in pieces]) for i in range(5)]
            out[name] = merge_on_grid(*columns, width)
        return out


def _summary_part(blocks: dict, field: str, start: float, end: float):
    """The field's buckets inside ``[start, end]``; None if the summary does
    not hold the field or a bucket straddles an edge (raw data must decide)."""
    for summary in blocks.values():
        stats = summary.fields.get(field)
        if stats is None:
            continue
        t_first, t_last = summary.t_first, summary.t_last
        if len(t_first) and t_first[0] >= start and t_last[-1] <= end:  # the usual case: all inside
            sl = slice(None)
        else:
            lo = np.searchsorted(t_last, start, side="left")
            hi = np.searchsorted(t_first, end, side="right")
            if (lo < len(t_first) and t_first[lo] < start) or (hi > 0 and t_last[hi - 1] > end):
                return None
            sl = slice(lo, hi)
        return t_first[sl], t_last[sl], stats["min"][sl], stats["max"][sl], stats["min_first"][sl]
    return None


def _join(parts):
    if len(parts) == 1:
        return parts[0]
    return sorted_unique(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


class G3Reader(DataNodeServer):
    """The g3-reader DataNodeServer (``g3_reader``): the so3g archive, by index.

    ``slow_start``: every setting, the router's certificate included, is
    checked before the possibly long wait for the index database, so a
    wrong path is reported at once and not once the database is up.
    """

    name = "g3_reader"
    description = "Housekeeping archive (so3g .g3 files)"
    script = "sisock-g3-reader-server"
    slow_start = True
    settings = (
        Setting("state_dir", flag="--state-dir",
                help="folder of the SQLite index (default: $SISOCK_STATE_DIR or .sisock)"),
        Setting("data_dir", lambda env: config.data_directory(env, what="the folder of .g3 files")),
        Setting("max_points", config.max_points),
        Setting("cache_mb", lambda env: config.positive_number("G3_CACHE_MB", DEFAULT_CACHE_MB, env)),
    )

    @classmethod
    def prepare(cls, settings):
        try:
            url = database_url(state_dir=settings.state_dir)
        except Exception as exc:  # noqa: BLE001 - a malformed SQL_HOST, an unwritable state folder, ...
            raise config.ConfigError(str(exc)) from None
        print(f"{cls.script}: reading {settings.data_dir} through the index {describe_url(url)}", flush=True)
        try:
            index = open_index(url, log)
        except Exception as exc:  # noqa: BLE001 - what waiting cannot cure: credentials, database name, version
            raise config.ConfigError(f"cannot use the index {describe_url(url)}: {error_reason(exc)}") from None
        _warm_up(index)
        archive = Archive(index, settings.data_dir, ByteLRU(settings.cache_mb * 1024 * 1024))
        return {"archive": archive, "max_points": settings.max_points}

    def __init__(self, config=None, archive: Archive | None = None, max_points: int | None = None):
        super().__init__(config)
        self.archive = archive
        self.max_points = max_points
        self._same = Coalescer()

    def after_onJoin(self, details):
        from twisted.internet import task

        self._seen_generation = None
        self._watch = task.LoopingCall(self._check_index)
        self._watch.start(WATCH_SECONDS, now=True)

    def onLeave(self, details):
        watch = getattr(self, "_watch", None)
        if watch is not None and watch.running:
            watch.stop()
        super().onLeave(details)

    def _generation(self):
        with self._index_errors():
            return self.archive.index.generation()

    @inlineCallbacks
    def _check_index(self):
        try:
            generation = yield threads.deferToThread(self._generation)
        except ApplicationError:
            return  # database down, logged once: try again next time
        except Exception as exc:  # noqa: BLE001 - anything else: try again next time
            self.log.warn("cannot read the index: {e}", e=exc)
            return
        if self._seen_generation is not None and generation != self._seen_generation and self.session_id:
            self.log.info("the index changed; announcing new fields")
            yield self._announce(self.session_id)
        self._seen_generation = generation

    def _get_fields_blocking(self, start, end):
        with self._index_errors():
            names = self.archive.index.names(_us(start), _us(end) + 1)
        info = {name: contract.field_info(name, type="number") for name in names}
        return contract.fields_reply(info)

    def _get_data_blocking(self, field, start, end, min_stride=None):
        # Dashboards open together ask the same thing at the same moment.
        key = (tuple(field), start, end, min_stride)
        with self._index_errors():
            return self._same.run(key, lambda: self._answer(field, start, end, min_stride))

    @contextmanager
    def _index_errors(self):
        """A database that cannot be reached becomes an immediate, plain
        ApplicationError for the caller (the bridge shows its message), and
        one log line when it goes away and one when it is back."""
        archive = self.archive
        try:
            yield
        except Exception as exc:
            if not unavailable(exc):
                raise
            reason = error_reason(exc)
            if archive.index_state(down=True):
                self.log.warn("the index database is unreachable ({e}); answering with errors until it is back",
                              e=reason)
            raise ApplicationError(INDEX_UNAVAILABLE, f"the g3 index database is unavailable ({reason})") from None
        if archive.index_state(down=False):
            self.log.info("the index database is reachable again")

    def _answer(self, field, start, end, min_stride):
        stride = stride_for(min_stride, start, end, self.max_points)
        series = self.archive.panel(field, start, end, stride) if stride else None
        if series is not None:
            return contract.series_reply(field, series)
        series = self.archive.series(field, start, end)
        timelines = [contract.Timeline(name, t, {name: v}, finalized_until=None) for name, (t, v) in series.items()]
        return contract.data_reply(field, timelines, start, end, stride or None)


def _warm_up(index: Index):
    """Pay one-time costs (so3g's import, the database connection, compiling
    the queries) before joining, not in the first user's request. A
    database gone again since the index opened only makes this pointless:
    requests report it, and the server must still join."""
    import so3g  # noqa: F401

    try:
        index.generation()
        index.name_tables(["(warm-up)"])
        index.summaries([-1], 60)
    except Exception as exc:
        if not unavailable(exc):
            raise
        log.warn("the index database went away during the warm-up ({e})", e=error_reason(exc))


def main(argv=None):
    runtime.run(G3Reader, argv)


if __name__ == "__main__":
    main()
