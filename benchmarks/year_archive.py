"""A year of hourly g3 files with a thousand fields, measured end to end.

    .venv/bin/python benchmarks/year_archive.py [--days 365] [--dir DIR] [--runs 5] [--sqlite]
        [--keep-database NAME]

1. Writes (or reuses) the archive: ``--days`` of hourly files (8760 for a
   year), 20 providers x 50 fields, one sample every ``--period`` seconds
   (300), one frame per provider per file, the current HK schema, one
   +1000 single-sample spike per field per day. Generation is split over
   processes by time range; an interrupted run resumes where it stopped.
2. First scan with the real scanner, in process, into a throwaway MariaDB
   database created and dropped here (and with ``--sqlite`` into an SQLite
   file), in files/s; a rescan with nothing changed; the index's size.
3. Starts router, hub and HTTP bridge (``sisock up --servers none``) and a
   g3-reader on the same index and files, then times ``/search`` and
   ``/api/v1/fields`` with every field, and Grafana-shaped ``/query`` panels
   (maxDataPoints 1000, intervalMs = range / 1000) of 10 fields over the
   last 1 h to 365 d, of 100 fields over 24 h and 7 d, and of 10 fields
   over 1 h, 6 h and 24 h half-way back through the archive: cold (first
   request to a fresh g3-reader process) and warm (median), with the
   injected spikes visible in each.
   Warm figures wait until the reader has settled (its background
   prefetch done, under 2 % of a core for half a second).
4. The same answers computed in process, without router or HTTP: a
   G3Reader over the same index (``answer_get_data``), encoded the way the
   bridge encodes them; ratios HTTP / in process, cold / warm, 365 d / 7 d.
5. Adds one small file of 9,000 more names, rescans, and times ``/search``
   with 10,000 fields.

Every figure is printed with its target where one applies; a figure that
fails prints its error and the run goes on.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime

import numpy as np
import orjson
import requests
import sqlalchemy as sa

from sisock.components.stack import default_socket
from sisock.demo.g3 import Provider, archive_path, expected, write_archive

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))
from lean_http import Client
from procs import free_port, wait_for
from timing import median_time

BIN = os.path.dirname(sys.executable)
NODE = "g3_reader"
MARKER = "year_archive.json"
MARKER_VERSION = 1
SPIKE_EVERY, SPIKE_SIZE = 86400, 1000.0
FILE_SECONDS = 3600
MAX_POINTS = 1000
EXTRA_FIELDS = 100  # per provider of the 10,000-name set
NAMES_TARGET = 10_000
HOUR, DAY = 3600, 86400
PANELS = [("1 h", HOUR), ("6 h", 6 * HOUR), ("24 h", DAY), ("7 d", 7 * DAY), ("30 d", 30 * DAY),
          ("365 d", 365 * DAY)]
WIDE_PANELS = [("24 h", DAY), ("7 d", 7 * DAY)]
#: Panels ending half-way back through the archive: a user scrolling back
#: months, where no prefetch has been and the index holds months of files
#: after the range.
PAST_PANELS = [("1 h", HOUR), ("6 h", 6 * HOUR), ("24 h", DAY)]


# ---------------------------------------------------------------- output


class Report:
    """Prints figures as they come; every target judged is kept for the summary."""

    def __init__(self):
        self.judged = []
        self.errors = []

    def judge(self, what: str, value: float, target: str, ok: bool, fmt: str = "{:.2f}") -> str:
        self.judged.append((what, fmt.format(value), target, ok))
        return f"{fmt.format(value)} ({target}: {'ok' if ok else 'MISSED'})"

    def error(self, what: str, exc: BaseException):
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
        self.errors.append((what, reason))
        print(f"  {what}: ERROR {reason}", flush=True)
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()


REPORT = Report()


def attempt(what: str, fn, *args, **kwargs):
    """``fn()``, or None with the error printed: one failing figure must not stop the rest."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported and the run continues
        REPORT.error(what, exc)
        return None


def gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def free_space(path: str) -> str:
    st = shutil.disk_usage(path)
    return f"{gb(st.free)} free of {gb(st.total)}"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(round((t % 1) * 1000)) % 1000:03d}Z"


def ms(seconds) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.1f}"


def ratio(a, b) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


# ---------------------------------------------------------------- the archive


def providers(n_providers: int, n_fields: int, period: float) -> list[Provider]:
    return [Provider(f"observatory.bench-hk{k:02d}.feeds.hk", [f"ch{i:02d}" for i in range(n_fields)],
                     rate=1.0 / period, block="hk") for k in range(n_providers)]


