"""Grafana's InfluxQL panels against sisock and against a real InfluxDB 1.x, in one run.

    .venv/bin/python benchmarks/influxql_panels.py [--days 7] [--runs 5] [--mariadb]

1. Writes the reference archive of benchmarks/g3_archive.py (1 Hz, 2
   providers x 10 fields, 5-minute frames, 1-hour files, the current HK
   schema) and scans it; loads the same samples into Debian's ``influxd``
   the way the OCS publisher writes them (``ocs.common.influxdb_drivers.
   format_data``, line protocol, ns), then restarts it so its cache is on disk.
2. Starts router, hub and bridge (``sisock up --servers none``) and a
   g3-reader.
3. Times the panels Grafana's query builder makes of it, over the last 6 h,
   24 h and 7 d: for each provider ``SELECT mean("T00"), max("T00"), ...``
   over its 10 fields ``GROUP BY time($__interval) fill(null)``, the two
   statements in one request, ``$__interval`` computed as Grafana does for a
   1000 px panel (20s, 1m, 10m) and ``$timeFilter`` as its backend expands
   it. Cold (a fresh g3-reader; a freshly restarted influxd) and warm
   (median of ``--runs``), sisock's ``/influxdb/query`` against InfluxDB's
   ``/query``, and whether the two answers are equal.

Goal, printed beside the ratios: sisock at least 5x faster than InfluxDB
warm on 24 h and 7 d, and no slower on 6 h.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from sisock.components.g3_scanner import Scanner
from sisock.demo.g3 import expected
from sisock.g3.index import Index, database_url

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))
from g3_archive import (
    LAYOUT,
    PROVIDERS,
    discard,
    fresh_database,
    panels_within,
    reference_archive,
    reference_arguments,
    start_stack,
)

from influx_compare import diff
from influx_samples import agent_address, archive_messages, feed_name, write_influx
from influxdb_server import InfluxServer
from influxql_corpus import builder, grafana_interval
from procs import wait_for
from timing import median_time

BIN = os.path.dirname(sys.executable)
PANELS = {"6 h": 6 * 3600, "24 h": 86400, "7 d": 7 * 86400}
GOAL = {"6 h": 1.0, "24 h": 5.0, "7 d": 5.0}  # InfluxDB time / sisock time, warm
DATABASE = "ocs_feeds"


def panel_query(from_ms: int, to_ms: int) -> str:
    """One statement per provider, as the query builder writes a target, joined as one request."""
    statements = []
    for p in PROVIDERS:
        selects = [f'{fn}("{f}")' for f in p.fields for fn in ("mean", "max")]
        statements.append(builder(selects, agent_address(p.description), from_ms, to_ms,
                                  tags=[("feed", "=", f"'{feed_name(p.description)}'")]))
    return ";".join(statements)


def main():
    args = reference_arguments(__doc__)

    work, data, start, end, files, seconds = reference_archive("sisock-influxql-bench-", args.days)
    size = sum(os.path.getsize(f) for f in files)
    print(f"archive: {len(files)} files, {size / 1e6:.0f} MB, {sum(len(p.fields) for p in PROVIDERS)} fields at 1 Hz "
          f"over {args.days:g} days, written in {seconds:.1f} s")

    env = dict(os.environ, DATA_DIRECTORY=data, SISOCK_STATE_DIR=os.path.join(work, "state"), LOGLEVEL="warn")
    if args.mariadb:
        fresh_database(env, "sisock_bench_influxql")
    index = Index(database_url(env))
    t0 = time.perf_counter()
    Scanner(index, data).scan_once()
    index.dispose()
    print(f"scan: {time.perf_counter() - t0:.1f} s")

    influx = InfluxServer(os.path.join(work, "influxdb"))
    influx.start()
    t0 = time.perf_counter()
    client = influx.client(DATABASE)
    lines = write_influx(client, DATABASE, archive_messages(PROVIDERS, expected(PROVIDERS, start, end, **LAYOUT)))
    client.close()
    print(f"InfluxDB {influx.proc.argv[0]} loaded through ocs format_data: {lines} lines in "
          f"{time.perf_counter() - t0:.1f} s")

    def restart_influx():
        influx.stop()
        influx.start()

    restart_influx()  # the write cache goes to TSM files, as on a server that has been up a while

    stack, http = start_stack(env, work)
    reader = None
    session = requests.Session()

    def listed():
        found = session.post(http + "/search", json={"target": "g3_reader::"}, timeout=5).json()
        return len(found) == sum(len(p.fields) for p in PROVIDERS)

    def restart_reader():
        nonlocal reader
        if reader is not None:
            reader.kill()
            reader.wait(10)
            wait_for(lambda: not session.post(http + "/search", json={"target": "g3_reader::"}, timeout=5).json(),
                     60, "the old reader to leave")
        reader = subprocess.Popen([os.path.join(BIN, "sisock-g3-reader-server")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(listed, 60, "the reader's fields in /search")

    def ask(base, q):
        r = session.get(base + "/query", params={"db": DATABASE, "q": q, "epoch": "ms"}, timeout=600)
        r.raise_for_status()
        return r.json()

    try:
        wait_for(lambda: session.get(http + "/", timeout=2).status_code == 200, 120, "the bridge")
        sisock = http + "/influxdb"
        print(f"\nGrafana InfluxQL panels, {len(PROVIDERS)} statements x 10 fields x (mean, max) per request, "
              f"1000 px; ms (warm: median of {args.runs})")
        print(f"{'panel':>5} {'interval':>8} {'rows':>6} {'influx cold':>11} {'sisock cold':>11} {'ratio':>6} "
              f"{'influx warm':>11} {'sisock warm':>11} {'ratio':>6} {'goal':>6}  answers")
        for label, span in panels_within(args.days, PANELS):
            from_ms, to_ms = int((end - span) * 1000), int(end * 1000)
            q = panel_query(from_ms, to_ms)
            restart_influx()
            restart_reader()
            influx_cold = median_time(lambda q=q: ask(influx.url, q), 1)
            sisock_cold = median_time(lambda q=q: ask(sisock, q), 1)
            influx_warm = median_time(lambda q=q: ask(influx.url, q), args.runs, warmup=2)
            sisock_warm = median_time(lambda q=q: ask(sisock, q), args.runs, warmup=2)
            want, got = ask(influx.url, q), ask(sisock, q)
            problem = diff(want, got)
            rows = sum(len(s["values"]) for r in want["results"] for s in r.get("series", []))
            ratio_warm = influx_warm / sisock_warm
            print(f"{label:>5} {grafana_interval(from_ms, to_ms):>8} {rows:6d} {influx_cold * 1e3:11.1f} "
                  f"{sisock_cold * 1e3:11.1f} {influx_cold / sisock_cold:5.1f}x {influx_warm * 1e3:11.1f} "
                  f"{sisock_warm * 1e3:11.1f} {ratio_warm:5.1f}x {'>=' + format(GOAL[label], 'g') + 'x':>6}"
                  f"{' met' if ratio_warm >= GOAL[label] else ' NOT met'}  {'equal' if problem is None else problem}")
    finally:
        if reader is not None:
            reader.kill()
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(60)
        influx.stop()
        discard(work, env if args.mariadb else None)


if __name__ == "__main__":
    main()
