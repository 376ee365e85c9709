"""Latency of a 30-day get_data from the text-archive servers.

Writes 30 days at 1-minute cadence of both example archives (APEX: 7 fields,
one file per field per day; UCSC: one file per day), then times ``get_data``
of every field over the whole 30 days, undecimated (43,200 samples a field):

* in process: *cold* is a fresh archive with an empty cache (median of
  fresh runs, so files are in the OS page cache: parsing, not disk, is
  measured), *warm* the median with the cache filled;
* through WAMP (router + hub started here, server as its own process):
  *cold* is the first request to a freshly started server, *warm* the median
  after it.

    .venv/bin/python benchmarks/text_archives.py [--days 30] [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from autobahn.wamp.types import ComponentConfig

from sisock.components.stack import default_socket
from sisock.demo import archives as archive_demo
from sisock.servers.apex_weather import ApexWeatherServer
from sisock.servers.radiometer import RadiometerServer
from sisock.servers.text_archive import TextArchive

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))
from procs import free_port, port_open, wait_for
from timing import median_time

BIN = os.path.dirname(sys.executable)
SERVERS = {"apex_weather": (ApexWeatherServer, "sisock.servers.apex_weather"),
           "ucsc_radiometer": (RadiometerServer, "sisock.servers.radiometer")}


def in_process(cls, root, fields, start, end, runs):
    def fresh():
        return cls(ComponentConfig("test_realm", {}), archive=TextArchive(root, cls.layout))

    cold = median_time(lambda: fresh()._get_data_blocking(fields, start, end), runs)
    server = fresh()
    reply = server._get_data_blocking(fields, start, end)
    warm = median_time(lambda: server._get_data_blocking(fields, start, end), runs)
    return cold, warm, sum(len(v) for v in reply["data"].values())


def through_wamp(root, work, written, start, end, runs):
    env = dict(os.environ, CROSSBAR_HOST="127.0.0.1", CROSSBAR_TLS_PORT=str(free_port()),
               CROSSBAR_OCS_PORT=str(free_port()), WAMP_USER="server", WAMP_SECRET="benchmark-secret",
               SISOCK_CERT=os.path.join(work, "crossbar", "server_cert.pem"), LOGLEVEL="warn",
               SISOCK_ROUTER_SOCKET=default_socket(os.path.join(work, "crossbar")),
               DATA_DIRECTORY=root)
    env.pop("MAX_POINTS", None)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "start_new_session": True}
    procs = [subprocess.Popen([os.path.join(BIN, "sisock-crossbar"), "--cbdir", os.path.join(work, "crossbar"),
                               "--no-hub"], **quiet)]
    out = {}
    try:
        wait_for(lambda: port_open(int(env["CROSSBAR_TLS_PORT"])), 60, "the router")
        procs.append(subprocess.Popen([os.path.join(BIN, "sisock-hub")], **quiet))
        from sisock.client import Client
        from sisock.config import Settings

        with Client(Settings.from_env(env), timeout=120) as client:
            for node, (_, module) in SERVERS.items():
                server = subprocess.Popen([sys.executable, "-m", module], **quiet)
                procs.append(server)
                wait_for(lambda node=node: node in {n["name"] for n in client.data_nodes()}, 60, node)
                fields = list(written[node].series)
                t0 = time.perf_counter()
                client.get_data(node, fields, start, end)
                cold = time.perf_counter() - t0
                warm = median_time(lambda node=node, fields=fields: client.get_data(node, fields, start, end), runs)
                out[node] = (cold, warm)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(30)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-wamp", action="store_true", help="in-process figures only")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="sisock-text-bench-")
    root = os.path.join(work, "archive")
    end = float(int(time.time() // 86400) * 86400)
    start = end - args.days * 86400
    t0 = time.perf_counter()
    written = dict(zip(SERVERS, archive_demo.write_demo(root, args.days, end=end, cadence=60), strict=True))
    size = sum(os.path.getsize(p) for w in written.values() for p in w.files)
    print(f"archives: {sum(len(w.files) for w in written.values())} files, {size / 1e6:.1f} MB, "
          f"written in {time.perf_counter() - t0:.1f} s")
    print(f"get_data of every field over {args.days:g} days at 1-minute cadence, undecimated; ms "
          f"(medians of {args.runs})")
    print(f"{'server':>16} {'fields':>6} {'values':>8} {'cold':>8} {'warm':>8}   {'WAMP cold':>9} {'WAMP warm':>9}")
    wamp = {} if args.no_wamp else through_wamp(root, work, written, start, end - 0.001, args.runs)
    for node, (cls, _) in SERVERS.items():
        fields = list(written[node].series)
        cold, warm, values = in_process(cls, root, fields, start, end - 0.001, args.runs)
        w_cold, w_warm = wamp.get(node, (float("nan"), float("nan")))
        print(f"{node:>16} {len(fields):6d} {values:8d} {cold * 1e3:8.1f} {warm * 1e3:8.1f}   "
              f"{w_cold * 1e3:9.1f} {w_warm * 1e3:9.1f}")


if __name__ == "__main__":
    main()
