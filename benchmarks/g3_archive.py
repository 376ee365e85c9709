"""The g3 archive path, measured end to end in one run.

    .venv/bin/python benchmarks/g3_archive.py [--days 7] [--runs 5] [--mariadb]

1. Writes the reference archive: 7 days at 1 Hz, 2 providers x 10 fields,
   5-minute frames, 1-hour files, the current HK schema, one +1000
   single-sample spike per field every 6 h.
2. First scan (summaries included), in process, against so3g's own index of
   the same files (HKArchiveScanner) plus one bulk insert of the same rows
   into the same database.
3. Starts router, hub and HTTP bridge (``sisock up --servers none``) and a
   g3-reader, and times panels of 10 fields with maxDataPoints 1000 over the
   last 6 h, 24 h and the whole 7 days through HTTP ``/query``, cold (fresh
   g3-reader process) and warm, against the in-process floor: so3g reading
   just the raw files the panel needs, min/max decimation, JSON encoding.
   Counts the injected spikes visible in each panel.
4. 20 concurrent HTTP clients on the 6 h panel against the floor run by 20
   threads, in requests per second.
5. The g3-reader's peak RSS after the 7-day panel.
6. Where a warm panel's time goes: the CPU each process (bridge, router,
   g3-reader) spends per request over requests sent one after another,
   against the same answer computed and encoded in process (the reader's
   packed reply and the bridge's encoding, no router, no HTTP).

Every figure is printed with the ratio it is judged by.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import orjson
import psutil
import requests
import sqlalchemy as sa

from sisock.components.g3_scanner import Scanner
from sisock.components.stack import default_socket
from sisock.demo.g3 import Provider, expected, write_archive
from sisock.downsample import decimate_timeline
from sisock.g3.index import Index, database_url

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))
from lean_http import Client
from procs import free_port, wait_for
from timing import median_time

BIN = os.path.dirname(sys.executable)
PROVIDERS = [
    Provider("observatory.bench-thermo.feeds.temperatures", [f"T{i:02d}" for i in range(10)], block="temps"),
    Provider("observatory.bench-press.feeds.pressures", [f"P{i:02d}" for i in range(10)], block="press"),
]
SPIKE_EVERY, SPIKE_SIZE = 6 * 3600, 1000.0
PANELS = {"6 h": 6 * 3600, "24 h": 86400, "7 d": 7 * 86400}
MAX_POINTS = 1000
LAYOUT = {"file_seconds": 3600, "frame_seconds": 300, "spike_every": SPIKE_EVERY, "spike_size": SPIKE_SIZE}
CONCURRENT, CONCURRENT_SECONDS = 20, 5.0
SPLIT_RUNS = 100


def start_stack(env: dict, work: str):
    """Router, hub and bridge of the local stack (``sisock up --servers
    none``) on free ports, under ``work``: ``(process, bridge URL)``.
    ``env`` is changed in place to point clients at them (through the
    router's socket, as the stack's own servers join)."""
    ports = {"CROSSBAR_TLS_PORT": free_port(), "CROSSBAR_OCS_PORT": free_port(), "PORT": free_port()}
    env.update({k: str(v) for k, v in ports.items()}, WAMP_SECRET="benchmark-secret",
               SISOCK_CERT=os.path.join(work, "stack", "crossbar", "server_cert.pem"),
               SISOCK_ROUTER_SOCKET=default_socket(os.path.join(work, "stack", "crossbar")))
    stack = subprocess.Popen([os.path.join(BIN, "sisock"), "up", "--state-dir", os.path.join(work, "stack"),
                              "--servers", "none"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    return stack, f"http://127.0.0.1:{ports['PORT']}"


def panels_within(days: float, panels: dict | None = None) -> list[tuple[str, float]]:
    """``(label, seconds)`` of the panels (the reference ones by default) an archive of ``days`` holds."""
    return [(label, span) for label, span in (panels or PANELS).items() if span <= days * 86400]


def reference_arguments(doc: str):
    """``--days``, ``--runs`` and ``--mariadb``, as the benchmarks on the reference archive take them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mariadb", action="store_true", help="index in MariaDB (SQL_* or root@127.0.0.1)")
    return parser.parse_args()


