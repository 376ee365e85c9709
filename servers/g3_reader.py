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

import functools
import gc
import math
import os
import sys
import threading
import time
from collections import defaultdict, deque
from contextlib import contextmanager

import numpy as np
import txaio
from autobahn.wamp.exception import ApplicationError
from twisted.internet import threads
from twisted.internet.defer import inlineCallbacks

from sisock import config, contract, runtime
from sisock.base import DataNodeServer
from sisock.cache import ByteLRU, Coalescer
from sisock.downsample import (
    T_FIRST,
    T_LAST,
    N,
    answer_keys,
    bucket_width,
    extreme_pairs,
    group_starts,
    m4_indices,
    m4_merge,
    run_extremes,
    sample_stats,
    samples_merge,
    sorted_unique,
    stride_for,
)
from sisock.g3 import native
from sisock.g3.files import TICKS_PER_SECOND, UnreadableFile, read_hk
from sisock.g3.index import Index, database_url, describe_url, error_reason, open_index, unavailable
from sisock.g3.summary import (
    CHUNK_BUCKETS,
    LEVELS,
    MIN_BUCKETS_PER_ANSWER,
    ROLLUP_LEVELS,
    Summary,
    choose_level,
    restore_type,
)
from sisock.runtime import Setting
from sisock.servers import g3_aggregates

DEFAULT_CACHE_MB = 512
#: Threads computing answers (``G3_THREADS``), see :attr:`G3Reader.answer_threads`.
DEFAULT_THREADS = 1
#: How often to look for a new scan; when there was one, the server announces
#: itself again so consumers (the HTTP bridge) refresh its field list.
WATCH_SECONDS = 10.0
#: File lists are cached per name and day of index time (µs).
DAY_US = 86_400_000_000
#: Seconds a generation read from the database stands for the index's state.
#: Within it a request costs no database round trip (a refreshing panel
#: would otherwise pay three: pre-ping, read, rollback); the scanner's
#: changes are seen at most this late, against passes minutes apart.
GENERATION_TTL = 1.0
#: Seconds between reads of the generation in the background once joined,
#: so that a request finds one younger than :data:`GENERATION_TTL` and
#: pays no round trip for it: dashboards refresh every 5 s to a minute,
#: and each refresh (and every first request after a restart) otherwise
#: paid the read and the answer thread it made necessary, about 3 ms
#: against 0.5 ms answered from memory in the reactor.
GENERATION_REFRESH = GENERATION_TTL / 2
#: Seconds of the newest data decoded when the server starts (at most
#: :data:`PREFETCH_SHARE` of the cache): dashboards open on "the last 6
#: hours" or a day, and after a restart their first request is then
#: answered from memory instead of from the files.
PREFETCH_SECONDS = 86400.0
PREFETCH_SHARE = 0.25
#: Seconds of the finest rollups read once the newest files are decoded, in
#: batches of :data:`PREFETCH_ROLLUP_NAMES` names: a week-long panel after a
#: restart otherwise waits on reading them (a 10-field week of the reference
#: archive: 110 chunks, 9 MB, about 10 ms of its 17). Only before joining:
#: read once joined, a thousand names' batches kept the database and the
#: cores busy just when the first panels came, and made a month of sparse
#: files' cold 1 h, 6 h and 24 h panels 3-4 times slower (19, 18 and 31 ms
#: against 4.3, 6.0 and 12 ms; benchmarks/year_archive.py --days 30).
PREFETCH_ROLLUP_SECONDS = 7 * 86400.0
PREFETCH_ROLLUP_NAMES = 50
#: Seconds of that spent before joining; the rest is done once joined
#: (files only). 1.5 s covers a month of sparse files' newest day of a
#: thousand names and their week of rollups (about 1.3 s; measured with a
#: bound of 3 s, not reached): the reader joined 0.8 s later than with
#: 0.5 s, and its cold 7 d panel took 11-13 ms instead of 16-17 ms,
#: against 5 ms warm.
PREFETCH_BEFORE_JOIN = 1.5
#: Once joined, the prefetch decodes a file only when no request has been
#: answered for this long (s): a dashboard opened right after a restart
#: asks many panels, and a prefetch competing with them for the CPU (the
#: GIL) made its first answers several times slower than a cold answer
#: on an idle reader (a 24 h panel of a month of sparse files: 154 ms
#: against 30 ms).
PREFETCH_QUIET = 0.05
#: Python's own switch interval (s), in force while the prefetch runs.
DEFAULT_SWITCH_INTERVAL = 0.005
#: The contract's field types of the index's kinds.
FIELD_TYPES = {"float": "number", "int": "number", "bool": "bool", "string": "string"}
#: The error of every request made while the index database is unreachable.
INDEX_UNAVAILABLE = contract.ERROR_INDEX_UNAVAILABLE

log = txaio.make_logger()
_ABSENT = object()
#: Most points an answer may hold to be computed in the reactor thread
#: (:meth:`G3Reader.get_data_packed`): a 10-field panel of 1000 points a
#: field takes about a millisecond; a larger one would hold every other
#: call up for as long, and waits for the answer thread instead.
REACTOR_POINTS = 50_000
#: Samples an answer computed in the reactor may bucket into tiles of files
#: already decoded (:meth:`Archive.from_memory`): with the M4 kernel a 6 h
#: panel of the reference archive (six files of 36,000 values) takes about
#: 1 ms, less than handing the request to the answer thread and back.
REACTOR_BUCKETING = 250_000