def extra_providers(count: int, period: float) -> list[Provider]:
    return [Provider(f"observatory.bench-names{k:03d}.feeds.hk", [f"n{i:03d}" for i in range(EXTRA_FIELDS)],
                     rate=1.0 / period, block="hk") for k in range(count)]


def layout(args) -> dict:
    return {"file_seconds": FILE_SECONDS, "frame_seconds": FILE_SECONDS, "schema": 2,
            "spike_every": SPIKE_EVERY, "spike_size": SPIKE_SIZE}


def _write_chunk(data: str, start: float, end: float, n_providers: int, n_fields: int, period: float) -> int:
    """One worker's share: an aggregator session over ``[start, end)``.
    The samples depend on time alone, so chunks join seamlessly."""
    paths = write_archive(data, start, end, providers(n_providers, n_fields, period), file_seconds=FILE_SECONDS,
                          frame_seconds=FILE_SECONDS, schema=2, spike_every=SPIKE_EVERY, spike_size=SPIKE_SIZE)
    return sum(os.path.getsize(p) for p in paths)


def ensure_archive(args) -> tuple[str, float, float]:
    """The archive's data folder, start and end; written (or completed) if needed."""
    params = {"version": MARKER_VERSION, "hours": args.hours, "providers": args.providers, "fields": args.fields,
              "period": args.period, "file_seconds": FILE_SECONDS, "spike_every": SPIKE_EVERY,
              "spike_size": SPIKE_SIZE, "schema": 2}
    data = os.path.join(args.dir, "archive")
    marker = os.path.join(args.dir, MARKER)
    state = None
    if os.path.exists(marker):
        with open(marker) as fh:
            state = json.load(fh)
        if state.get("params") != params:
            raise SystemExit(f"{args.dir} holds an archive made with other settings ({state.get('params')}); "
                             "pass another --dir or delete it")
    elif os.path.isdir(data) and any(os.scandir(data)):
        raise SystemExit(f"{data} has files this benchmark did not write; pass another --dir or empty it")
    if state is None:
        end = float(int(time.time() // HOUR) * HOUR)
        state = {"params": params, "start": end - args.hours * HOUR, "end": end, "complete": False,
                 "generation_seconds": 0.0}
    start, end = state["start"], state["end"]
    os.makedirs(data, exist_ok=True)
    with open(marker + ".part", "w") as fh:
        json.dump(state, fh)
    os.replace(marker + ".part", marker)

    hours = [start + h * HOUR for h in range(args.hours)]
    missing = [h for h in hours if not os.path.exists(archive_path(data, h))]
    if not missing and state["complete"]:
        print(f"archive: reusing {data} ({len(hours)} files, written in {state['generation_seconds']:.0f} s)")
        return data, start, end
    # Runs of consecutive missing hours, at most a day each: the workers' tasks.
    tasks, run = [], []
    for h in missing:
        if run and (h != run[-1] + HOUR or len(run) == 24):
            tasks.append((run[0], run[-1] + HOUR))
            run = []
        run.append(h)
    if run:
        tasks.append((run[0], run[-1] + HOUR))
    workers = max(1, min(args.workers, len(tasks)))
    print(f"archive: writing {len(missing)} of {len(hours)} files into {data} with {workers} process(es) ...",
          flush=True)
    t0 = time.perf_counter()
    written = done = 0
    last = t0
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(_write_chunk, data, a, b, args.providers, args.fields, args.period) for a, b in tasks]
        for future, (a, b) in zip(futures, tasks, strict=True):
            written += future.result()
            done += round((b - a) / HOUR)
            if time.perf_counter() - last > 30:
                last = time.perf_counter()
                print(f"  {done}/{len(missing)} files, {last - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - t0
    state["generation_seconds"] = state.get("generation_seconds", 0.0) + seconds
    state["complete"] = True
    with open(marker + ".part", "w") as fh:
        json.dump(state, fh)
    os.replace(marker + ".part", marker)
    print(f"archive: wrote {len(missing)} files ({gb(written)}) in {seconds:.1f} s, "
          f"{len(missing) / seconds:.1f} files/s")
    return data, start, end


def archive_bytes(data: str) -> tuple[int, int]:
    n = size = 0
    for root, _dirs, names in os.walk(data):
        for name in names:
            if name.endswith(".g3"):
                n += 1
                size += os.path.getsize(os.path.join(root, name))
    return n, size


def spike_truth(provider: Provider, names: list[str], a: float, b: float) -> dict[str, np.ndarray]:
    """Values of the injected spikes of ``names`` (one provider) in ``[a, b)``,
    recomputed without the files, 30 days at a time to bound memory."""
    out = {n: [] for n in names}
    step = 30 * DAY
    t = a
    while t < b:
        chunk = expected([provider], t, min(t + step, b), spike_every=SPIKE_EVERY, spike_size=SPIKE_SIZE)
        for n in names:
            _times, v = chunk[n]
            out[n].append(v[v > SPIKE_SIZE / 2])
        t += step
    return {n: np.concatenate(parts) if parts else np.zeros(0) for n, parts in out.items()}


def spikes_seen(series: list[dict], truth: dict[str, np.ndarray]) -> tuple[int, int]:
    """(seen, injected): a spike is seen if its exact value is among the plotted points."""
    seen = total = 0
    for s in series:
        name = s["target"].split("::", 1)[1]
        spikes = truth.get(name, np.zeros(0))
        plotted = {p[0] for p in s["datapoints"]}
        total += len(spikes)
        seen += sum(1 for v in spikes.tolist() if v in plotted)
    return seen, total


# ---------------------------------------------------------------- the index


class Database:
    """A throwaway MariaDB database, created here and dropped at the end."""

    def __init__(self, env: dict, keep: str | None = None):
        """``keep``: a database of that name is reused if it exists (its
        first scan is not timed again) and kept at the end, so panels can be
        measured again without the year's first scan."""
        from sisock.g3.index import database_url

        self.name = keep or f"sisock_bench_year_{os.getpid()}"
        self.keep = keep is not None
        self.env = {**env, "SQL_DB": self.name}
        self.admin = sa.create_engine(database_url({**env, "SQL_DB": "mysql"}), pool_pre_ping=True)
        with self.admin.begin() as conn:
            self.reused = self.keep and conn.execute(sa.text(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = :db"), {"db": self.name}).scalar()
            if not self.reused:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{self.name}`"))
                conn.execute(sa.text(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4"))
        self.url = database_url(self.env)

    def size(self) -> tuple[int, int]:
        """(data_length, index_length) of every table, statistics refreshed first."""
        with self.admin.begin() as conn:
            tables = [r[0] for r in conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :db"), {"db": self.name})]
            for table in tables:
                conn.execute(sa.text(f"ANALYZE TABLE `{self.name}`.`{table}`")).fetchall()
            row = conn.execute(sa.text(
                "SELECT SUM(data_length), SUM(index_length) FROM information_schema.tables "
                "WHERE table_schema = :db"), {"db": self.name}).one()
        return int(row[0] or 0), int(row[1] or 0)

    def drop(self):
        if self.keep:
            print(f"  index database {self.name} kept (--keep-database)")
            self.admin.dispose()
            return
        with self.admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{self.name}`"))
        self.admin.dispose()


def scan(url, data: str):
    """A scan pass of the real scanner, in process: (stats, seconds)."""
    from sisock.components.g3_scanner import Scanner
    from sisock.g3.index import Index

    index = Index(url)
    try:
        t0 = time.perf_counter()
        stats = Scanner(index, data).scan_once()
        return stats, time.perf_counter() - t0
    finally:
        index.dispose()


def measure_scans(label: str, url, data: str, n_files: int, size: int, reused: bool = False):
    from sisock.g3.index import Index

    # The schema exists before the timing starts, as in a deployment.
    attempt(f"{label} schema", lambda: Index(url).dispose())
    result = None if reused else attempt(f"{label} first scan", scan, url, data)
    if reused:
        print(f"  {label} first scan: not timed, the kept index database is reused (--keep-database)")
    if result is not None:
        stats, seconds = result
        print(f"  {label} first scan: {stats.read} files ({gb(stats.bytes)}) in {seconds:.1f} s: "
              f"{stats.read / seconds:.1f} files/s, {stats.bytes / 1e6 / seconds:.1f} MB/s"
              f"{'' if stats.read == n_files else f' (expected {n_files} files; failed {stats.failed})'}",
              flush=True)
    result = attempt(f"{label} rescan", scan, url, data)
    if result is not None:
        stats, seconds = result
        print(f"  {label} rescan, nothing changed: {seconds:.2f} s ({stats.unchanged} unchanged, {stats.read} read)")
    # The aggregator's current file grows between passes: a new modification
    # time is enough for the scanner to index it again (its content is the same).
    newest = max((os.path.join(root, name) for root, _dirs, names in os.walk(data) for name in names
                  if name.endswith(".g3") and "extra-names" not in root), default=None)
    if newest is not None:
        st = os.stat(newest)
        os.utime(newest, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
        result = attempt(f"{label} rescan of the newest file", scan, url, data)
        if result is not None:
            stats, seconds = result
            print(f"  {label} rescan, the newest file changed: {seconds:.2f} s ({stats.read} read, "
                  f"{stats.rollups} rollup chunks rebuilt)", flush=True)


# ---------------------------------------------------------------- in process


def bridge_encoder():
    """The bridge's own encoding of a /query answer (components/http/series)."""
    from sisock.components.http import series

    try:  # the cap follows the data nodes' grid when the bridge's reduce knows the stride
        takes_stride = len(inspect.signature(series.reduce).parameters) >= 4
    except (TypeError, ValueError):
        takes_stride = False

    def encode(reply, names, refs, max_points, stride):
        out = []
        data = (reply or {}).get("data") or {}
        timelines = (reply or {}).get("timeline") or {}
        for name, ref in zip(names, refs, strict=True):
            values = data.get(name) or []
            tl = timelines.get(name) or (next(iter(timelines.values())) if len(timelines) == 1 else {})
            t = tl.get("t") or []
            if not values or len(t) != len(values):
                t, values = np.zeros(0), np.zeros(0)
            t, values = series.reduce(t, values, max_points, *([stride] if takes_stride else []))
            out.append(series.timeserie(f"{NODE}::{name}", ref, t, values))
        return series.dumps(out)

    return encode


def make_reader(url, data: str):
    """A G3Reader over the same index and files, built as the server builds it."""
    from sisock.cache import ByteLRU
    from sisock.g3.index import Index
    from sisock.servers import g3_reader

    cache_mb = getattr(g3_reader, "DEFAULT_CACHE_MB", 512)
    archive = g3_reader.Archive(Index(url), data, ByteLRU(int(cache_mb * 1024 * 1024)))
    return g3_reader.G3Reader(archive=archive)


def close_reader(reader):
    try:
        reader.archive.index.dispose()
    except Exception:  # noqa: BLE001 - best effort: the reader's insides may have changed
        pass


def as_bridge_reads(body: dict, names: list[str]):
    """(start, end, max points, stride) the bridge takes from ``body``, by
    its own parser when it can be imported (its stride rule may change)."""
    try:
        from sisock.components.http.request import parse_query

        q = parse_query(body)
        return q.start, q.end, q.max_points, q.min_stride
    except ImportError:
        start, end = (datetime.fromisoformat(body["range"][k].replace("Z", "+00:00")).timestamp()
                      for k in ("from", "to"))
        return start, end, MAX_POINTS, (end - start) / MAX_POINTS


class InProcess:
    def __init__(self, url, data: str, runs: int):
        self.url, self.data, self.runs = url, data, runs
        self.encode = bridge_encoder()
        self.warm_reader = None

    def panel(self, names, body):
        """(cold s, warm s, body): cold is a fresh reader's first answer."""
        refs = [t["refId"] for t in body["targets"]]
        start, end, max_points, stride = as_bridge_reads(body, names)

        def answer(reader):
            return self.encode(reader.answer_get_data(names, start, end, stride), names, refs, max_points, stride)

        fresh = make_reader(self.url, self.data)
        try:
            t0 = time.perf_counter()
            answer(fresh)
            cold = time.perf_counter() - t0
        finally:
            close_reader(fresh)
        if self.warm_reader is None:
            self.warm_reader = make_reader(self.url, self.data)
        reader = self.warm_reader
        warm = median_time(lambda: answer(reader), self.runs, warmup=2)
        return cold, warm, answer(reader)

    def close(self):
        if self.warm_reader is not None:
            close_reader(self.warm_reader)


# ---------------------------------------------------------------- the stack


class Stack:
    """Router + hub + bridge from ``sisock up --servers none``, and a
    g3-reader process started here so a cold figure gets a fresh one."""

    def __init__(self, work: str, env: dict):
        ports = {"CROSSBAR_TLS_PORT": free_port(), "CROSSBAR_OCS_PORT": free_port(), "PORT": free_port()}
        self.work = work
        self.env = dict(env, **{k: str(v) for k, v in ports.items()}, WAMP_SECRET="benchmark-secret",
                        SISOCK_CERT=os.path.join(work, "stack", "crossbar", "server_cert.pem"), LOGLEVEL="warn",
                        SISOCK_ROUTER_SOCKET=default_socket(os.path.join(work, "stack", "crossbar")))
        self.env.pop("G3_CACHE_MB", None)  # the default cache bound is what is judged
        self.env.pop("MAX_POINTS", None)
        self.http = f"http://127.0.0.1:{ports['PORT']}"
        self.session = requests.Session()  # untimed calls (waiting, listing)
        self.client = Client(self.http)  # timed ones (lean_http says why)
        self.reader = None
        self.starts = 0
        self.proc = self._spawn("stack", [os.path.join(BIN, "sisock"), "up", "--state-dir",
                                          os.path.join(work, "stack"), "--servers", "none"], start_new_session=True)
        wait_for(lambda: requests.get(self.http + "/", timeout=2).status_code == 200, 120, "the bridge")

    def _spawn(self, name, argv, **kwargs):
        """``argv`` with its output in ``<work>/<name>.log``."""
        with open(os.path.join(self.work, f"{name}.log"), "ab") as log:
            return subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, **kwargs)

    def names(self) -> list[str]:
        r = self.session.post(self.http + "/search", json={"target": f"{NODE}::"}, timeout=30)
        r.raise_for_status()
        return r.json()

    def start_reader(self, expect: int, timeout: float = 180):
        """A fresh g3-reader; returns once the bridge lists ``expect`` of its fields."""
        self.stop_reader()
        self.starts += 1
        self.reader = self._spawn(f"g3-reader-{self.starts}", [os.path.join(BIN, "sisock-g3-reader-server")])
        wait_for(lambda: self.reader.poll() is None and len(self.names()) >= expect, timeout,
                 f"the bridge to list {expect} fields of the g3-reader (log: {self.work})", interval=0.2)

    def stop_reader(self):
        if self.reader is None:
            return
        self.reader.kill()
        self.reader.wait(10)
        self.reader = None
        wait_for(lambda: not self.names(), 60, "the old g3-reader to leave")

    def post(self, path, body):
        return _checked(path, self.client.post(path, body))

    def get(self, path):
        return _checked(path, self.client.get(path))

    def close(self):
        if self.reader is not None:
            self.reader.kill()
            self.reader.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def _checked(path, r):
    if r.status_code >= 400:
        text = r.content.decode("utf-8", "replace")
        raise RuntimeError(f"{path}: HTTP {r.status_code}: {' '.join(text.split())[:300]}")
    return r


def query_body(names, a, b):
    """What Grafana sends for a time-series panel."""
    span = b - a
    return {"range": {"from": iso(a), "to": iso(b), "raw": {"from": iso(a), "to": iso(b)}},
            "intervalMs": span * 1000.0 / MAX_POINTS, "interval": f"{span / MAX_POINTS:g}s",
            "maxDataPoints": MAX_POINTS,
            "targets": [{"target": f"{NODE}::{n}", "refId": f"R{i}", "type": "timeserie"} for i, n in enumerate(names)]}


def time_listing(stack: Stack, runs: int, label: str, expect: int):
    """/search and /api/v1/fields with every field, warm."""
    found = len(stack.post("/search", {"target": ""}).json())
    search = median_time(lambda: stack.post("/search", {"target": ""}), runs, warmup=2)
    if expect >= NAMES_TARGET and found < NAMES_TARGET:
        raise RuntimeError(f"/search lists {found} metrics, not the {expect} indexed")
    verdict = f"{search * 1e3:.1f} ms"
    if expect >= NAMES_TARGET:
        verdict = REPORT.judge(f"/search, {found} fields", search * 1e3, "< 50 ms", search < 0.05, "{:.1f} ms")
    print(f"  {label}: /search with all {found} metrics, warm: {verdict}", flush=True)
    rest = attempt("/api/v1/fields", lambda: (len(stack.get("/api/v1/fields").json()),
                                              median_time(lambda: stack.get("/api/v1/fields"), runs, warmup=2)))
    if rest is not None:
        print(f"  {label}: /api/v1/fields with all {rest[0]} fields, warm: {rest[1] * 1e3:.1f} ms", flush=True)
    return search


def ten_thousand(stack: Stack, runs: int, total: int):
    """The running reader notices the new scan and announces itself again
    (the bridge then refreshes its list); a fresh one if that takes over a minute."""
    try:
        wait_for(lambda: len(stack.names()) >= total, 60, "the bridge to list the new names")
        print(f"  the running g3-reader announced {total} fields", flush=True)
    except AssertionError:
        print("  the running g3-reader did not announce the new names within 60 s; restarting it", flush=True)
        stack.start_reader(total)
    time_listing(stack, runs, f"{total} fields", total)


def first_difference(http: list, local: list) -> str:
    """Where the HTTP answer and the in-process one part, in a few words."""
    if len(http) != len(local):
        return f"{len(http)} series over HTTP, {len(local)} in process"
    for a, b in zip(http, local, strict=True):
        if a == b:
            continue
        pa, pb = a.get("datapoints", []), b.get("datapoints", [])
        i = next((i for i, (x, y) in enumerate(zip(pa, pb, strict=False)) if x != y), min(len(pa), len(pb)))
        return (f"{a.get('target')}: {len(pa)} points over HTTP, {len(pb)} in process; first difference at "
                f"point {i}: {pa[i] if i < len(pa) else None} vs {pb[i] if i < len(pb) else None}")
    return "same series, other keys differ"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, idle: float = 0.5, most: float = 120.0) -> float:
    """Wait until the process has used under 2 % of a core for ``idle``
    seconds (a fresh reader finishes its prefetch in the background after
    joining): warm figures are of a reader with nothing else to do, not
    of one still reading the newest files. Returns the seconds waited."""
    t0 = time.monotonic()
    used, since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - t0 < most:
        time.sleep(0.1)
        now = cpu_seconds(pid)
        if now - used > 0.02 * idle:
            used, since = now, time.monotonic()
        elif time.monotonic() - since >= idle:
            break
    return time.monotonic() - t0


def run_panel(stack: Stack, inproc: InProcess, names, provs, a, b, expect, runs, cold_runs=3):
    """One panel: HTTP cold (median over ``cold_runs`` fresh readers: one
    cold request on this machine varies by 2-4x) and warm, in process
    cold and warm, spikes."""
    row = {}
    body = query_body(names, a, b)
    colds = []
    for _ in range(cold_runs):
        stack.start_reader(expect)
        t0 = time.perf_counter()
        stack.post("/query", body)
        colds.append(time.perf_counter() - t0)
    row["cold"] = statistics.median(colds)
    row["colds"] = colds
    row["settled"] = settle(stack.reader.pid)
    row["warm"] = median_time(lambda: stack.post("/query", body), runs, warmup=2)
    answer = stack.post("/query", body).json()
    row["points"] = sum(len(s["datapoints"]) for s in answer)
    truth = {}
    for p in provs:
        mine = [n for n in names if n.startswith(p.description + ".")]
        if mine:
            truth.update(spike_truth(p, mine, a, b))
    row["spikes"] = spikes_seen(answer, truth)
    got = attempt("in process", inproc.panel, names, body)
    if got is not None:
        row["in_cold"], row["in_warm"], local = got
        local = orjson.loads(local)
        row["same"] = local == answer
        if not row["same"]:
            row["difference"] = first_difference(answer, local)
    return row


# ---------------------------------------------------------------- main


def code_state() -> str:
    """The commit measured, and the code files changed since it, if any."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    try:
        head = subprocess.run(["git", "-C", root, "log", "-1", "--format=%h %cs"], capture_output=True, text=True,
                              check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "sisock", "servers", "components"],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"unknown ({exc})"
    changed = [line[3:] for line in changed if line.strip()]
    return head + (f", uncommitted changes in {', '.join(changed)}" if changed else ", clean")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=365, help="days of hourly files (default 365: 8760 files)")
    parser.add_argument("--dir", default=None,
                        help="archive folder, reused when complete "
                             "(default /work/bench-data/year_archive-<days>d-<period>s, or a temporary one)")
    parser.add_argument("--period", type=float, default=300.0, help="seconds between samples (default 300)")
    parser.add_argument("--providers", type=int, default=20)
    parser.add_argument("--fields", type=int, default=50, help="fields per provider")
    parser.add_argument("--runs", type=int, default=5, help="warm runs per figure (median)")
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh readers per cold figure (median)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="generation processes")
    parser.add_argument("--sqlite", action="store_true", help="also time the first scan into SQLite")
    parser.add_argument("--panels", default=None, metavar="LIST",
                        help="only these panels, e.g. '10 x 7 d,100 x 24 h' (default: all)")
    parser.add_argument("--keep-database", default=None, metavar="NAME",
                        help="keep the MariaDB index in database NAME, and reuse it when it exists (no first scan)")
    args = parser.parse_args()
    args.hours = max(1, round(args.days * 24))
    if FILE_SECONDS % args.period:
        parser.error("--period must divide 3600 (the sample grid continues across files)")
    if args.providers < 4 or args.fields < 10:
        parser.error("the panels need at least 4 providers of 10 fields")
    if args.dir is None:
        base = "/work/bench-data" if os.access("/work", os.W_OK) else tempfile.gettempdir()
        args.dir = os.path.join(base, f"year_archive-{args.hours / 24:g}d-{args.period:g}s")
    os.makedirs(args.dir, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (database, processes) when killed

    provs = providers(args.providers, args.fields, args.period)
    n_names = args.providers * args.fields
    print(f"year_archive: {args.hours / 24:g} days of hourly files, {args.providers} providers x {args.fields} "
          f"fields = {n_names} fields, one sample per {args.period:g} s, spike every {SPIKE_EVERY // 3600} h per "
          f"field; {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    print(f"code: {code_state()}", flush=True)
    t0 = time.perf_counter()
    data, start, end = ensure_archive(args)
    extra_dir = os.path.join(data, "extra-names")
    shutil.rmtree(extra_dir, ignore_errors=True)  # left by an interrupted run
    n_files, size = archive_bytes(data)
    print(f"archive: {n_files} files, {gb(size)} on disk ({size / max(n_files, 1) / 1e3:.0f} kB/file), "
          f"{iso(start)} .. {iso(end)}; ready in {time.perf_counter() - t0:.1f} s; disk {free_space(args.dir)}",
          flush=True)

    work = tempfile.mkdtemp(prefix="sisock-year-bench-")
    env = dict(os.environ, DATA_DIRECTORY=data, SISOCK_STATE_DIR=os.path.join(work, "state"))
    env.setdefault("SQL_HOST", "127.0.0.1")
    env.setdefault("SQL_USER", "root")
    db = stack = inproc = None
    try:
        print("\nindex")
        if args.sqlite:
            sqlite_dir = os.path.join(work, "sqlite")
            os.makedirs(sqlite_dir)
            url = "sqlite:///" + os.path.join(sqlite_dir, "g3_index.sqlite")
            measure_scans("SQLite", url, data, n_files, size)
            attempt("SQLite size", lambda: print(f"  SQLite index file: "
                                                 f"{gb(os.path.getsize(os.path.join(sqlite_dir, 'g3_index.sqlite')))}"))
            shutil.rmtree(sqlite_dir, ignore_errors=True)
        db = Database(env, args.keep_database)
        env = db.env
        measure_scans("MariaDB", db.url, data, n_files, size, db.reused)
        sizes = attempt("MariaDB size", db.size)
        if sizes is not None:
            print(f"  MariaDB index: {gb(sum(sizes))} (data {gb(sizes[0])} + indexes {gb(sizes[1])}), "
                  f"{sum(sizes) / max(size, 1):.1f}x the archive; disk {free_space(args.dir)}", flush=True)

        print("\nthrough the stack (bridge -> router -> g3-reader), MariaDB index", flush=True)
        stack = Stack(work, env)
        attempt("first g3-reader", stack.start_reader, n_names)
        attempt("listing", time_listing, stack, args.runs, f"{n_names} fields", n_names)
        inproc = InProcess(db.url, data, args.runs)

        def pick(k, count):  # spread over the provider: their spikes fall at different times
            p = provs[k]
            step = max(1, len(p.fields) // count)
            return [f"{p.description}.{f}" for f in p.fields[::step][:count]]

        narrow = pick(0, 5) + pick(1, 5)
        wide = pick(2, args.fields) + pick(3, args.fields)
        wide = wide[:100]
        rows = {}
        back = round(args.hours * HOUR / 2 / DAY) * DAY
        panels = [(f"10 x {label}", span, narrow, 0) for label, span in PANELS] + \
                 [(f"{len(wide)} x {label}", span, wide, 0) for label, span in WIDE_PANELS] + \
                 [(f"10 x {label} -{back // DAY:.0f} d", span, narrow, back) for label, span in PAST_PANELS
                  if back >= span]
        print(f"\npanels: maxDataPoints {MAX_POINTS}, intervalMs = range / {MAX_POINTS}; ms; cold = median of "
              f"{args.cold_runs} fresh g3-readers; warm = median of {args.runs}; "
              "in process = G3Reader.answer_get_data + the bridge's encoding", flush=True)
        header = (f"{'panel':>17} {'cold':>8} {'warm':>8} {'in cold':>8} {'in warm':>8} {'http/in':>8} "
                  f"{'cold/warm':>9} {'points':>7} {'spikes seen':>13} {'same':>5}")
        print(header, flush=True)
        for label, span, names, before in panels:
            if args.panels is not None and label not in [p.strip() for p in args.panels.split(",")]:
                continue
            if span > args.hours * HOUR:
                print(f"{label:>17}   skipped: longer than the archive", flush=True)
                continue
            a, b = end - before - span, end - before - 0.001
            row = attempt(f"panel {label}", run_panel, stack, inproc, names, provs, a, b, n_names, args.runs,
                          args.cold_runs)
            if row is None:
                continue
            rows[label] = row
            http_in = ratio(row.get("warm"), row.get("in_warm"))
            cold_warm = ratio(row["cold"], row["warm"])
            seen, injected = row["spikes"]
            print(f"{label:>17} {ms(row['cold']):>8} {ms(row['warm']):>8} {ms(row.get('in_cold')):>8} "
                  f"{ms(row.get('in_warm')):>8} {'—' if http_in is None else f'{http_in:.2f}x':>8} "
                  f"{cold_warm:8.2f}x {row['points']:7d} {seen:6d} of {injected:<5d} "
                  f"{ {True: 'yes', False: 'NO', None: '—'}[row.get('same')]:>5}", flush=True)
            print(f"{'':>17}   cold runs: {', '.join(ms(c) for c in row['colds'])}; warm after the reader "
                  f"settled ({row['settled']:.1f} s)", flush=True)
            if row.get("difference"):
                print(f"{'':>17}   not the same answer: {row['difference']}", flush=True)

        print("\nratios", flush=True)
        for label, row in rows.items():
            http_in = ratio(row.get("warm"), row.get("in_warm"))
            if http_in is not None:
                print(f"  {label}: HTTP / in process, warm: "
                      f"{REPORT.judge(f'{label} HTTP/in-process warm', http_in, '<= 3', http_in <= 3)}; cold: "
                      f"{ratio(row['cold'], row['in_cold']):.2f}")
            cw = ratio(row["cold"], row["warm"])
            print(f"  {label}: cold / warm: {REPORT.judge(f'{label} cold/warm', cw, '<= 3', cw <= 3)}")
            seen, injected = row["spikes"]
            if seen != injected:
                REPORT.judged.append((f"{label} spikes seen", f"{seen} of {injected}", "all", False))
        for width in ("10", str(len(wide))):
            year, week = rows.get(f"{width} x 365 d"), rows.get(f"{width} x 7 d")
            if year and week:
                for kind in ("warm", "cold"):
                    r = ratio(year[kind], week[kind])
                    print(f"  {width} fields, 365 d / 7 d, {kind}: "
                          f"{REPORT.judge(f'{width} x 365 d / 7 d {kind}', r, '<= 2', r <= 2)}")

        print(f"\n{NAMES_TARGET} names", flush=True)
        count = math.ceil(max(0, NAMES_TARGET - n_names) / EXTRA_FIELDS)
        if count:
            extra = extra_providers(count, 600.0)
            t0 = time.perf_counter()
            written = attempt("extra names", write_archive, extra_dir, start, start + HOUR, extra,
                              file_seconds=HOUR, frame_seconds=HOUR)
            if written:
                print(f"  wrote 1 file of {count * EXTRA_FIELDS} more names ({count} providers x {EXTRA_FIELDS}) in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
                got = attempt("rescan with the new file", scan, db.url, data)
                if got is not None:
                    print(f"  rescan reading it: {got[1]:.2f} s ({got[0].read} read, {got[0].unchanged} unchanged)",
                          flush=True)
                    total = n_names + count * EXTRA_FIELDS
                    attempt("10,000 names", ten_thousand, stack, args.runs, total)
                shutil.rmtree(extra_dir, ignore_errors=True)
                got = attempt("rescan without the new file", scan, db.url, data)
                if got is not None:
                    print(f"  rescan after deleting it: {got[1]:.2f} s ({got[0].removed} removed, "
                          f"{got[0].rollups} rollup chunks rebuilt)", flush=True)
        else:
            attempt("10,000 names", ten_thousand, stack, args.runs, n_names)
    finally:
        if inproc is not None:
            inproc.close()
        if stack is not None:
            stack.close()
        if db is not None:
            attempt("drop the database", db.drop)
        shutil.rmtree(extra_dir, ignore_errors=True)

    print("\nsummary")
    for what, value, target, ok in REPORT.judged:
        print(f"  {'ok    ' if ok else 'MISSED'} {what}: {value} (target {target})")
    for what, reason in REPORT.errors:
        print(f"  ERROR  {what}: {reason}")
    if REPORT.errors:
        print(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