def reference_archive(prefix: str, days: float):
    """The reference archive of the last ``days`` (whole hours), written into
    a new temporary folder: ``(work folder, data folder, start, end, files,
    seconds it took to write)``. Shared by the benchmarks that use it."""
    work = tempfile.mkdtemp(prefix=prefix)
    data = os.path.join(work, "archive")
    end = float(int(time.time() // 3600) * 3600)
    start = end - days * 86400
    t0 = time.perf_counter()
    files = write_archive(data, start, end, PROVIDERS, **LAYOUT)
    return work, data, start, end, files, time.perf_counter() - t0


def fresh_database(env: dict, name: str) -> dict:
    """``env`` (changed in place) naming a new, empty MariaDB database
    ``name`` on ``SQL_HOST``/``SQL_USER`` (root at 127.0.0.1 by default)."""
    env.setdefault("SQL_HOST", "127.0.0.1")
    env.setdefault("SQL_USER", "root")
    env["SQL_DB"] = name
    admin = sa.create_engine(database_url({**env, "SQL_DB": "mysql"}))
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    admin.dispose()
    return env


def discard(work: str, env: dict | None = None) -> None:
    """Remove what a run made: its folder (the archive is a hundred MB and
    more) and, given the ``env`` :func:`fresh_database` filled, its database."""
    shutil.rmtree(work, ignore_errors=True)
    if env is None:
        return
    admin = sa.create_engine(database_url({**env, "SQL_DB": "mysql"}))
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {env['SQL_DB']}"))
    admin.dispose()


def throughput(fn, threads, seconds):
    """Calls per second of ``fn`` run by ``threads`` threads for ``seconds``."""
    done, stop = [0] * threads, time.monotonic() + seconds

    def worker(i):
        while time.monotonic() < stop:
            fn()
            done[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return sum(done) / (time.monotonic() - t0)


def so3g_index_floor(files, url):
    """so3g's own index build plus one bulk insert of the same rows."""
    import so3g

    t0 = time.perf_counter()
    scanner = so3g.hk.HKArchiveScanner()
    for path in files:
        scanner.process_file(path)
    archive = scanner.finalize()
    rows = []
    for group in archive.field_groups:
        for info in group.index_info:
            for name in group.fields:
                rows.append({"path": info["filename"], "field": f"{group.prefix}.{name}",
                             "start": int(info["time_range"][0] * 1e6), "end": int(info["time_range"][1] * 1e6)})
    engine = sa.create_engine(url)
    table = sa.Table("bench_floor", sa.MetaData(), sa.Column("path", sa.String(512)),
                     sa.Column("field", sa.String(512)), sa.Column("start", sa.BigInteger),
                     sa.Column("end", sa.BigInteger))
    table.drop(engine, checkfirst=True)
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    elapsed = time.perf_counter() - t0
    table.drop(engine)
    engine.dispose()
    return elapsed, len(rows)


def floor_panel(files_by_hour, names, start, end):
    """In process: so3g reads only the needed raw files, then min/max
    decimation and JSON encoding, as the bridge would send it."""
    import so3g

    scanner = so3g.hk.HKArchiveScanner()
    for hour in range(int(start // 3600) * 3600, int(end // 3600) * 3600 + 1, 3600):
        if hour in files_by_hour:
            scanner.process_file(files_by_hour[hour])
    data, timelines = scanner.finalize().get_data(names, start, end)
    stride = (end - start) / MAX_POINTS
    out = []
    for tl in timelines.values():
        t, fields = decimate_timeline(tl["t"], {n: data[n] for n in tl["fields"]}, stride, start, end)
        for name, values in fields.items():
            out.append({"target": name, "datapoints": np.column_stack([values, t * 1000.0])})
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(round((t % 1) * 1000)):03d}Z"


def spikes_visible(series, truth, names, start, end):
    """(visible, injected) spikes: a spike is visible if its exact value is plotted."""
    seen = total = 0
    for name, s in zip(names, series, strict=True):
        t, v = truth[name]
        sel = (t >= start) & (t <= end) & (v > SPIKE_SIZE / 2)
        plotted = {p[0] for p in s["datapoints"]}
        total += int(sel.sum())
        seen += sum(1 for value in v[sel] if value in plotted)
    return seen, total


def stack_processes(stack_pid):
    """{role: [psutil.Process]} of what ``sisock up`` runs."""
    roles = {"bridge": [], "router": [], "supervisor": [psutil.Process(stack_pid)]}
    for p in psutil.Process(stack_pid).children(recursive=True):
        cmd = " ".join(p.cmdline())
        if "sisock-http" in cmd:
            roles["bridge"].append(p)
        elif "crossbar" in cmd or p.name().startswith("crossbar"):
            roles["router"].append(p)
        else:
            roles["supervisor"].append(p)
    return roles


def cpu_seconds(p):
    """User and system CPU seconds of ``p`` so far (0 once it is gone)."""
    try:
        t = p.cpu_times()
        return t.user + t.system
    except psutil.NoSuchProcess:
        return 0.0


def in_process_panel(reader, body):
    """A /query answer computed and encoded in this process, as the reader
    and the bridge would: the reader's packed reply, unpacked, reduced and
    encoded by the bridge's own code; no router, no HTTP."""
    from sisock import contract
    from sisock.components.http import series
    from sisock.components.http.request import parse_query

    q = parse_query(body)
    names = [t.field for t in q.targets]
    reply = reader.answer_get_data_packed(names, q.start, q.end, q.min_stride)
    out = []
    for target in q.targets:
        # The g3-reader names each field's timeline after the field (its get_fields says so).
        t, values = contract.field_series(reply, target.field, target.field) or (np.zeros(0), np.zeros(0))
        t, values = series.reduce(t, values, q.max_points, q.min_stride)
        out.append(series.timeserie(target.name, target.ref_id, t, values))
    return series.dumps(out)


def local_reader(url: str, data: str):
    """A G3Reader over the same index and files, in this process, with the
    server's default cache bound."""
    from sisock.cache import ByteLRU
    from sisock.servers import g3_reader

    archive = g3_reader.Archive(Index(url), data, ByteLRU(int(g3_reader.DEFAULT_CACHE_MB * 2**20)))
    return g3_reader.G3Reader(archive=archive)


def split(procs: dict, fn, runs: int) -> tuple[float, dict]:
    """Wall seconds per call of ``fn`` called ``runs`` times one after
    another, and each role's CPU seconds per call (``procs``: {role: [psutil.Process]})."""
    before = {role: sum(cpu_seconds(p) for p in ps) for role, ps in procs.items()}
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    wall = (time.perf_counter() - t0) / runs
    return wall, {role: (sum(cpu_seconds(p) for p in ps) - before[role]) / runs for role, ps in procs.items()}


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def main():
    args = reference_arguments(__doc__)

    work, data, start, end, files, seconds = reference_archive("sisock-g3-bench-", args.days)
    truth = expected(PROVIDERS, start, end, **LAYOUT)
    size = sum(os.path.getsize(f) for f in files)
    print(f"archive: {len(files)} files, {size / 1e6:.0f} MB, written in {seconds:.1f} s")

    env = dict(os.environ, DATA_DIRECTORY=data, SISOCK_STATE_DIR=os.path.join(work, "state"), LOGLEVEL="warn")
    env.pop("G3_CACHE_MB", None)  # the default cache bound is what is judged
    if args.mariadb:
        fresh_database(env, "sisock_bench")
    url = database_url(env)
    index = Index(url)  # the schema exists before the timing starts, as in a deployment
    t0 = time.perf_counter()
    stats = Scanner(index, data).scan_once()
    scan_s = time.perf_counter() - t0
    index.dispose()
    floor_s, nrows = so3g_index_floor(files, url)
    print(f"first scan, summaries included: {scan_s:.2f} s ({stats.read} files, {size / 1e6 / scan_s:.0f} MB/s); "
          f"so3g index + bulk insert of {nrows} rows: {floor_s:.2f} s; ratio {scan_s / floor_s:.2f} (target <= 2)")

    # The g3-reader is run here, not by the stack, so a cold measurement
    # starts it afresh without the supervisor's backoff.
    stack, http = start_stack(env, work)
    reader = None
    names = PROVIDERS[0].full_names()
    files_by_hour = {int(float(os.path.basename(f)[:-3])): f for f in files}

    def start_reader():
        return subprocess.Popen([os.path.join(BIN, "sisock-g3-reader-server")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listed():
        found = requests.post(http + "/search", json={"target": "g3_reader::"}, timeout=5).json()
        return len(found) == sum(len(p.fields) for p in PROVIDERS)

    def body_for(a, b):
        return {"range": {"from": iso(a), "to": iso(b)}, "maxDataPoints": MAX_POINTS,
                "targets": [{"target": f"g3_reader::{n}", "refId": n} for n in names]}

    try:
        wait_for(lambda: requests.get(http + "/", timeout=2).status_code == 200, 120, "the bridge")
        client = Client(http)

        def restart_reader():
            nonlocal reader
            if reader is not None:
                reader.kill()
                reader.wait(10)
                wait_for(lambda: not requests.post(http + "/search", json={"target": "g3_reader::"},
                                                   timeout=5).json(), 60, "the old reader to leave")
            reader = start_reader()
            wait_for(listed, 60, "the reader's fields in /search")

        def query(body):
            r = client.post("/query", body)
            r.raise_for_status()
            return r

        print(f"\npanels of {len(names)} fields, maxDataPoints {MAX_POINTS}, through HTTP /query; ms "
              f"(warm and floor: median of {args.runs})")
        print(f"{'panel':>6} {'floor':>8} {'cold':>8} {'warm':>8} {'floor/warm':>11} {'floor/cold':>11} "
              f"{'points':>7} {'spikes seen':>12}")
        for label, span in panels_within(args.days):
            a, b = end - span, end - 0.001
            body = body_for(a, b)
            floor = median_time(lambda a=a, b=b: floor_panel(files_by_hour, names, a, b), args.runs, warmup=1)
            restart_reader()
            cold = median_time(lambda body=body: query(body), 1)
            warm = median_time(lambda body=body: query(body), args.runs, warmup=3)
            series = query(body).json()
            points = sum(len(s["datapoints"]) for s in series)
            seen, injected = spikes_visible(series, truth, names, a, b)
            print(f"{label:>6} {floor * 1e3:8.1f} {cold * 1e3:8.1f} {warm * 1e3:8.1f} {floor / warm:10.1f}x "
                  f"{floor / cold:10.1f}x {points:7d} {seen:5d} of {injected:<5d}")
        peak = peak_rss_mb(reader.pid)
        rss = psutil.Process(reader.pid).memory_info().rss / 2**20
        print(f"\ng3-reader after the 7-day panel: RSS {rss:.0f} MB, peak {peak:.0f} MB with the default "
              f"512 MB cache bound (target: peak < 250 MB)")

        roles = stack_processes(stack.pid)
        procs = {"bridge": roles["bridge"], "router": roles["router"], "reader": [psutil.Process(reader.pid)]}
        local = local_reader(url, data)
        print(f"\nwhere a warm panel's time goes: {SPLIT_RUNS} requests one after another, CPU ms per request "
              f"of each process; in process = the reader's packed answer and the bridge's encoding, no router "
              f"or HTTP (median of {args.runs})")
        print(f"{'panel':>6} {'HTTP':>7} {'bridge':>7} {'router':>7} {'reader':>7} {'in process':>11} "
              f"{'HTTP/in process':>16}")
        for label, span in panels_within(args.days):
            body = body_for(end - span, end - 0.001)
            for _ in range(3):
                query(body)
            wall, cpu = split(procs, lambda body=body: query(body), SPLIT_RUNS)
            inproc = median_time(lambda body=body: in_process_panel(local, body), args.runs, warmup=2)
            print(f"{label:>6} {wall * 1e3:7.1f} {cpu['bridge'] * 1e3:7.2f} {cpu['router'] * 1e3:7.2f} "
                  f"{cpu['reader'] * 1e3:7.2f} {inproc * 1e3:11.2f} {wall / inproc:15.1f}x")
        local.archive.index.dispose()

        a, b = end - PANELS["6 h"], end - 0.001
        body = body_for(a, b)
        floor_rps = throughput(lambda: floor_panel(files_by_hour, names, a, b), CONCURRENT, CONCURRENT_SECONDS)
        local = threading.local()
        payload = orjson.dumps(body)

        def client_query():
            c = getattr(local, "client", None) or Client(http)
            local.client = c
            c.post("/query", payload).raise_for_status()

        ours_rps = throughput(client_query, CONCURRENT, CONCURRENT_SECONDS)
        print(f"{CONCURRENT} concurrent clients on the 6 h panel for {CONCURRENT_SECONDS:.0f} s: "
              f"{ours_rps:.0f} requests/s; floor with {CONCURRENT} threads {floor_rps:.0f}/s; "
              f"ratio {ours_rps / floor_rps:.1f}x (target >= 4)")
    finally:
        if reader is not None:
            reader.kill()
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(60)
        discard(work, env if args.mariadb else None)


if __name__ == "__main__":
    main()
