"""Throughput of the g3 path under a compiled load generator, one reader
against two sharing one name, on this host and on a second network host.

    .venv/bin/python benchmarks/scale_out.py [--seconds 10] [--warmup 5] [--days 7]

Needs root (for the network namespace), Debian's ``wrk`` and MariaDB
(``SQL_HOST``/``SQL_USER``/``SQL_PASSWD``, default root@127.0.0.1).

1. Writes the reference archive of ``g3_archive.py`` (7 days at 1 Hz,
   2 providers x 10 fields, hourly files) and indexes it once with the g3
   file scanner into a throwaway MariaDB database (dropped at the end).
2. Creates a second "host": a network namespace joined to this one by a
   veth pair in 10.231.N.0/30. The router, hub and bridge
   (``sisock up --servers none``) listen on the host side of the pair
   (``BIND_HOST``), so readers on either side reach them at the same
   address, which the router's certificate names (``CROSSBAR_HOST``).
   MariaDB listens on loopback only; the namespace reaches it through a
   TCP relay this script runs on the host side of the pair.
3. ``wrk`` with 20 connections and 2 threads POSTs Grafana-shaped
   ``/query`` bodies: a few hundred different 6 h panels inside the 7 days,
   each with its own 10 of the 20 fields, cycled by a generated Lua script
   that also counts non-200 answers and checks a sample of bodies.
4. Three configurations: (a) one g3-reader, (b) two on this host sharing
   the name (``SISOCK_SHARED=roundrobin``), (c) one on this host and one in
   the namespace, sharing it. For each: requests/s, every process's CPU
   share (of one core and of the machine), the process that saturates
   first, and the ``get_data`` calls each reader answered. Readers run the
   console script's own ``main`` with a call counter wrapped around
   ``DataNodeServer._answer_data`` (where get_data and get_data_packed
   both end).

The namespace shares this machine's cores: configuration (c) checks the
network path of a second host and how calls spread, not added capacity.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import requests
import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g3_archive import BIN, MAX_POINTS, PROVIDERS, cpu_seconds, iso, reference_archive, stack_processes

from sisock.components.g3_scanner import Scanner
from sisock.components.stack import default_socket
from sisock.g3.index import Index, database_url

from procs import free_port, wait_for  # tests/, put on the path by g3_archive

PANEL = 6 * 3600
FIELDS_PER_PANEL = 10
NODE = "g3_reader"
NS_SUBNET = ipaddress.ip_network("10.231.0.0/16")

# Runs the reader's console script with a count of the data calls it
# answered (get_data and get_data_packed both end in _answer_data, in the
# reader's thread pool), written to $SCALE_OUT_COUNTS every 0.1 s.
READER = r"""
import os, sys, threading, time
import sisock.base as base
calls, lock = [0], threading.Lock()
answer = base.DataNodeServer._answer_data
def counted(self, *args, **kwargs):
    with lock:
        calls[0] += 1
    return answer(self, *args, **kwargs)
base.DataNodeServer._answer_data = counted
def dump(path=os.environ["SCALE_OUT_COUNTS"]):
    while True:
        with open(path + ".tmp", "w") as f:
            f.write(str(calls[0]))
        os.replace(path + ".tmp", path)
        time.sleep(0.1)
threading.Thread(target=dump, daemon=True).start()
sys.argv[0] = "sisock-g3-reader-server"
from sisock.servers.g3_reader import main
main()
"""

LUA = r"""
local bodies = {
%s
}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

-- Thread i sends bodies i, i + step, i + 2 step, ...: no two requests in
-- flight are the same, so nothing is coalesced along the way.
local step = %d

function init(args)
  n = id - 1
  ok, bad, checked, good = 0, 0, 0, 0
end

