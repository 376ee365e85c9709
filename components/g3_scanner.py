"""``sisock-g3-file-scanner``: keep the g3 index in step with the archive.

Each pass lists ``DATA_DIRECTORY``, drops what was deleted, and reads only
files that are new, changed (size or mtime) or were unreadable last time.
Files go into the index several to a transaction (a few, or all those read
while the database was busy, up to a bound): killing the scanner at any
moment loses at most the file(s) in hand, never leaves half of one. A
broken file is logged, left out and tried again next pass; it never stops
the scan. The scanner may start before the database does, and with other
scanners or readers opening the same new index: it waits for the database
and for whoever creates the schema. When the index database goes away
(restart, failover, network) the scanner logs it, retries with backoff and
carries on where it was once the database is back, however long that takes.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass

import txaio

from sisock.backoff import Backoff
from sisock.config import data_directory, log_level, positive_number, whole_number
from sisock.g3 import native
from sisock.g3.files import TICKS_PER_SECOND, UnreadableFile, read_hk
from sisock.g3.index import (
    OK,
    Index,
    ScannedFile,
    StillUnavailable,
    chunk_start_us,
    chunks_touched,
    contended,
    database_url,
    describe_url,
    error_reason,
    open_index,
    unavailable,
)
from sisock.g3.summary import ROLLUP_LEVELS, SAMPLES_LEVEL, summarize

from .parent_death import signal_on_parent_death

# Chosen here, not left to whatever was imported first: nothing above picks
# a framework, and the module's logger cannot be made without one.
txaio.use_twisted()
log = txaio.make_logger()


@dataclass
class Candidate:
    path: str       # relative to the data directory, as stored in the index
    full: str
    size: int
    mtime_ns: int


@dataclass
class PassStats:
    seen: int = 0
    read: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    partial: int = 0
    bytes: int = 0
    rollups: int = 0
    seconds: float = 0.0


def walk(data_dir: str) -> list[Candidate]:
    out = []
    for root, dirs, names in os.walk(data_dir):
        dirs.sort()
        for name in sorted(names):
            if not name.endswith(".g3"):
                continue
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue  # deleted while we walked
            out.append(Candidate(os.path.relpath(full, data_dir), full, st.st_size, st.st_mtime_ns))
    return out


class Progress:
    """A bar on a terminal, a log line every ``every`` seconds elsewhere."""

    def __init__(self, total_files: int, total_bytes: int, every: float = 10.0, stream=None):
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.bytes = 0
        self.every = every
        self.t0 = self.last = time.monotonic()
        stream = stream or sys.stderr
        self.bar = None
        if total_files > 1 and stream.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="scanning", file=stream)
            except ImportError:
                pass

    def step(self, nbytes: int):
        self.files += 1
        self.bytes += nbytes
        if self.bar is not None:
            self.bar.update(nbytes)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info(self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = self.bytes / elapsed
        left = (self.total_bytes - self.bytes) / rate if rate > 0 else float("inf")
        return (f"scanned {self.files}/{self.total_files} files, {rate / 1e6:.1f} MB/s, "
                f"ETA {left:.0f} s")

    def close(self):
        if self.bar is not None:
            self.bar.close()


@dataclass
class Extract:
    """What the index needs of one file; made in a worker process."""

    size: int = 0
    mtime_ns: int = 0
    ranges: dict | None = None
    blobs: list | None = None
    facts: dict | None = None
    error: str | None = None       # damaged or unfinished past some frame
    unreadable: str | None = None  # nothing could be read
    missing: bool = False


def extract(full: str) -> Extract:
    """Read and summarize one file (top level, so worker processes can run it)."""
    try:
        hk = read_hk(full)
    except UnreadableFile as exc:
        return Extract(unreadable=str(exc))
    except FileNotFoundError:
        return Extract(missing=True)
    return Extract(hk.size, hk.mtime_ns, hk.field_ranges(), summary_blobs(hk), facts=hk.field_facts(), error=hk.error)


def scan_workers(env=None) -> int:
    env = os.environ if env is None else env
    default = max(1, min(os.cpu_count() or 1, 4))
    return whole_number("SCAN_WORKERS", default, env)


class HeldSummaries:
    """The summaries a pass stored, kept to build the rollups from instead
    of reading them back: :attr:`blobs` is what
    :meth:`Index.rebuild_rollups` takes.

    Bounded by ``limit`` bytes: past it, the scanner builds the chunks to do
    at the level holding most and drops that level (a chunk built then that
    a later file touches again is rebuilt, reading back what was dropped)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.blobs: dict[tuple[int, int], list] = {}
        self.bytes = dict.fromkeys(ROLLUP_LEVELS, 0)

    def add(self, feed_ids: dict[tuple[int, str], int], blobs):
        for feed in feed_ids.values():
            for level in self.bytes:
                self.blobs.setdefault((feed, level), [])
        for prov_id, desc, block, found, data in blobs or ():
            feed = feed_ids.get((prov_id, desc))
            if feed is None:
                continue
            for level in self.bytes:
                if found in (level, SAMPLES_LEVEL):
                    self.blobs[(feed, level)].append((block, found, data))
                    self.bytes[level] += len(data)

    def over(self) -> bool:
        return sum(self.bytes.values()) > self.limit

    def heaviest_level(self) -> int:
        return max(self.bytes, key=lambda level: self.bytes[level])

    def drop(self, level: int):
        self.blobs = {key: value for key, value in self.blobs.items() if key[1] != level}
        self.bytes[level] = 0


