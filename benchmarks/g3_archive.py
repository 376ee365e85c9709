"""The g3 archive path, measured end to end in one run.

    .venv/bin/python benchmarks/g3_archive.py [--days 7] [--runs 5] [--mariadb]

1. Writes an archive (default 7 days, 2 providers x 10 fields, 1 Hz, hourly
   files, the current HK schema).
2. First scan with ``sisock-g3-file-scanner`` vs the floor: so3g's own index
   of the same files (HKArchiveScanner) plus one bulk insert of the same
   rows into the same database.
3. Starts the local stack on that archive (router, hub, bridge, scanner,
   g3-reader) and times panels of 10 fields with maxDataPoints 1000 over
   6 h, 24 h and 7 d: the g3-reader's ``get_data`` over WAMP and the full
   HTTP ``/query``, cold (fresh g3-reader process, empty cache) and warm,
   against the in-process floor (so3g reading the files the panel needs,
   min/max decimation, JSON encoding).
4. The g3-reader's peak RSS after the 7-day panel, against its cache bound.

Every number is printed with the ratio it is judged by.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import orjson
import psutil
import requests
import sqlalchemy as sa

from sisock.components.g3_demo import Provider, write_archive
from sisock.components.g3_index import Index, database_url
from sisock.downsample import decimate_timeline

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))
from procs import free_port, wait_for  # noqa: E402

BIN = os.path.dirname(sys.executable)
PROVIDERS = [
    Provider("observatory.bench-thermo.feeds.temperatures", [f"T{i:02d}" for i in range(10)], block="temps"),
    Provider("observatory.bench-press.feeds.pressures", [f"P{i:02d}" for i in range(10)], block="press"),
]
PANELS = {"6 h": 6 * 3600, "24 h": 86400, "7 d": 7 * 86400}
MAX_POINTS = 1000


def median_time(fn, runs):
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


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
    """In process: so3g reads only the needed files, then decimate and encode."""
    import so3g

    scanner = so3g.hk.HKArchiveScanner()
    first, last = int(start // 3600) * 3600, int(end // 3600) * 3600
    for hour in range(first, last + 1, 3600):
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
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mariadb", action="store_true", help="index in MariaDB (SQL_* or root@127.0.0.1)")
    parser.add_argument("--cache-mb", type=float, default=512)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="sisock-g3-bench-")
    data = os.path.join(work, "archive")
    end = float(int(time.time() // 3600) * 3600)
    start = end - args.days * 86400
    t0 = time.perf_counter()
    files = write_archive(data, start, end, PROVIDERS, file_seconds=3600, frame_seconds=300)
    size = sum(os.path.getsize(f) for f in files)
    print(f"archive: {len(files)} files, {size / 1e6:.0f} MB, written in {time.perf_counter() - t0:.1f} s")

    env = dict(os.environ, DATA_DIRECTORY=data, SISOCK_STATE_DIR=os.path.join(work, "state"), LOGLEVEL="warn",
               G3_CACHE_MB=str(args.cache_mb))
    if args.mariadb:
        env.setdefault("SQL_HOST", "127.0.0.1")
        env.setdefault("SQL_USER", "root")
        env["SQL_DB"] = "sisock_bench"
        admin = sa.create_engine(database_url({**env, "SQL_DB": "mysql"}))
        with admin.begin() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS sisock_bench"))
            conn.execute(sa.text("CREATE DATABASE sisock_bench CHARACTER SET utf8mb4"))
    url = database_url(env)
    Index(url).dispose()  # create the schema outside the timing, as a deployed index already has it

    t0 = time.perf_counter()
    subprocess.run([os.path.join(BIN, "sisock-g3-file-scanner"), "--once"], env=env, check=True)
    scan_s = time.perf_counter() - t0
    floor_s, nrows = so3g_index_floor(files, url)
    print(f"first scan: {scan_s:.2f} s ({size / 1e6 / scan_s:.0f} MB/s, process start included); "
          f"so3g index + bulk insert of {nrows} rows: {floor_s:.2f} s; ratio {scan_s / floor_s:.2f} (target <= 3)")

    ports = {"CROSSBAR_TLS_PORT": free_port(), "CROSSBAR_OCS_PORT": free_port(), "PORT": free_port()}
    env.update({k: str(v) for k, v in ports.items()}, WAMP_SECRET="benchmark-secret",
               SISOCK_CERT=os.path.join(work, "stack", "crossbar", "server_cert.pem"))
    http = f"http://127.0.0.1:{ports['PORT']}"
    # Router, hub and bridge from the local stack; the g3-reader run here, so
    # a cold measurement can start it afresh (empty cache) without waiting on
    # the supervisor's restart backoff.
    stack = subprocess.Popen([os.path.join(BIN, "sisock"), "up", "--state-dir", os.path.join(work, "stack"),
                              "--servers", "none"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    reader = None

    def start_reader():
        return subprocess.Popen([os.path.join(BIN, "sisock-g3-reader-server")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    names = PROVIDERS[0].full_names()
    files_by_hour = {int(float(os.path.basename(f)[:-3])): f for f in files}
    try:
        wait_for(lambda: requests.get(http + "/", timeout=2).status_code == 200, 120, "the bridge")
        reader = start_reader()

        def listed():
            found = requests.post(http + "/search", json={"target": "g3_reader::"}, timeout=5).json()
            return len(found) == 20

        wait_for(listed, 120, "the g3-reader fields in /search")
        os.environ.update({k: env[k] for k in ("WAMP_SECRET", "SISOCK_CERT")})
        from sisock.client import Client
        from sisock.config import Settings

        client = Client(Settings.from_env(env))
        session = requests.Session()

        def restart_reader():
            nonlocal reader
            reader.kill()
            reader.wait(10)
            wait_for(lambda: "g3_reader" not in {n["name"] for n in client.data_nodes()}, 30, "the reader to leave")
            reader = start_reader()
            wait_for(lambda: "g3_reader" in {n["name"] for n in client.data_nodes()}, 30, "the reader to rejoin")

        print(f"\npanels of {len(names)} fields, maxDataPoints {MAX_POINTS}; times in ms "
              f"(warm: median of {args.runs})")
        print(f"{'panel':>6} {'floor':>8} {'get_data cold':>14} {'get_data warm':>14} {'/query cold':>12} "
              f"{'/query warm':>12} {'warm /query / floor':>20}")
        for label, span in PANELS.items():
            if span > args.days * 86400:
                continue
            a, b = end - span, end - 1
            body = {"range": {"from": iso(a), "to": iso(b)}, "maxDataPoints": MAX_POINTS,
                    "targets": [{"target": f"g3_reader::{n}", "refId": n} for n in names]}

            def get_data(a=a, b=b):
                return client.get_data("g3_reader", names, a, b, (b - a) / MAX_POINTS)

            def query(body=body):
                r = session.post(http + "/query", json=body)
                r.raise_for_status()
                return r

            floor = median_time(lambda a=a, b=b: floor_panel(files_by_hour, names, a, b), args.runs)
            restart_reader()
            gd_cold = median_time(get_data, 1)
            gd_warm = median_time(get_data, args.runs)
            restart_reader()
            q_cold = median_time(query, 1)
            q_warm = median_time(query, args.runs)
            points = sum(len(s["datapoints"]) for s in query().json())
            print(f"{label:>6} {floor * 1e3:8.1f} {gd_cold * 1e3:14.1f} {gd_warm * 1e3:14.1f} {q_cold * 1e3:12.1f} "
                  f"{q_warm * 1e3:12.1f} {q_warm / floor:20.2f}   ({points} points)")

        proc = psutil.Process(reader.pid)
        rss = proc.memory_info().rss / 2**20
        with open(f"/proc/{proc.pid}/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
        print(f"\ng3-reader RSS after the panels: {rss:.0f} MB, peak {peak:.0f} MB; cache bound {args.cache_mb:.0f} MB "
              f"+ 300 MB = {args.cache_mb + 300:.0f} MB (target: peak below it)")
        client.close()
    finally:
        if reader is not None:
            reader.kill()
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(60)


if __name__ == "__main__":
    main()