function request()
  local body = bodies[(n %% #bodies) + 1]
  n = n + step
  return wrk.format("POST", "/query", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
  if (ok + bad) %% 25 == 1 then
    checked = checked + 1
    if status == 200 and string.find(body, '"datapoints":[[', 1, true) then good = good + 1 end
  end
end

function done(summary, latency, requests)
  local t = {ok = 0, bad = 0, checked = 0, good = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  local e = summary.errors
  io.write(string.format('SCALE_OUT {"requests": %%d, "duration_us": %%d, "ok": %%d, "bad": %%d, ' ..
    '"checked": %%d, "good": %%d, "errors": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d}\n',
    summary.requests, summary.duration, t.ok, t.bad, t.checked, t.good,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
"""


def run(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


class Namespace:
    """A second network host: a namespace and a veth pair in a /30 of
    10.231.0.0/16 that no address or route of this machine touches."""

    def __init__(self):
        tag = os.getpid() % 100000
        self.name, self.host_if, self.ns_if = f"sisock-bench-{tag}", f"sbh{tag}", f"sbn{tag}"
        taken = run("ip", "-4", "-o", "addr").stdout + run("ip", "-4", "route", "show", "table", "all").stdout
        used = {ipaddress.ip_network(m, strict=False) for m in re.findall(r"(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", taken)}
        for third in range(1, 255):
            net = ipaddress.ip_network(f"10.231.{third}.0/30")
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                break
        else:
            raise RuntimeError("no free /30 in 10.231.0.0/16")
        self.host_ip, self.ns_ip = (str(a) for a in net.hosts())
        self.created = False

    def create(self):
        run("ip", "netns", "add", self.name)
        self.created = True
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        run("ip", "link", "set", self.ns_if, "netns", self.name)
        run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        for cmd in (["ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if],
                    ["ip", "link", "set", self.ns_if, "up"], ["ip", "link", "set", "lo", "up"]):
            run("ip", "netns", "exec", self.name, *cmd)

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def remove(self):
        run("ip", "link", "del", self.host_if, check=False)  # takes its peer with it
        if self.created:
            run("ip", "netns", "del", self.name, check=False)


class Relay:
    """TCP relay from ``listen`` to ``target``, in threads of this process:
    the namespace reaches MariaDB, which listens on loopback only."""

    def __init__(self, listen, target):
        self.target = target
        self.sock = socket.create_server(listen, reuse_port=False)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


class Reader:
    def __init__(self, label, env, work, prefix=()):
        self.label = label
        self.counts = os.path.join(work, f"calls-{label}")
        self.log_path = os.path.join(work, f"{label}.log")
        self.log = open(self.log_path, "wb")
        self.popen = subprocess.Popen([*prefix, sys.executable, "-c", READER],
                                      env={**env, "SCALE_OUT_COUNTS": self.counts},
                                      stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def registered(self):
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.label} exited with {self.popen.returncode}; see {self.log_path}")
        with open(self.log_path, errors="replace") as f:
            return f"data node registered as {NODE}" in f.read()

    def calls(self):
        try:
            with open(self.counts) as f:
                return int(f.read() or 0)
        except FileNotFoundError:
            return 0

    def process(self):
        """The Python process itself (``ip netns exec`` execs it in place)."""
        return psutil.Process(self.popen.pid)

    def stop(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self.log.close()


def make_bodies(start, end, count, seed=1):
    names = [n for p in PROVIDERS for n in p.full_names()]
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(count):
        a = round(float(rng.uniform(start, end - PANEL)), 3)
        fields = rng.choice(names, FIELDS_PER_PANEL, replace=False)
        bodies.append({"range": {"from": iso(a), "to": iso(a + PANEL)}, "maxDataPoints": MAX_POINTS,
                       "intervalMs": PANEL * 1000 // MAX_POINTS,
                       "targets": [{"target": f"{NODE}::{n}", "refId": chr(65 + i)} for i, n in enumerate(fields)]})
    return bodies


def write_lua(path, bodies, threads):
    text = ",\n".join("[==[" + json.dumps(b, separators=(",", ":")) + "]==]" for b in bodies)
    with open(path, "w") as f:
        f.write(LUA % (text, threads))


def describe(p):
    """The program a process runs, by the name it was started as."""
    try:
        cmd = p.cmdline()
    except psutil.NoSuchProcess:
        return "(gone)"
    words = [os.path.basename(w.split()[0]) for w in cmd[:3] if w.strip()]
    exe = next((w for w in words if w.startswith(("sisock", "crossbar"))), None)
    if exe is None and "-c" in cmd:
        exe = "sisock-g3-reader-server (counting calls)"
    return f"{exe or p.name()} (pid {p.pid})"


def wrk(url, lua, connections, threads, seconds):
    """wrk's JSON summary line and its own CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-c", str(connections), "-t", str(threads), "-d", f"{seconds:g}s",
                          "--timeout", "10s", "-s", lua, url], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in out.stdout.splitlines() if x.startswith("SCALE_OUT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(line.split(" ", 1)[1]), cpu


def settled_calls(readers, quiet=0.5, timeout=30):
    """Each reader's get_data count once no call has arrived for ``quiet``
    seconds: requests left in flight by a wrk run are answered first."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = [r.calls() for r in readers]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.1)
    return last


def warm_up(readers, url, lua, args):
    """wrk runs of ``--warmup`` seconds until every reader has answered
    ``--warm-passes`` times as many calls as there are bodies (each has then
    read nearly every file and field a body asks for), 120 s at most."""
    want, start = args.warm_passes * args.bodies, settled_calls(readers)
    deadline = time.monotonic() + 120
    while True:
        wrk(url, lua, args.connections, args.threads, args.warmup)
        done = [c1 - c0 for c1, c0 in zip(settled_calls(readers), start, strict=True)]
        if min(done) >= want or time.monotonic() > deadline:
            return done


def measure(label, readers, roles, url, lua, args):
    """One wrk run; returns the figures and prints them."""
    procs = [(f"bridge: {describe(p)}", "bridge", p) for p in roles["bridge"]]
    procs += [(f"router: {describe(p)}", "router", p) for p in roles["router"]]
    procs += [(f"{r.label}: {describe(r.process())}", r.label, r.process()) for r in readers]
    procs += [(f"supervisor: {describe(p)}", "supervisor", p) for p in roles["supervisor"]]
    calls0 = settled_calls(readers)
    cpu0 = [cpu_seconds(p) for _, _, p in procs]
    machine0 = psutil.cpu_times()
    t0 = time.monotonic()
    summary, wrk_cpu = wrk(url, lua, args.connections, args.threads, args.seconds)
    wall = time.monotonic() - t0
    cpu1 = [cpu_seconds(p) for _, _, p in procs]
    machine1 = psutil.cpu_times()
    # Includes the calls of requests still in flight when wrk stopped.
    calls = [c1 - c0 for c1, c0 in zip(settled_calls(readers), calls0, strict=True)]

    ncpu = psutil.cpu_count()
    busy = sum(getattr(machine1, f) - getattr(machine0, f) for f in ("user", "nice", "system", "irq", "softirq"))
    total = sum(machine1) - sum(machine0)
    rps = summary["requests"] / (summary["duration_us"] / 1e6)
    print(f"\n{label}")
    print(f"  {summary['requests']} requests in {summary['duration_us'] / 1e6:.1f} s: {rps:.1f} requests/s; "
          f"latency p50 {summary['p50_us'] / 1e3:.0f} ms, p90 {summary['p90_us'] / 1e3:.0f} ms, "
          f"p99 {summary['p99_us'] / 1e3:.0f} ms")
    print(f"  answers: {summary['ok']} x 200, {summary['bad']} other, {summary['errors']} socket errors; "
          f"sampled bodies with data points: {summary['good']} of {summary['checked']}")
    nreq = max(summary["requests"], 1)
    print(f"  {'process':<66} {'CPU s':>6} {'% of 1 core':>11} {'% machine':>9} {'ms/request':>10}")
    by_role = {}
    ours = 0.0
    rows = [(name, role, b - a) for (name, role, _), a, b in zip(procs, cpu0, cpu1, strict=True)]
    rows.append((f"wrk -c {args.connections} -t {args.threads}", "wrk", wrk_cpu))

    def row(name, sec, per_request=True):
        ms = f"{1e3 * sec / nreq:10.2f}" if per_request else ""
        print(f"  {name:<66} {sec:6.2f} {100 * sec / wall:10.0f}% {100 * sec / wall / ncpu:8.0f}% {ms}")

    for name, role, sec in rows:
        by_role[role] = by_role.get(role, 0.0) + sec
        ours += sec
        row(name, sec)
    machine = busy / total * ncpu * wall
    other = max(machine - ours, 0.0)
    row("everything else on the machine (other users' programs)", other, False)
    row("machine busy", machine, False)
    services = {r: s for r, s in by_role.items() if r not in ("wrk", "supervisor")}
    first = max(services, key=services.get)
    print("  by role, % of one core: " + ", ".join(f"{r} {100 * s / wall:.0f}%" for r, s in by_role.items()))
    # A process that had a core to itself would top out near 1 / (its CPU
    # per request): the one with the lowest such ceiling saturates first,
    # whatever else runs on the machine.
    ceilings = {r: nreq / s for r, s in services.items() if s > 0}
    print("  requests/s of the stack at which each would use 100% of one core: "
          + ", ".join(f"{r} {c:.0f}" for r, c in ceilings.items()))
    note = ""
    if busy / total > 0.9:
        note = (f"; all cores are busy, {100 * other / machine:.0f}% of them with other programs, "
                "so no process is at its own ceiling and this ranks their shares")
    print(f"  saturates first: {first}, {100 * services[first] / wall:.0f}% of one core{note}")
    total_calls = sum(calls) or 1
    print("  data calls: " + ", ".join(f"{r.label} {c} ({100 * c / total_calls:.0f}%)"
                                           for r, c in zip(readers, calls, strict=True))
          + f"; {sum(calls) / max(summary['requests'], 1):.2f} per request")
    return {"rps": rps, "first": first, "share": 100 * services[first] / wall, "calls": calls,
            "bad": summary["bad"] + summary["errors"], "busy": 100 * busy / total,
            "shares": {r: 100 * s / wall for r, s in services.items()}, "ceilings": ceilings,
            "other": 100 * other / wall / ncpu}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--seconds", type=float, default=10, help="wrk run per configuration")
    parser.add_argument("--warmup", type=float, default=5, help="length of each warm-up wrk run (0: none)")
    parser.add_argument("--warm-passes", type=float, default=2,
                        help="warm up until each reader has answered this many times --bodies calls")
    parser.add_argument("--bodies", type=int, default=300, help="different panels cycled by wrk")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--policy", default="roundrobin", choices=("roundrobin", "random"))
    args = parser.parse_args()
    # Whole partitions per wrk thread, each longer than its connections.
    args.bodies = max(-(-args.bodies // args.threads), args.connections) * args.threads
    if shutil.which("wrk") is None:
        sys.exit("scale_out.py needs wrk: apt-get install -y wrk")
    if os.geteuid() != 0:
        sys.exit("scale_out.py needs root for the network namespace (ip netns)")

    work, data, start, end, files, seconds = reference_archive("sisock-scale-out-", args.days)
    print(f"archive: {len(files)} files, {sum(os.path.getsize(f) for f in files) / 1e6:.0f} MB, "
          f"written in {seconds:.1f} s")

    db = f"sisock_scale_out_{os.getpid()}"
    sql = {"SQL_HOST": os.environ.get("SQL_HOST") or "127.0.0.1", "SQL_USER": os.environ.get("SQL_USER") or "root",
           "SQL_PASSWD": os.environ.get("SQL_PASSWD") or "", "SQL_DB": db}
    admin = sa.create_engine(database_url({**sql, "SQL_DB": "mysql"}))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {db} CHARACTER SET utf8mb4"))
    ns, relay, stack, readers = Namespace(), None, None, []
    try:
        index = Index(database_url(sql))
        t0 = time.perf_counter()
        stats = Scanner(index, data).scan_once()
        index.dispose()
        print(f"scanned into MariaDB database {db}: {stats.read} files in {time.perf_counter() - t0:.1f} s")

        ns.create()
        sql_host, _, sql_port = sql["SQL_HOST"].partition(":")
        relay = Relay((ns.host_ip, 0), (sql_host, int(sql_port or 3306)))
        print(f"second host: network namespace {ns.name}, {ns.ns_ip} <-> {ns.host_ip} (veth); "
              f"MariaDB relayed at {ns.host_ip}:{relay.port}")

        state = os.path.join(work, "stack")
        ports = {"CROSSBAR_TLS_PORT": free_port(), "CROSSBAR_OCS_PORT": free_port(), "PORT": free_port()}
        env = dict(os.environ, **{k: str(v) for k, v in ports.items()}, **sql, DATA_DIRECTORY=data,
                   SISOCK_STATE_DIR=os.path.join(work, "state"), WAMP_SECRET="benchmark-secret",
                   BIND_HOST=ns.host_ip, CROSSBAR_HOST=ns.host_ip, LOGLEVEL="info",
                   SISOCK_CERT=os.path.join(state, "crossbar", "server_cert.pem"),
                   SISOCK_ROUTER_SOCKET=default_socket(os.path.join(state, "crossbar")))
        for var in ("G3_CACHE_MB", "SISOCK_SHARED", "MAX_POINTS"):
            env.pop(var, None)
        stack_log = open(os.path.join(work, "stack.log"), "wb")
        stack = subprocess.Popen([os.path.join(BIN, "sisock"), "up", "--state-dir", state, "--servers", "none"],
                                 env={**env, "LOGLEVEL": "warn"}, stdout=stack_log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        http = f"http://{ns.host_ip}:{ports['PORT']}"
        wait_for(lambda: requests.get(http + "/", timeout=2).status_code == 200, 120, "the bridge")
        roles = stack_processes(stack.pid)
        bodies = make_bodies(start, end, args.bodies)
        lua = os.path.join(work, "panels.lua")
        write_lua(lua, bodies, args.threads)
        nfields = sum(len(p.fields) for p in PROVIDERS)
        print(f"router, hub and bridge at {ns.host_ip} (BIND_HOST); wrk: {args.connections} connections, "
              f"{args.threads} threads, {len(bodies)} different 6 h panels of {FIELDS_PER_PANEL} fields, "
              f"{args.seconds:g} s after {args.warmup:g} s of warm-up; {psutil.cpu_count()} cores")

        def search():
            return requests.post(http + "/search", json={"target": f"{NODE}::"}, timeout=5).json()

        shared = {**env, "SISOCK_SHARED": args.policy}
        # The second host has the files but not the router's socket: it joins over TLS.
        remote = {**shared, "SQL_HOST": f"{ns.host_ip}:{relay.port}", "SISOCK_ROUTER_SOCKET": ""}
        configs = [
            ("a", "one g3-reader", [("reader-1", env, ())]),
            ("b", f"two g3-readers on this host, SISOCK_SHARED={args.policy}",
             [("reader-1", shared, ()), ("reader-2", shared, ())]),
            ("c", f"one g3-reader here, one in namespace {ns.name}, SISOCK_SHARED={args.policy}",
             [("reader-here", shared, ()), ("reader-netns", remote, ns.prefix())]),
        ]
        results = {}
        for key, label, spec in configs:
            readers = [Reader(name, e, work, prefix) for name, e, prefix in spec]
            for r in readers:
                wait_for(r.registered, 90, f"{r.label} to register {NODE}")
            wait_for(lambda: len(search()) == nfields, 60, "the readers' fields in /search")
            nodes = requests.get(http + "/api/v1/nodes", timeout=5).json()
            listed = [n for n in nodes if n["node"] == NODE]
            assert len(listed) == 1, f"{NODE} listed {len(listed)} times: {nodes}"
            for body in bodies[:3]:
                r = requests.post(http + "/query", json=body, timeout=30)
                r.raise_for_status()
                series = r.json()
                assert len(series) == FIELDS_PER_PANEL and all(0 < len(s["datapoints"]) <= MAX_POINTS
                                                               for s in series), series
            if args.warmup > 0:
                warmed = warm_up(readers, http, lua, args)
                print(f"\nwarm-up for ({key}): " + ", ".join(f"{r.label} {c} calls"
                                                            for r, c in zip(readers, warmed, strict=True)))
            results[key] = measure(f"({key}) {label}", readers, roles, http, lua, args)
            for r in readers:
                r.stop()
            readers = []
            wait_for(lambda: not search(), 60, f"{NODE} to leave /search")

        print("\nsummary")
        for key, res in results.items():
            print(f"  ({key}) {res['rps']:7.1f} requests/s, {res['rps'] / results['a']['rps']:.2f}x of (a); "
                  f"machine {res['busy']:.0f}% busy ({res['other']:.0f}% other programs); % of one core: "
                  + ", ".join(f"{r} {v:.0f}" for r, v in res["shares"].items())
                  + f"; saturates first: {res['first']}; data calls per reader {res['calls']}; "
                  f"failed answers {res['bad']}")
            print("       requests/s at which each would use one core: "
                  + ", ".join(f"{r} {c:.0f}" for r, c in res["ceilings"].items()))
        print(f"  two readers / one reader: {results['b']['rps'] / results['a']['rps']:.2f}x on this host, "
              f"{results['c']['rps'] / results['a']['rps']:.2f}x across two hosts")
        readers_first = [k for k, r in results.items() if r["first"].startswith("reader")]
        print("  the g3-reader saturates first in: " + (", ".join(f"({k})" for k in readers_first) or "none"))
    finally:
        for r in readers:
            r.stop()
        if stack is not None:
            os.killpg(stack.pid, signal.SIGINT)
            try:
                stack.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)
        if relay is not None:
            relay.close()
        ns.remove()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {db}"))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