class Scanner:
    """Files are read and summarized by a pool of worker processes (decoding
    is CPU-bound and holds the GIL); the index is written here, in the
    order the files were handed out, several files per transaction: a few
    while the database keeps up with the workers, all that are waiting (up
    to a bound) once it does not."""

    #: Below this many files a pool costs more than it saves.
    POOL_MIN_FILES = 8
    #: Files read ahead of the one being stored, per worker, and their
    #: bytes on disk in all: enough to keep the workers busy and to make
    #: batches while the database is slower than them, few enough that a
    #: slow or unreachable database does not pile up every file's extract
    #: in memory.
    READ_AHEAD, READ_AHEAD_BYTES = 32, 512 << 20
    #: Files stored in one transaction: at least ``BATCH_MIN`` (fewer at the
    #: end of a pass), more while they wait for the database, at most
    #: ``BATCH_FILES`` or ``BATCH_BYTES`` of summaries: what a scanner
    #: killed during it loses. Waiting for a few files costs nothing (the
    #: database is ahead then); storing them apart costs a commit, a flush
    #: to disk and a dozen round trips each.
    BATCH_MIN, BATCH_FILES, BATCH_BYTES = 8, 64, 16 << 20
    #: Bytes of summaries kept for building the rollups of a pass.
    HELD_BYTES = 64 << 20
    #: Complete rollup chunks worth a transaction during a pass.
    EARLY_CHUNKS = 8
    #: Waits between attempts while the index database is unreachable.
    RETRY_FIRST, RETRY_MAX = 0.5, 10.0
    #: Attempts at one transaction that another writer keeps beating (a
    #: second scanner storing the same file): each retry starts by deleting
    #: what the other stored, so one or two are the rule.
    CONTENDED_ATTEMPTS = 10

    def __init__(self, index: Index, data_dir: str, workers: int | None = None,
                 give_up_after: float | None = 900.0):
        self.index = index
        self.data_dir = data_dir
        self.workers = scan_workers() if workers is None else workers
        #: Seconds of an unreachable database before an operation gives up;
        #: None waits forever (the long-running service).
        self.give_up_after = give_up_after
        self._held = HeldSummaries(self.HELD_BYTES)

    def _retrying(self, what: str, operation):
        """``operation(retry)``, called again with ``retry=True`` after a
        backoff while the database is unreachable, or at once when another
        writer got in the way. The error is raised after ``give_up_after``
        seconds, or at once when it is not one that waiting can cure.

        Warnings are logged for retries 1, 2, 4, 8... and whenever the
        reason changes: an outage of a day costs a screenful, not a line
        every ten seconds."""
        backoff, clashes = Backoff(self.RETRY_FIRST, self.RETRY_MAX, report_doublings=True), 0
        while True:
            try:
                result = operation(backoff.failing or clashes > 0)
            except Exception as exc:
                if contended(exc) and clashes + 1 < self.CONTENDED_ATTEMPTS:
                    clashes += 1
                    log.debug("another writer of the index got in the way while {what} ({e}); again",
                              what=what, e=error_reason(exc))
                    time.sleep(random.uniform(0.0, 0.05 * clashes))  # out of step with the other writer
                    continue
                if not unavailable(exc) or (self.give_up_after is not None and backoff.waited >= self.give_up_after):
                    raise
                delay, report = backoff.step(error_reason(exc))
                if report:
                    log.warn("index database unavailable while {what} ({e}); retry {n} in {d:.1f} s",
                             what=what, e=error_reason(exc), n=backoff.attempts, d=delay)
                time.sleep(delay)
                backoff.waiting(delay)
                continue
            if backoff.failing:
                log.info("index database reachable again after {n} retries ({s:.1f} s); carrying on",
                         n=backoff.attempts, s=backoff.waited)
            return result

    def scan_once(self) -> PassStats:
        t0 = time.monotonic()
        stats = PassStats()
        self._held = HeldSummaries(self.HELD_BYTES)
        on_disk = walk(self.data_dir)
        stats.seen = len(on_disk)
        known = self._retrying("listing indexed files", lambda _retry: self.index.file_states())
        gone = set(known) - {c.path for c in on_disk}
        if gone:
            self._retrying("removing deleted files", lambda _retry: self.index.remove(gone))
            stats.removed = len(gone)
            log.info("removed {n} deleted file(s) from the index", n=len(gone))
        todo = [c for c in on_disk if known.get(c.path) != (c.size, c.mtime_ns, OK)]
        # Newest first: during a long first scan, recent data (what dashboards
        # show by default) is served soonest.
        todo.sort(key=lambda c: (c.mtime_ns, c.path), reverse=True)
        stats.unchanged = len(on_disk) - len(todo)
        progress = Progress(len(todo), sum(c.size for c in todo))
        touched, oldest = set(), None
        try:
            for batch in self._batches(todo):
                stored = self._store(batch, stats, known)
                for candidate, _ in batch:
                    progress.step(candidate.size)
                for result in stored:
                    touched |= chunks_touched(result.ranges)
                    starts = [lo for lo, _ in result.ranges.values()]
                    if starts:
                        oldest = min(starts) if oldest is None else min(oldest, min(starts))
                touched = self._rollups_behind(touched, oldest, stats)
                if self._held.over():
                    touched -= self._rebuild_held_level(stats, oldest)
        finally:
            progress.close()
        self._rollups(stats)
        self._held = HeldSummaries(self.HELD_BYTES)
        stats.seconds = time.monotonic() - t0
        return stats

    def _rollups_behind(self, touched: set, oldest: int | None, stats: PassStats) -> set:
        """Build the chunks this pass touched that lie wholly after the
        oldest sample it stored, once there are :attr:`EARLY_CHUNKS` of
        them: files come newest first, so the files still to come are
        older and these chunks are complete (one that is not, because a
        later file does touch it, is noted again and rebuilt at the end).
        Built now, they leave less for the end of the pass and their
        summaries are still held; returns the chunks still waiting."""
        if oldest is None:
            return touched
        ready = sorted(w for w in touched if chunk_start_us(w[1], w[2]) > oldest)
        if len(ready) < self.EARLY_CHUNKS:
            return touched
        self._rebuild(ready, stats)
        return touched - set(ready)

    def _rollups(self, stats: PassStats):
        """Rebuild the rollups the pass's files (or a pass killed before
        its end) left to do; until then readers use the files' summaries."""
        work = self._retrying("listing rollups to rebuild", lambda _retry: self.index.rollup_work())
        if not work:
            return
        log.info("rebuilt {n} rollup chunk(s)", n=self._rebuild(work, stats))

    def _rebuild_held_level(self, stats: PassStats, oldest: int | None) -> set:
        """Too many summaries held: build the chunks to do at the level
        holding most of them that are complete (wholly after the oldest
        sample stored, as in :meth:`_rollups_behind`), then let go of that
        level; returns the chunks built. The others are built once they
        are complete, from the summaries read back: building them now
        would only build them again once older files touch them (on a
        month of sparse files, 300 of 1000 chunks were built twice)."""
        level = self._held.heaviest_level()
        work = self._retrying("listing rollups to rebuild", lambda _retry: self.index.rollup_work())
        ready = [w for w in work if w[1] == level and (oldest is None or chunk_start_us(w[1], w[2]) > oldest)]
        self._rebuild(ready, stats)
        self._held.drop(level)
        return set(ready)

    def _rebuild(self, work, stats: PassStats) -> int:
        """Rebuild ``work`` (``(provider, level, chunk)``), a few
        transactions at a time, from the summaries held where possible."""
        if not work:
            return 0
        longest = self._retrying("sizing files", lambda _retry: self.index.longest_file_us())
        done, left = 0, list(work)
        while left:
            rebuilt = self._retrying("rebuilding rollups", lambda _retry, w=left:
                                     self.index.rebuild_rollups(w, longest, self._held.blobs))
            left = left[rebuilt.chunks:]
            done += rebuilt.chunks
        stats.rollups += done
        return done

    def _batches(self, todo):
        """Lists of ``(candidate, extract)``, in the order of ``todo``: the
        next :attr:`BATCH_MIN` files, with those after them that are read
        already. Without a pool (few files, or one worker), one at a time."""
        if self.workers < 2 or len(todo) < self.POOL_MIN_FILES:
            for c in todo:
                yield [(c, extract(c.full))]
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        native.so3g()  # loaded once here, inherited by the forked workers

        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_setup) as pool:
            ahead, pending = deque(), iter(todo)
            in_flight = [0]

            def fill():
                while len(ahead) < self.workers * self.READ_AHEAD and in_flight[0] < self.READ_AHEAD_BYTES:
                    c = next(pending, None)
                    if c is None:
                        return
                    ahead.append((c, pool.submit(extract, c.full)))
                    in_flight[0] += c.size

            fill()
            while ahead:
                c, future = ahead.popleft()
                batch, size = [(c, future.result())], _summary_bytes(future.result())
                in_flight[0] -= c.size
                while (ahead and (ahead[0][1].done() or len(batch) < self.BATCH_MIN)
                       and len(batch) < self.BATCH_FILES and size < self.BATCH_BYTES):
                    c, future = ahead.popleft()
                    batch.append((c, future.result()))
                    size += _summary_bytes(future.result())
                    in_flight[0] -= c.size
                fill()
                yield batch

    def _store(self, batch, stats: PassStats, known) -> list[Extract]:
        """Index a batch; returns the extracts stored."""
        ready = []
        for c, result in batch:
            if result.missing:
                continue
            if result.unreadable is not None:
                stats.failed += 1
                log.warn("skipping unreadable file {p} (will retry next pass): {e}", p=c.path, e=result.unreadable)
                self._retrying(f"storing {c.path}", lambda _retry, c=c, r=result:
                               self.index.mark_unreadable(c.path, c.size, c.mtime_ns, r.unreadable))
                continue
            stats.read += 1
            stats.bytes += c.size
            if result.error:
                stats.partial += 1
                log.warn("indexed {p} up to a damaged or unfinished frame (will retry next pass): {e}",
                         p=c.path, e=result.error)
            ready.append((c, result))
        if not ready:
            return []
        # Index what was read, under the size/mtime it had when read. A
        # retry always clears the files' rows first: a connection lost
        # during the commit may have lost only the acknowledgement.
        what = ready[0][0].path if len(ready) == 1 else f"{len(ready)} files from {ready[0][0].path}"
        feed_ids = self._retrying(f"storing {what}", lambda retry: self.index.replace_files([
            ScannedFile(c.path, r.size, r.mtime_ns, r.ranges, r.error, r.blobs, r.facts,
                        known=c.path in known or retry) for c, r in ready]))
        for c, result in ready:
            self._held.add(feed_ids[c.path], result.blobs)
        return [result for _, result in ready]


