"""Latency of Grafana queries through the full local stack.

Starts ``sisock up --servers weather`` on free ports (router with hub, HTTP
bridge, example-weather server in replay mode), then times, in one run:

* ``/query`` for 24 h of the five weather fields (Grafana's usual panel),
* the same panel from the Infinity REST API (``/api/v1/data``, rows and columns),
* the same data fetched straight from the DataNodeServer over WAMP,
* ``/search``,

and prints p50/p90 of each and the bridge's overhead as a ratio, so the
numbers compare within one run on whatever machine this is.

    .venv/bin/python benchmarks/query_latency.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

from sisock.components.stack import default_socket

BIN = os.path.dirname(sys.executable)
FIELDS = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit("the stack did not come up in time")


def timed(fn, runs):
    fn()  # warm up: first call fills caches and connections
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    state = tempfile.mkdtemp(prefix="sisock-bench-")
    env = dict(os.environ, CROSSBAR_TLS_PORT=str(free_port()), CROSSBAR_OCS_PORT=str(free_port()),
               PORT=str(free_port()), WAMP_SECRET="benchmark-secret", LOGLEVEL="warn",
               SISOCK_CERT=os.path.join(state, "crossbar", "server_cert.pem"),
               SISOCK_ROUTER_SOCKET=default_socket(os.path.join(state, "crossbar")))
    http = f"http://127.0.0.1:{env['PORT']}"
    stack = subprocess.Popen([os.path.join(BIN, "sisock"), "up", "--state-dir", state, "--servers", "weather"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: "apex_archive::apex_radiometer" in requests.post(http + "/search", json={}).json(), 90)
        end = time.time()
        start = end - 86400
        body = {"range": {"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                          "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))},
                "maxDataPoints": 1000, "intervalMs": 86400,
                "targets": [{"target": f"apex_archive::{f}", "refId": f} for f in FIELDS]}
        session = requests.Session()

        def query():
            r = session.post(http + "/query", json=body)
            r.raise_for_status()
            return r

        points = sum(len(s["datapoints"]) for s in query().json())
        q50, q90 = timed(query, args.runs)
        rest = [("target", f"apex_archive::{f}") for f in FIELDS] + [
            ("from", int(start * 1000)), ("to", int(end * 1000)), ("maxDataPoints", 1000)]

        def rows():
            session.get(http + "/api/v1/data", params=rest).raise_for_status()

        def columns():
            session.get(http + "/api/v1/data", params=[*rest, ("format", "columns")]).raise_for_status()

        r50, r90 = timed(rows, args.runs)
        c50, c90 = timed(columns, args.runs)
        s50, s90 = timed(lambda: session.post(http + "/search", json={"target": ""}).raise_for_status(), args.runs)

        os.environ.update({k: env[k] for k in (
            "CROSSBAR_TLS_PORT", "WAMP_SECRET", "SISOCK_CERT", "SISOCK_ROUTER_SOCKET")})
        from sisock.client import Client
        from sisock.config import Settings

        with Client(Settings.from_env(env)) as client:
            stride = 86400 / 1000
            d50, d90 = timed(lambda: client.get_data("apex_archive", FIELDS, start, end, stride), args.runs)

        print(f"/query 24 h x {len(FIELDS)} fields ({points} points): p50 {q50 * 1e3:.1f} ms, p90 {q90 * 1e3:.1f} ms")
        print(f"/api/v1/data rows, same panel:        p50 {r50 * 1e3:.1f} ms, p90 {r90 * 1e3:.1f} ms")
        print(f"/api/v1/data columns, same panel:     p50 {c50 * 1e3:.1f} ms, p90 {c90 * 1e3:.1f} ms")
        print(f"WAMP get_data, same request:          p50 {d50 * 1e3:.1f} ms, p90 {d90 * 1e3:.1f} ms")
        print(f"/search:                              p50 {s50 * 1e3:.1f} ms, p90 {s90 * 1e3:.1f} ms")
        print(f"bridge overhead (/query p50 / get_data p50): {q50 / d50:.2f}x over {args.runs} runs")
        print(f"REST rows against /query (p50 / p50): {r50 / q50:.2f}x")
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(30)


if __name__ == "__main__":
    main()
