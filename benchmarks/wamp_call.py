"""What one WAMP call costs through the router, by process, in one run.

    .venv/bin/python benchmarks/wamp_call.py [--calls 2000]

Starts router and hub (``sisock up --servers none``) on free ports, then, for
answers of 100 bytes and of 160 kB (a 10-field panel's packed points), a
callee process registering an echo procedure and a caller process calling
it ``--calls`` times one after another:

* over TLS with WAMP-CRA (the ``server`` role, as every sisock process),
  the callee answering in the reactor and from a thread (as DataNodeServers
  do with ``deferToThread``);
* over the router's UNIX socket with WAMP-CRA (``SISOCK_ROUTER_SOCKET``, as
  the processes of ``sisock up`` join), the same two ways;
* over the plain OCS websocket (the anonymous role), for what TLS costs.

Prints wall time per call and each process's CPU per call (caller,
crossbar's router worker, callee): the fixed cost a panel pays on top of
computing its answer. The machine's speed drifts by tens of percent over
seconds, so the transports are measured in ``--rounds`` interleaved rounds
and each figure is the median of its rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile

import psutil
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g3_archive import cpu_seconds, stack_processes, start_stack

from procs import wait_for  # tests/, put on the path by g3_archive

# Runs in its own process: ``role mode size calls``.
PEER = r"""
import json, os, resource, sys, time
from autobahn.twisted.wamp import ApplicationRunner, ApplicationSession
from twisted.internet import defer, reactor, threads
from sisock.config import Settings
from sisock.connect import Connection
from sisock.session import AuthenticatedSession

role, mode, size, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
uri = "observatory.bench.echo" if mode == "plain" else "org.simonsobservatory.bench.echo"
payload = b"x" * size


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Peer(ApplicationSession if mode == "plain" else AuthenticatedSession):
    @defer.inlineCallbacks
    def onJoin(self, details):
        if role == "callee":
            if mode.endswith("thread"):
                yield self.register(lambda n: threads.deferToThread(lambda: payload), uri)
            else:
                yield self.register(lambda n: payload, uri)
            print("ready", flush=True)
            return
        for _ in range(100):
            yield self.call(uri, 1)
        c0, t0 = cpu(), time.perf_counter()
        for _ in range(calls):
            yield self.call(uri, 1)
        print(json.dumps({"wall": (time.perf_counter() - t0) / calls, "cpu": (cpu() - c0) / calls}), flush=True)
        reactor.stop()


if mode == "plain":
    ApplicationRunner(f"ws://127.0.0.1:{os.environ['CROSSBAR_OCS_PORT']}/ws", "test_realm").run(Peer)
else:
    Connection(Peer, Settings.from_env()).start()
    reactor.run()
"""


def measure(env, router, mode, size, calls):
    """(wall s, caller CPU s, router CPU s, callee CPU s) per call."""
    callee = subprocess.Popen([sys.executable, "-c", PEER, "callee", mode, str(size), str(calls)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        # autobahn's runner logs what a session prints, behind a time stamp.
        wait_for(lambda: callee.stdout.readline().rstrip().endswith("ready"), 60, "the callee")
        c0, r0 = cpu_seconds(psutil.Process(callee.pid)), sum(cpu_seconds(p) for p in router)
        out = subprocess.run([sys.executable, "-c", PEER, "caller", mode, str(size), str(calls)], env=env,
                             capture_output=True, text=True, timeout=600)
        c1, r1 = cpu_seconds(psutil.Process(callee.pid)), sum(cpu_seconds(p) for p in router)
        line = next(x for x in out.stdout.splitlines() if "{" in x)
        got = json.loads(line[line.index("{"):])
        every = calls + 100  # the callee and the router also served the warm-up calls
        return got["wall"], got["cpu"], (r1 - r0) / every, (c1 - c0) / every
    finally:
        callee.kill()
        callee.wait(10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sisock-wamp-call-")
    env = dict(os.environ, LOGLEVEL="warn")
    stack, http = start_stack(env, work)
    try:
        wait_for(lambda: requests.get(http + "/", timeout=2).status_code == 200, 120, "the stack")
        router = [p for p in stack_processes(stack.pid)["router"] if "worker" in " ".join(p.cmdline())]
        print(f"{args.calls} calls one after another, in each of {args.rounds} interleaved rounds; "
              f"microseconds per call, median of the rounds")
        print(f"{'transport':<34} {'answer':>8} {'wall':>7} {'caller':>7} {'router':>7} {'callee':>7}")
        tls = {**env, "SISOCK_ROUTER_SOCKET": ""}  # start_stack points clients at the socket
        cases = [(mode, label, where, size)
                 for mode, label, where in (("tls", "TLS + WAMP-CRA, callee in reactor", tls),
                                            ("thread", "TLS + WAMP-CRA, callee thread", tls),
                                            ("socket", "UNIX socket + WAMP-CRA, in reactor", env),
                                            ("socket-thread", "UNIX socket + WAMP-CRA, thread", env),
                                            ("plain", "plain websocket (anonymous)", tls))
                 for size in (100, 160_000)]
        rounds = {case[:2] + case[3:]: [] for case in cases}
        for _ in range(args.rounds):
            for mode, label, where, size in cases:
                rounds[(mode, label, size)].append(measure(where, router, mode, size, args.calls))
        for (_mode, label, size), got in rounds.items():
            wall, caller, routed, callee = (statistics.median(x) for x in zip(*got, strict=True))
            print(f"{label:<34} {size:>8} {wall * 1e6:7.0f} {caller * 1e6:7.0f} {routed * 1e6:7.0f} "
                  f"{callee * 1e6:7.0f}", flush=True)
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(60)


if __name__ == "__main__":
    main()