def _summary_bytes(result: Extract) -> int:
    return sum(len(blob[-1]) for blob in result.blobs or ())


#: Added to the workers' niceness. Storing is the pass's critical path (one
#: process and its database connection, in turn) and the workers read far
#: ahead of it: at an equal share of the CPU they halve its speed, while
#: what they yield they get back whenever it waits. It also keeps decoding
#: from slowing whatever else the machine serves.
WORKER_NICENESS = 10


def _worker_setup():
    """A worker must not outlive a scanner killed with SIGKILL, and gives
    way to the process storing what it reads (:data:`WORKER_NICENESS`)."""
    signal_on_parent_death(signal.SIGKILL)
    os.nice(WORKER_NICENESS)


def summary_blobs(hk) -> list:
    """Every block's summaries, ready for :meth:`Index.replace_file`."""
    blobs = []
    for block in hk.blocks.values():
        ticks, values = block.arrays()
        for summary in summarize(ticks / TICKS_PER_SECOND, values):
            blobs.append((block.prov_id, block.description, block.name, summary.level, summary.encode()))
    return blobs


def scan_interval(env=None) -> float:
    return positive_number("SCAN_INTERVAL", 3600, env)


#: How long ``--once`` waits for the index database, in seconds, before it
#: gives up (a cron job must end); the service waits as long as it takes.
ONCE_WAIT = 900.0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sisock-g3-file-scanner", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--state-dir", help="folder of the SQLite index (default: $SISOCK_STATE_DIR or .sisock)")
    args = parser.parse_args(argv)
    try:
        level = log_level()
        data_dir = data_directory(what="the folder of .g3 files")
        interval = scan_interval()
        scan_workers()
        url = database_url(state_dir=args.state_dir)
    except ValueError as exc:
        print(f"sisock-g3-file-scanner: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    txaio.start_logging(level=level)
    # The service waits for the database however long it is away, at start
    # and during a pass: it is what it would do after a restart anyway,
    # without the restart. Only --once, run by something waiting for it to
    # end, has a bound.
    patience = ONCE_WAIT if args.once else None
    try:
        index = open_index(url, log, wait=patience)
    except StillUnavailable as exc:
        print(f"sisock-g3-file-scanner: cannot open the index {describe_url(url)}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as exc:  # noqa: BLE001 - driver errors vary by backend
        # A mistake (credentials, database name, an index too new): a
        # configuration error, like a bad setting.
        print(f"sisock-g3-file-scanner: cannot use the index {describe_url(url)}: {error_reason(exc)}",
              file=sys.stderr)
        raise SystemExit(2) from None
    scanner = Scanner(index, data_dir, give_up_after=patience)
    log.info("indexing {d} into {u}", d=data_dir, u=describe_url(url))
    while True:
        try:
            stats = scanner.scan_once()
        except Exception as exc:
            if not unavailable(exc):
                raise
            print(f"sisock-g3-file-scanner: the index {describe_url(url)} stayed unreachable for "
                  f"{scanner.give_up_after:.0f} s: {error_reason(exc)}", file=sys.stderr)
            raise SystemExit(1) from None
        log.info(
            "pass done in {s:.1f} s: {seen} files, {read} read ({mb:.1f} MB), {same} unchanged, "
            "{gone} removed, {bad} unreadable, {part} partial",
            s=stats.seconds, seen=stats.seen, read=stats.read, mb=stats.bytes / 1e6, same=stats.unchanged,
            gone=stats.removed, bad=stats.failed, part=stats.partial,
        )
        if args.once:
            return
        time.sleep(interval)