class NotInMemory(Exception):
    """An answer asked of memory alone (:meth:`Archive.from_memory`) needs
    something that may wait: the database, a file, or a computation."""


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
        self._request = threading.local()
        self._generation = (None, -math.inf)  # (value, monotonic time read)
        self.prefetched = False
        self._generation_lock = threading.Lock()
        self._serving = 0  # requests being answered
        self._served_at = -math.inf  # monotonic time the last one was answered
        self._quiet = threading.Condition()
        self._prefetch_todo = deque()  # files still to decode, newest first: callables
        self._rollup_todo = deque()  # batches of rollups still to read before joining: callables

    @contextmanager
    def from_memory(self):
        """Within it, the calling thread answers from what is cached and
        raises :class:`NotInMemory` instead of anything that may wait or take
        long: asking the database, reading a file, bucketing one, waiting for
        another thread's result. Files already decoded may still be bucketed
        into tiles, up to :data:`REACTOR_BUCKETING` samples. What it does use
        is exactly what the same answer computed outside uses: the answers
        are the same."""
        self._request.memory_only = True
        self._request.bucketing = REACTOR_BUCKETING
        try:
            yield
        finally:
            self._request.memory_only = False

    @property
    def memory_only(self) -> bool:
        return getattr(self._request, "memory_only", False)

    def may_wait(self, what: str):
        """Raise :class:`NotInMemory` when answering from memory: ``what`` may wait."""
        if self.memory_only:
            raise NotInMemory(what)

    def _cached(self, key, compute):
        """``cache.get_or_compute``, or only a look in the cache (:meth:`from_memory`)."""
        if not self.memory_only:
            return self.cache.get_or_compute(key, compute)
        value = self.cache.get(key, _ABSENT)
        if value is _ABSENT:
            raise NotInMemory(key[0])
        return value

    @contextmanager
    def serving(self):
        """Around answering a request: the background prefetch waits."""
        with self._quiet:
            self._serving += 1
        try:
            yield
        finally:
            with self._quiet:
                self._serving -= 1
                self._served_at = time.monotonic()
                self._quiet.notify_all()

    def _wait_for_quiet(self, quiet: float):
        """Return once no request has been answered for ``quiet`` seconds."""
        with self._quiet:
            while True:
                if self._serving:
                    self._quiet.wait()
                    continue
                left = self._served_at + quiet - time.monotonic()
                if left <= 0:
                    return
                self._quiet.wait(left)

    def index_state(self, down: bool) -> bool:
        """Record whether the index database answered; True if that is news.
        (Kept here, not in the session: a reconnection makes a new session.)"""
        with self._down_lock:
            changed, self._down = self._down != down, down
        return changed

    def provider_samples(self, path: str, provider: str):
        """``{field: (t seconds, values)}`` of one provider in one file, or None if gone."""
        found = self._samples_and_key(path, provider)
        return None if found is None else found[0]

    def _samples_and_key(self, path: str, provider: str):
        """``(samples, key)``: the key names the file's size and mtime, so
        what is derived from these samples is cached under the same state.
        Within a request a file is looked at once, however many fields ask."""
        memo = getattr(self._request, "memo", None)
        if memo is not None and (path, provider) in memo:
            return memo[(path, provider)]
        full = os.path.join(self.data_dir, path)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            found = None
        else:
            key = (path, st.st_size, st.st_mtime_ns, provider)
            found = self._cached(key, lambda: self._decode(full, provider)), key
        if memo is not None:
            memo[(path, provider)] = found
        return found

    @staticmethod
    def _decode(full: str, provider: str):
        return Archive._decode_providers(full, {provider}).get(provider, {})

    @staticmethod
    def _decode_providers(full: str, providers) -> dict[str, dict]:
        """``{provider: {field: (t, values)}}`` of ``providers`` in one read
        of the file (those without data there are absent)."""
        try:
            hk = read_hk(full, providers=set(providers))
        except FileNotFoundError:
            return {}
        except (UnreadableFile, OSError) as exc:
            # Damaged or replaced since the scanner indexed it: serve the
            # other files. Remembered (as empty) under this size and mtime,
            # so it is neither read nor logged again until it changes.
            log.warn("skipping unreadable file {p}: {e}", p=full, e=" ".join(str(exc).split()))
            return {}
        found: dict[str, dict] = {}
        for block in hk.blocks.values():
            out = found.setdefault(block.description, {})
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
        return found

    def _prefetch_file(self, path: str, providers):
        """Decode ``providers`` of one file into the cache in one read (a
        file holds many providers; reading it once per provider would parse
        it that many times). A request meanwhile for the provider being
        stored waits for it, as for any file being decoded; one for another
        of them reads that provider itself."""
        full = os.path.join(self.data_dir, path)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            return
        keys = {p: (path, st.st_size, st.st_mtime_ns, p) for p in providers}
        missing = {p for p, key in keys.items() if self.cache.get(key, _ABSENT) is _ABSENT}
        decoded: list[dict] = []  # the one read, once made

        def samples_of(provider):
            if not decoded:
                decoded.append(self._decode_providers(full, missing))
            return decoded[0].get(provider, {})

        for provider in sorted(missing):
            self.cache.get_or_compute(keys[provider], lambda p=provider: samples_of(p))

    def generation(self) -> str:
        """The index's generation: read from the database, once per request
        inside :meth:`one_request` (a panel looks it up a dozen times)."""
        held = getattr(self._request, "generation", None)
        return held if held is not None else self.fresh_generation()

    def plan_prefetch(self, names, seconds: float):
        """Make the files holding the last ``seconds`` of ``names`` (newest
        first), then the names' finest rollups of the last
        :data:`PREFETCH_ROLLUP_SECONDS`, what :meth:`prefetch` reads.
        Planned once, before joining: for thousands of names it is a few
        hundred milliseconds of Python, which must not compete with the
        first requests."""
        with self.one_request():
            newest = self.newest(names)
            # Every answer from rollups sizes itself with each name's first
            # sample: asked for all names at once here, a cold panel
            # after a restart does not ask for its own.
            self.first_starts(names)
            if not newest:
                self._prefetch_todo, self._rollup_todo = deque(), deque()
                return
            end = max(loc.end for loc in newest.values()) / 1e6
            locations, _ = self.locate(names, end - seconds, end)
        files: dict[str, tuple] = {}  # path -> (start, providers)
        for loc in locations:
            start, providers = files.setdefault(loc.path, (loc.start, set()))
            files[loc.path] = (max(start, loc.start), providers | {loc.provider})
        order = sorted(files, key=lambda path: (files[path][0], path), reverse=True)
        self._prefetch_todo = deque(functools.partial(self._prefetch_file, path, sorted(files[path][1]))
                                    for path in order)
        level = ROLLUP_LEVELS[0]
        first, last = math.ceil((end - PREFETCH_ROLLUP_SECONDS) / level), math.floor(end / level)
        rolled = sorted(newest)
        self._rollup_todo = deque(functools.partial(self._prefetch_rollups, rolled[i:i + PREFETCH_ROLLUP_NAMES],
                                                    level, first, last)
                                  for i in range(0, len(rolled), PREFETCH_ROLLUP_NAMES))

    def _prefetch_rollups(self, names, level: int, first: int, last: int):
        """Read the rollups of ``names`` holding buckets ``first`` to ``last`` into the cache."""
        with self.one_request():
            self.rolled(names, level, first, last)

    def prefetch(self, share: float, until: float | None = None, quiet: float | None = None) -> bool:
        """Read what was planned in turn, the files then the rollups, until
        ``share`` of the cache is used or the monotonic clock reaches
        ``until``; True when there is nothing left to do. With ``quiet``
        (once joined), each file waits until requests have left the reader
        alone that long, and the rollups are left to the panels that ask
        for them (see :data:`PREFETCH_ROLLUP_SECONDS`)."""
        if quiet is not None:
            self._rollup_todo.clear()
        for todo in (self._prefetch_todo, self._rollup_todo):
            while todo:
                if self.cache.bytes >= share * self.cache.max_bytes:
                    self._prefetch_todo.clear()
                    self._rollup_todo.clear()
                    return True
                if quiet is not None:
                    self._wait_for_quiet(quiet)
                if until is not None and time.monotonic() >= until:
                    return False
                todo.popleft()()
        return True

    def fresh_generation(self) -> str:
        """The generation, read again once :data:`GENERATION_TTL` has passed
        (while joined, :meth:`refresh_generation` reads it before then)."""
        value, read_at = self._generation
        if time.monotonic() - read_at < GENERATION_TTL:
            return value
        self.may_wait("the index's generation")
        with self._generation_lock:  # one reader thread asks; the others wait for its answer
            value, read_at = self._generation
            if time.monotonic() - read_at < GENERATION_TTL:
                return value
            return self.refresh_generation()

    def refresh_generation(self) -> str:
        """Read the generation now (blocking). A database that cannot be
        reached raises, and the held value ages until requests read it
        themselves and report the error."""
        read_at = time.monotonic()
        value = self.index.generation()
        self._generation = (value, read_at)  # when asked: what changed since is seen next time
        return value

    @contextmanager
    def one_request(self):
        """Within it, the calling thread reads the generation once, and
        the files of a range once."""
        self._request.generation = self.fresh_generation()
        self._request.memo = {}
        try:
            yield
        finally:
            self._request.generation = self._request.memo = None

    def locate(self, names, start: float, end: float):
        """``(locations, {name: newest feed id})`` of ``[start, end]``
        (:meth:`sisock.g3.index.Index.locations`), read once per request."""
        return self._locations(names, start, end)[:2]

    def _locations(self, names, start: float, end: float):
        """``(locations in time order, {name: newest feed id}, {name:
        samples in the range})``, from file lists cached per name and day of
        index time until the index changes: a refreshing panel costs no
        database read but the generation's."""
        key = ("locations", tuple(sorted(set(names))), start, end)
        memo = getattr(self._request, "memo", None)
        if memo is not None and key in memo:
            return memo[key]
        t0, t1 = _us(start), _us(end) + 1
        generation = self.generation()
        days = range(t0 // DAY_US, t1 // DAY_US + 1)
        names = sorted(set(names))
        lists = {}
        for name in names:
            for day in days:
                found = self.cache.get(("files", generation, name, day))
                if found is not None:
                    lists[(name, day)] = found
        missing = [(name, day) for name in names for day in days if (name, day) not in lists]
        if missing:
            self.may_wait("file lists")
            wanted = sorted({day for _, day in missing})
            rows = self.index.locations(sorted({name for name, _ in missing}), wanted[0] * DAY_US,
                                        (wanted[-1] + 1) * DAY_US - 1)
            fetched = defaultdict(list)
            for loc in rows:
                for day in range(max(loc.start // DAY_US, wanted[0]), min(loc.end // DAY_US, wanted[-1]) + 1):
                    fetched[(loc.name, day)].append(loc)
            for name, day in missing:
                lists[(name, day)] = tuple(fetched.get((name, day), ()))
                self.cache.put(("files", generation, name, day), lists[(name, day)])
        out, samples, newest = {}, defaultdict(float), {}
        for locs in lists.values():
            for loc in locs:
                if loc.end >= t0 and loc.start <= t1:
                    out[(loc.name, loc.feed_id)] = loc
        for name, loc in self.newest(names).items():
            if loc.start <= t1:  # the one file that may have grown into the range
                out[(name, loc.feed_id)] = loc
                newest[name] = loc.feed_id
        for loc in out.values():
            samples[loc.name] += loc.samples_in(t0, t1)
        found = (sorted(out.values(), key=lambda loc: (loc.start, loc.path)), newest, dict(samples))
        if memo is not None:
            memo[key] = found
        return found

    def newest(self, names) -> dict:
        """Each name's newest file, cached until the index changes."""
        return self._per_name("newest", names, self.index.newest_locations)

    def first_starts(self, names) -> dict[str, int]:
        """Each name's first sample time (µs), cached until the index changes."""
        return self._per_name("first", names, self.index.first_starts)

    def _per_name(self, what: str, names, fetch) -> dict:
        """``{name: fetch(...)[name]}`` through the cache, under this
        generation of the index (a name without one is remembered too)."""
        generation = self.generation()
        out, missing = {}, []
        for name in names:
            found = self.cache.get((what, generation, name), _ABSENT)
            if found is _ABSENT:
                missing.append(name)
            elif found is not None:
                out[name] = found
        if missing:
            self.may_wait(what)
            fetched = fetch(missing)
            for name in missing:
                self.cache.put((what, generation, name), fetched.get(name))
                if name in fetched:
                    out[name] = fetched[name]
        return out

    def estimate(self, names, start: float, end: float, stride: float) -> float:
        """About how many points an answer holds, from the index alone: per
        name, the samples the range holds, or two per answer bucket when
        that is fewer. Answers from rollups are judged on their buckets
        alone, so a year-long panel never lists the year's files."""
        buckets = (end - start) / bucket_width(stride) + 2 if stride else float("inf")
        if stride and choose_level(bucket_width(stride)) in ROLLUP_LEVELS:
            newest, first = self.newest(names), self.first_starts(names)
            total = 0.0
            for name, loc in newest.items():  # the buckets of the part of the range the name has data in
                span = min(end, loc.end / 1e6) - max(start, first.get(name, loc.start) / 1e6)
                total += 2 * (max(span, 0.0) / bucket_width(stride) + 2)
            return total
        _, _, samples = self._locations(names, start, end)
        return sum(min(count, 2 * buckets) for count in samples.values())

    def series(self, names, start: float, end: float, width: float | None = None):
        """``{full name: (t, values)}``: every sample within ``[start, end]``,
        sorted by time, or with ``width`` each bucket's minimum and maximum
        (strings: first and last), from the files' cached tiles."""
        locations, _ = self.locate(names, start, end)
        if width:
            parts, texts, kinds = defaultdict(list), defaultdict(list), {}
            self._file_parts(locations, start, end, width, None, parts, texts, kinds)
            return _points(parts, texts, kinds, width)
        self._decode_together(locations)
        chunks = defaultdict(list)
        for loc in locations:
            part = self._raw(loc, start, end)
            if part is not None:
                chunks[loc.name].append(part)
        return {name: _join(parts) for name, parts in chunks.items()}

    def _decode_together(self, locations):
        """Decode the providers of each file that ``locations`` need and the
        cache lacks in one read of the file: a panel's fields come from
        several providers of the same files, and reading a reference-archive
        file once for its two providers takes 1.8 ms, against 1.4 ms for
        each when read once per provider."""
        if self.memory_only:
            return
        wanted = defaultdict(set)
        for loc in locations:
            wanted[loc.path].add(loc.provider)
        for path, providers in wanted.items():
            if len(providers) > 1:
                self._prefetch_file(path, providers)

    def _raw(self, loc, start, end):
        samples = self.provider_samples(loc.path, loc.provider)
        if not samples or loc.field not in samples:
            return None
        t, v = samples[loc.field]
        lo = np.searchsorted(t, start, side="left")
        hi = np.searchsorted(t, end, side="right")
        return (t[lo:hi], v[lo:hi]) if hi > lo else None

    def tiles(self, path: str, provider: str, width: float, level: int | None = None):
        """``(Tiles, samples)`` of one provider's file in answer buckets of
        ``width`` (cut on the summary grid of ``level`` when given, see
        :func:`answer_keys`), or None when the file is gone. Cached beside
        the decoded file, under its size and mtime: a refreshing or sliding
        panel asks the same buckets of the same files again, and tiles are
        kilobytes where the samples are megabytes."""
        found = self._samples_and_key(path, provider)
        if found is None or not found[0]:
            return None
        samples, key = found
        key = ("tiles", *key, width, level)
        if self.memory_only:
            tiles = self.cache.get(key, _ABSENT)
            return (self._bucket_here(key, samples, width, level) if tiles is _ABSENT else tiles), samples
        return self.cache.get_or_compute(key, lambda: Tiles(samples, width, level)), samples

    def _bucket_here(self, key, samples: dict, width: float, level: int | None):
        """Tiles computed in the calling thread from memory, within the
        request's allowance (see :meth:`from_memory`)."""
        left = self._request.bucketing - sum(len(v) for _, v in samples.values())
        if left < 0:
            raise NotInMemory("tiles")
        self._request.bucketing = left
        tiles = Tiles(samples, width, level)
        self.cache.put(key, tiles)
        return tiles

    def _file_parts(self, locations, start, end, width, level, parts, texts, kinds):
        """Pieces of ``[start, end]`` from the files' raw samples, through
        their tiles: the buckets wholly inside the range from the tiles, the
        (at most two) buckets the range cuts from the samples. The fields of
        one block share their slicing, and their edges are bucketed together."""
        self._decode_together(locations)
        by_file = defaultdict(list)
        for loc in locations:
            by_file[(loc.path, loc.provider)].append(loc)
        for (path, provider), locs in by_file.items():
            found = self.tiles(path, provider, width, level)
            if found is None:
                continue
            tiles, samples = found
            wanted = defaultdict(list)  # block -> [(row, location)]
            for loc in locs:
                if loc.field not in samples:
                    continue
                if loc.field in tiles.texts:
                    raw = self._raw(loc, start, end)
                    if raw is not None:
                        texts[loc.name].append(raw)
                    continue
                block, row = tiles.where[loc.field]
                wanted[block].append((row, loc))
            for block, rows in wanted.items():
                keys, stats, starts, t = tiles.blocks[block]
                pieces = _cut(t, starts, tiles.ends[block], start, end)
                if not pieces:
                    continue
                for lo, hi, whole in pieces:
                    if whole:  # views of the tile, not copies
                        for row, loc in rows:
                            parts[loc.name].append((keys[lo:hi], stats[:, row, lo:hi]))
                        continue
                    # A cut bucket's samples, as one-sample buckets: _points merges them.
                    matrix = np.vstack([np.asarray(samples[loc.field][1][lo:hi], dtype=np.float64)
                                        for _, loc in rows])
                    got_keys, got = answer_keys(t[lo:hi], width, level), sample_stats(t[lo:hi], matrix)
                    for j, (_, loc) in enumerate(rows):
                        parts[loc.name].append((got_keys, got[:, j]))
                for _, loc in rows:
                    kinds.setdefault(loc.name, tiles.kinds[loc.field])

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
            self.may_wait("summaries")
            fetched = defaultdict(dict)
            for (feed, block), blob in self.index.summaries(missing, level).items():
                summary = Summary.decode(blob)
                if summary is not None:  # another format: the file is read raw until rescanned
                    fetched[feed][block] = summary
            for feed in missing:
                out[feed] = fetched.get(feed, {})
                self.cache.put(("summary", feed, level), out[feed])
        return out

    def panel(self, names, start: float, end: float, min_stride: float):
        """``{name: (t, values)}`` decimated to ``min_stride`` from summaries,
        or None when answer buckets are too narrow for the finest summary.

        Answer buckets are cut on the summary grid, each summary bucket
        going to the answer bucket holding its middle, so each answer bucket
        holds whole summary buckets and its minimum and maximum are those of
        its samples, at their own times. Raw samples fill in where summaries
        cannot be used as they are: a name's newest file (it may have grown
        since it was summarized), files cut by the range's edges and string
        fields, so every point is a real sample inside ``[start, end]``.
        """
        width = bucket_width(min_stride)
        level = choose_level(width)
        if level is None:
            return None
        parts, texts, kinds = defaultdict(list), defaultdict(list), {}
        if level in ROLLUP_LEVELS:
            self._rolled(names, start, end, width, level, parts, texts, kinds)
        else:
            self._pieces(names, start, end, width, level, parts, texts, kinds)
        return _points(parts, texts, kinds, width)

    def _pieces(self, names, start, end, width, level, parts, texts, kinds):
        """Pieces of ``[start, end]`` from each file: its summary buckets,
        or its raw samples where the summary cannot be used as it is."""
        locations, newest = self.locate(names, start, end)
        summarized = [loc for loc in locations if newest.get(loc.name) != loc.feed_id]
        summaries = self.summaries({loc.feed_id for loc in summarized}, level)
        raw = []
        for loc in locations:
            piece = None
            if newest.get(loc.name) != loc.feed_id:
                piece = _summary_part(summaries.get(loc.feed_id, {}), loc.field, start, end, width, level)
            if piece is None:
                raw.append(loc)
                continue
            if piece[1].shape[1]:
                parts[loc.name].append(piece[:2])
                kinds.setdefault(loc.name, piece[2])
        self._file_parts(raw, start, end, width, level, parts, texts, kinds)

    def _rolled(self, names, start, end, width, level, parts, texts, kinds):
        """Pieces from the names' rollups for the whole buckets of ``[start,
        end]`` before each name's newest file, and from the files (as
        :meth:`_pieces`) for the rest: the range's partial edge buckets, the
        newest file's span, and chunks whose rollup is being rebuilt."""
        first = math.ceil(start / level)  # buckets first .. last - 1 lie wholly inside
        last = math.floor(end / level)
        limits = {name: min(last, math.floor(loc.start / 1e6 / level)) for name, loc in self.newest(names).items()}
        rolled = self.rolled(list(limits), level, first, max(limits.values(), default=first))
        before = np.nextafter(first * level, -np.inf)
        uncovered, whole = defaultdict(list), []
        for name, stop in limits.items():
            rest = []  # [lo, hi] ranges the files must answer
            if stop <= first:
                rest.append((start, end))
            else:
                rest.append((start, before))
                for chunk in range(first // CHUNK_BUCKETS, (stop - 1) // CHUNK_BUCKETS + 1):
                    summary = rolled.get((name, chunk))
                    if summary is None:
                        lo, hi = max(first, chunk * CHUNK_BUCKETS), min(stop, (chunk + 1) * CHUNK_BUCKETS)
                        rest.append((lo * level, np.nextafter(hi * level, -np.inf)))
                        continue
                    kinds.setdefault(name, next(iter(summary.kinds.values()), "f"))
                    if first <= chunk * CHUNK_BUCKETS and (chunk + 1) * CHUNK_BUCKETS <= stop:
                        whole.append((name, chunk, summary))
                        continue
                    keys = summary.keys(level)
                    stats = next(iter(summary.fields.values()))  # one field, under its short name
                    a, b = np.searchsorted(keys, first, side="left"), np.searchsorted(keys, stop, side="left")
                    if b > a:
                        parts[name].append((np.floor((keys[a:b] + 0.5) * level / width), stats[:, a:b]))
                rest.append((stop * level, end))
            for lo, hi in rest:
                if hi >= lo:
                    uncovered[(lo, hi)].append(name)
        for (name, _), tile in self._rolled_tiles(whole, level, width).items():
            parts[name].append(tile)
        for (lo, hi), group in uncovered.items():  # names of one provider share their ranges
            self._pieces(group, lo, hi, width, level, parts, texts, kinds)

    def _rolled_tiles(self, whole, level: int, width: float) -> dict:
        """``{(name, chunk): (keys, stats)}``: whole rollup chunks (``(name,
        chunk, Summary)``) merged into answer buckets of ``width``, cached
        like the chunks (until the index changes), so a month-long panel
        merges a few dozen buckets per chunk, not a thousand."""
        generation = self.generation()
        out, todo = {}, []
        for name, chunk, summary in whole:
            cached = self.cache.get(("rolltile", generation, name, level, chunk, width))
            if cached is None:
                todo.append((name, chunk, summary))
            else:
                out[(name, chunk)] = cached
        if not todo:
            return out
        self.may_wait("merged rollups")
        for name, chunk, summary in todo:  # one pass each, in place: no copy of the chunks side by side
            keys = np.floor((summary.keys(level) + 0.5) * level / width)
            merged_keys, merged = m4_merge(keys, next(iter(summary.fields.values()))[:, None, :])
            tile = (merged_keys, merged[:, 0])
            self.cache.put(("rolltile", generation, name, level, chunk, width), tile)
            out[(name, chunk)] = tile
        return out

    def rolled(self, names, level: int, first: int, last: int) -> dict:
        """``{(name, chunk): Summary}`` of the rollups holding buckets
        ``first`` to ``last``, through the cache (until the index changes)."""
        if not names or last < first:
            return {}
        generation = self.generation()
        chunks = range(first // CHUNK_BUCKETS, last // CHUNK_BUCKETS + 1)
        out, missing = {}, set()
        for name in names:
            for chunk in chunks:
                cached = self.cache.get(("rollup", generation, name, level, chunk), _ABSENT)
                if cached is _ABSENT:
                    missing.add(name)
                elif cached is not None:
                    out[(name, chunk)] = cached
        if missing:
            self.may_wait("rollups")
            blobs = self.index.rollups(missing, level, chunks[0], chunks[-1])
            for name in missing:
                for chunk in chunks:
                    blob = blobs.get((name, chunk))
                    summary = None if blob is None else Summary.decode(blob)
                    self.cache.put(("rollup", generation, name, level, chunk), summary)
                    if summary is not None:
                        out[(name, chunk)] = summary
        return out


def _summary_part(blocks: dict, field: str, start: float, end: float, width: float, level: int):
    """``(answer bucket keys, stats)`` of the field's summary buckets inside
    ``[start, end]``; None if no summary holds the field or a bucket
    straddles an edge (raw data must decide)."""
    for summary in blocks.values():
        stats = summary.fields.get(field)
        if stats is None:
            continue
        bucket = summary.bucket
        has = stats[N] > 0
        if not has.all():
            stats, bucket = stats[:, has], bucket[has]
        t_first, t_last = stats[T_FIRST], stats[T_LAST]
        if len(t_first) and not (t_first[0] >= start and t_last[-1] <= end):
            lo = int(np.searchsorted(t_last, start, side="left"))
            hi = int(np.searchsorted(t_first, end, side="right"))
            if (lo < len(t_first) and t_first[lo] < start) or (hi > 0 and t_last[hi - 1] > end):
                return None
            stats, bucket = stats[:, lo:hi], bucket[lo:hi]
        if summary.samples:
            bucket = np.floor(bucket / level)
        return np.floor((bucket + 0.5) * level / width), stats, summary.kinds.get(field, "f")
    return None


class Tiles:
    """One provider's file in answer buckets: per block (fields sharing a
    timeline), ``(keys, stats of shape (len(STATS), fields, buckets), first
    sample index of each bucket, t)``, bucketed in one pass; ``where`` maps
    a field to its block and row, ``texts`` holds the string fields (never
    summarized)."""

    def __init__(self, samples: dict, width: float, level: int | None):
        self.blocks, self.where, self.kinds, self.texts = [], {}, {}, set()
        self.ends = []  # per block, one past the last sample of each bucket
        groups = defaultdict(list)
        for name, (t, v) in samples.items():
            self.kinds[name] = np.asarray(v).dtype.kind
            if self.kinds[name] in "fiub":
                groups[id(t)].append(name)
            else:
                self.texts.add(name)
        for names in groups.values():
            t = samples[names[0]][0]
            keys = answer_keys(t, width, level)
            starts = group_starts(keys)
            _, stats = samples_merge(keys, t, [samples[n][1] for n in names], starts)
            for row, name in enumerate(names):
                self.where[name] = (len(self.blocks), row)
            self.blocks.append((keys[starts], stats, starts, t))
            self.ends.append(np.append(starts[1:], len(t)))

    @property
    def nbytes(self) -> int:  # what the cache counts (t belongs to the decoded file)
        return (sum(k.nbytes + s.nbytes + 2 * st.nbytes for k, s, st, _ in self.blocks)
                + 64 * len(self.where))


def _cut(t, starts, ends, start: float, end: float) -> list:
    """``[(lo, hi, whole)]``: the range ``[start, end]`` of one block as
    tile buckets ``lo:hi`` (``whole``) and sample slices ``lo:hi`` of the
    buckets it cuts, in time order (``ends``: one past each bucket's last
    sample)."""
    if not len(t):
        return []
    if start <= t[0] and t[-1] <= end:  # the block lies inside the range, as most of a panel's do
        return [(0, len(starts), True)]
    i0, i1 = int(np.searchsorted(t, start, side="left")), int(np.searchsorted(t, end, side="right"))
    if i1 <= i0:
        return []
    a = int(np.searchsorted(ends, i0, side="right"))  # the first bucket holding a sample in range
    b = int(np.searchsorted(starts, i1, side="left"))  # one past the last
    cut_a, cut_b = bool(starts[a] < i0), bool(ends[b - 1] > i1)
    if a == b - 1 and (cut_a or cut_b):  # the range lies inside one bucket
        return [(max(int(starts[a]), i0), min(int(ends[a]), i1), False)]
    out = [(i0, int(ends[a]), False)] if cut_a else []
    if b - cut_b > a + cut_a:
        out.append((a + cut_a, b - cut_b, True))
    if cut_b:
        out.append((int(starts[b - 1]), i1, False))
    return out


def _points(parts, texts, kinds, width: float) -> dict:
    """``{name: (t, values)}`` from pieces of bucket statistics ``(keys,
    stats)`` (each bucket's first minimum and maximum, merged across pieces
    of one bucket) and from strings' samples (each bucket's first and last).
    Every name is merged in one pass: per-call costs, not samples, dominate
    a panel's few thousand buckets."""
    out = {}
    names = list(parts)
    if names:
        pieces = [p for name in names for p in parts[name]]
        keys = np.concatenate([p[0] for p in pieces])
        stats = np.concatenate([p[1] for p in pieces], axis=1)
        labels = np.repeat(np.repeat(np.arange(len(names)), [len(parts[name]) for name in names]),
                           [len(p[0]) for p in pieces])
        same = labels[1:] == labels[:-1]
        if np.any((keys[1:] < keys[:-1]) & same):  # overlapping files: order by name, bucket, then time
            order = np.lexsort((stats[T_FIRST], keys, labels))
            keys, stats = keys[order], stats[:, order]
        starts = np.flatnonzero((keys[1:] != keys[:-1]) | ~same) + 1
        starts = np.concatenate(([0], starts))
        t, v, owner = extreme_pairs(*run_extremes(stats, starts), groups=labels[starts])
        bounds = np.searchsorted(owner, np.arange(len(names) + 1), side="left")
        for i, name in enumerate(names):
            out[name] = (t[bounds[i]:bounds[i + 1]], restore_type(v[bounds[i]:bounds[i + 1]], kinds.get(name)))
    for name, pieces in texts.items():
        t, v = _join(pieces)
        keep = m4_indices(t, v, width)
        out[name] = (t[keep], v[keep])
    return out


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
    #: Answers take a few milliseconds of numpy and Python each; with 20
    #: panels in flight, a 5 ms switch interval has the reader's threads
    #: preempt one another mid-answer (benchmarks/scale_out.py, one reader,
    #: four runs each: 135-168 req/s at 5 ms, 161-209 at 50 ms).
    switch_interval = 0.05
    #: One answer at a time, by default (``G3_THREADS``): decoding and
    #: decimating hold the GIL, so answers in side-by-side threads only add
    #: hand-overs. Measured with 20 clients asking different 6 h panels
    #: (benchmarks/scale_out.py's load): the reader's CPU per request was
    #: 2.5 ms with one thread, 2.85 ms with two and 3.3 ms with ten, and
    #: the 99th percentile of a cold start's answers 0.55 s against 1.2 s.
    #: More threads help where answers wait on a slow index database.
    answer_threads = DEFAULT_THREADS
    settings = (
        Setting("state_dir", flag="--state-dir",
                help="folder of the SQLite index (default: $SISOCK_STATE_DIR or .sisock)"),
        Setting("data_dir", lambda env: config.data_directory(env, what="the folder of .g3 files")),
        Setting("max_points", config.max_points),
        Setting("cache_mb", lambda env: config.positive_number("G3_CACHE_MB", DEFAULT_CACHE_MB, env)),
        Setting("answer_threads", lambda env: config.whole_number("G3_THREADS", DEFAULT_THREADS, env)),
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
        archive = Archive(index, settings.data_dir, ByteLRU(settings.cache_mb * 1024 * 1024))
        _warm_up(archive)
        archive.prefetched = _prefetch(archive, PREFETCH_BEFORE_JOIN, plan=True)
        return {"archive": archive, "max_points": settings.max_points, "answer_threads": settings.answer_threads}

    def __init__(self, config=None, archive: Archive | None = None, max_points: int | None = None,
                 answer_threads: int = DEFAULT_THREADS):
        super().__init__(config)
        self.archive = archive
        self.max_points = max_points
        self.answer_threads = answer_threads
        self._same = Coalescer()

    def after_onJoin(self, details):
        from twisted.internet import task

        self._seen_generation = None
        self._watch = task.LoopingCall(self._check_index)
        self._watch.start(WATCH_SECONDS, now=True)
        self._keep_fresh = task.LoopingCall(self._refresh_generation)
        self._keep_fresh.start(GENERATION_REFRESH, now=True)
        if not self.archive.prefetched:  # once per process, not at every reconnection
            self.archive.prefetched = True
            threads.deferToThread(_prefetch_in_background, self.archive).addErrback(
                lambda f: self.log.warn("prefetching the newest files failed: {e}", e=f.getErrorMessage()))

    def onLeave(self, details):
        for loop in (getattr(self, "_watch", None), getattr(self, "_keep_fresh", None)):
            if loop is not None and loop.running:
                loop.stop()
        super().onLeave(details)

    def _refresh_generation(self):
        """:meth:`Archive.refresh_generation` in a thread; a failure is the
        requests' to report (they read the generation themselves once the
        held one is too old), and the loop goes on."""
        return threads.deferToThread(self.archive.refresh_generation).addErrback(lambda _failure: None)

    def _generation(self):
        # The value the refresh loop keeps (under GENERATION_TTL old), not a
        # read of its own; a database away long enough for it to age is
        # read, and reported, here.
        with self._index_errors():
            return self.archive.fresh_generation()

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
            kinds = self.archive.index.kinds(_us(start), _us(end) + 1)
        info = {name: contract.field_info(name, type=FIELD_TYPES.get(kind, "number"), integer=kind == "int")
                for name, kind in kinds.items()}
        return contract.fields_reply(info)

    def get_data_packed(self, field, start, end, min_stride=None):
        """Answered at once, in the reactor, when everything the answer
        needs is in memory (a refreshing or reopened panel): no thread to
        wake and no GIL to trade with it. Otherwise, and for an answer of
        more than :data:`REACTOR_POINTS` points, in the answer thread."""
        try:
            with self.archive.from_memory():
                return self.answer_get_data_packed(field, start, end, min_stride)
        except NotInMemory:
            return super().get_data_packed(field, start, end, min_stride)

    def _get_data_blocking(self, field, start, end, min_stride=None):
        with self._index_errors():
            if self.archive.memory_only:  # nothing waits: nothing to share
                return self._answer(field, start, end, min_stride)
            # Dashboards open together ask the same thing at the same moment.
            key = (tuple(field), start, end, min_stride)
            return self._same.run(key, lambda: self._answer(field, start, end, min_stride))

    def _get_aggregates_blocking(self, field, start, end, interval, offset):
        key = ("aggregates", tuple(field), start, end, interval, offset)
        with self._index_errors():
            return self._same.run(key, lambda: self._aggregates(field, start, end, interval, offset))

    def _aggregates(self, field, start, end, interval, offset):
        with self.archive.serving():
            return g3_aggregates.answer(self.archive, field, start, end, interval, offset)

    def _answer(self, field, start, end, min_stride):
        with self.archive.serving(), self.archive.one_request():
            return self._answer_once(field, start, end, min_stride)

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

    def _answer_once(self, field, start, end, min_stride):
        stride = stride_for(min_stride, start, end, self.max_points)
        points = self.archive.estimate(field, start, end, stride)
        if 2 * points > contract.MAX_REPLY_VALUES:  # a time and a value per point
            self.log.warn("refusing get_data of {n} field(s) over {s:.0f} s: about {p:.0f} points, more than one "
                          "reply carries; ask with min_stride or set MAX_POINTS", n=len(field), s=end - start,
                          p=points)
            return False
        if points > REACTOR_POINTS:
            self.archive.may_wait("a large answer")
        series = self.archive.panel(field, start, end, stride) if stride else None
        if series is not None:
            return contract.series_reply(field, series, wire=False)
        series = self.archive.series(field, start, end, bucket_width(stride) if stride else None)
        return contract.series_reply(field, series, wire=False)


def _prefetch(archive: Archive, seconds: float | None = None, quiet: float | None = None,
              plan: bool = False) -> bool:
    """Decode the archive's newest files, for at most ``seconds``. The
    reader plans it and spends :data:`PREFETCH_BEFORE_JOIN` on it before
    joining (a dashboard opened right after a restart is answered from
    memory), and finishes in the background once joined (a restart is not
    held up by a large archive), giving way to requests (``quiet``, see
    :data:`PREFETCH_QUIET`; a request meanwhile waits for, never repeats,
    a file being decoded)."""
    until = None if seconds is None else time.monotonic() + seconds
    try:
        if plan:
            archive.plan_prefetch(list(archive.index.kinds(0, 2**62)), PREFETCH_SECONDS)
        return archive.prefetch(PREFETCH_SHARE, until, quiet)
    except Exception as exc:
        if not unavailable(exc):
            raise
        log.warn("the index database went away while prefetching ({e})", e=error_reason(exc))
        return True
    finally:
        _out_of_the_collectors_way(collect=quiet is None)


def _out_of_the_collectors_way(collect: bool):
    """Leave what is in memory now to reference counting alone (``gc.freeze``).

    A prefetch leaves a few hundred thousand objects the cyclic collector
    tracks (file lists, decoded samples: 214,000 for a day of 1000 fields),
    and its next full pass walks every one of them while holding the GIL.
    That pass came during the first request after a restart: 60 ms of a
    100-field day panel's 90. Frozen, they are still freed as soon as the
    cache lets go of them (dropping the cache freed 131,000 of them); only
    reference cycles among them would stay, and the cache's entries form
    none. Before joining (``collect``) the garbage there is goes first; in
    the background that pass would hold up the requests being answered."""
    if collect:
        gc.collect()
    gc.freeze()


def _prefetch_in_background(archive: Archive) -> bool:
    """:func:`_prefetch` once joined, at Python's own switch interval.

    The reader's long interval (``G3Reader.switch_interval``) lets a
    thread that computes keep the GIL that long. A request arriving while
    the prefetch decodes would wait up to that long for each of its turns:
    the first answers after a restart took 100 ms more than the answer
    itself. The interval is the process's, so it is lowered for as long as
    the prefetch runs."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, DEFAULT_SWITCH_INTERVAL))
    try:
        return _prefetch(archive, quiet=PREFETCH_QUIET)
    finally:
        sys.setswitchinterval(interval)


def _warm_up(archive: Archive):
    """Pay one-time costs before joining, not in the first user's request:
    so3g's import, the database connection, compiling each query, numpy's
    first passes. One name's newest hour and a month before it are
    answered at every level (a few files; what they leave in the cache is
    small). A database gone again since the index opened only makes this
    pointless: requests report it, and the server must still join."""
    native.so3g()

    index = archive.index
    try:
        kinds = index.kinds(0, 2**62)
        name = next((n for n, kind in kinds.items() if kind != "string"), None)
        index.summaries([-1], LEVELS[0])
        index.rollups(["(warm-up)"], ROLLUP_LEVELS[0], 0, 0)
        index.locations(["(warm-up)"], 0, 1)
        with archive.one_request():
            newest = archive.newest([name]).get(name) if name else None
            if newest is None:
                return
            t = newest.start / 1e6 + 60.0
            archive.series([name], t - 3600, t, bucket_width(1.0))
            for level in LEVELS:
                width = level * MIN_BUCKETS_PER_ANSWER
                archive.panel([name], t - 1000 * width, t, width / 2)
    except Exception as exc:
        if not unavailable(exc):
            raise
        log.warn("the index database went away during the warm-up ({e})", e=error_reason(exc))


def main(argv=None):
    runtime.run(G3Reader, argv)


if __name__ == "__main__":
    main()
