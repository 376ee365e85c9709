"""A DataNodeServer on one host, the router on another.

The second host is a network namespace joined to this one by a veth pair,
with its own ``/etc/hosts`` (``ip netns exec`` mounts ``/etc/netns/<ns>/hosts``),
so the remote server reaches the router by name over a real network path and
cannot use this host's loopback. The router listens only on the link's address.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from sisock.client import Client
from sisock.components.tls import make_certificate
from sisock.config import DEFAULT_WAMP_SECRET, Settings

from procs import BIN, Proc, free_port, port_open, wait_for

SECRET = "multi-host-secret"
ROUTER_NAME = "sisock-router.test"
OTHER_NAME = "not-in-the-certificate.test"


def _run(*argv):
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


class Hosts:
    """This host (the router's) and a remote one, linked by a /30."""

    def __init__(self, root: str):
        tag = uuid.uuid4().hex[:6]
        self.ns = f"sisock-{tag}"
        self.veth = f"sk{tag}"
        octet = int(tag[:2], 16)
        self.router_ip = f"10.231.{octet}.1"
        self.remote_ip = f"10.231.{octet}.2"
        self.root = root
        self.logdir = os.path.join(root, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.procs: list[Proc] = []

    def up(self):
        if os.geteuid() != 0 or not shutil.which("ip"):
            raise AssertionError("the multi-host tests need root and iproute2 ('ip netns') to make a second host")
        _run("ip", "netns", "add", self.ns)
        _run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", f"{self.veth}r")
        _run("ip", "link", "set", f"{self.veth}r", "netns", self.ns)
        _run("ip", "addr", "add", f"{self.router_ip}/30", "dev", self.veth)
        _run("ip", "link", "set", self.veth, "up")
        _run("ip", "netns", "exec", self.ns, "ip", "addr", "add", f"{self.remote_ip}/30", "dev", f"{self.veth}r")
        _run("ip", "netns", "exec", self.ns, "ip", "link", "set", f"{self.veth}r", "up")
        _run("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
        os.makedirs(f"/etc/netns/{self.ns}", exist_ok=True)
        with open(f"/etc/netns/{self.ns}/hosts", "w") as f:
            f.write(f"127.0.0.1 localhost\n{self.router_ip} {ROUTER_NAME} {OTHER_NAME}\n")

    def down(self):
        for p in reversed(self.procs):
            p.stop()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        shutil.rmtree(f"/etc/netns/{self.ns}", ignore_errors=True)

    def proc(self, name, script, env, remote: bool) -> Proc:
        argv = [os.path.join(BIN, script)]
        if remote:
            argv = ["ip", "netns", "exec", self.ns, *argv]
        p = Proc(name, argv, env=env, cwd=self.root, logdir=self.logdir)
        self.procs.append(p)
        return p


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    h = Hosts(str(tmp_path_factory.mktemp("multihost")))
    try:
        h.up()
        yield h
    finally:
        h.down()


@pytest.fixture(scope="module")
def router(hosts):
    """A router (with its hub) bound to the link address only, its certificate
    naming it as remote servers know it."""
    cbdir = os.path.join(hosts.root, "router")
    make_certificate(cbdir, [ROUTER_NAME, hosts.router_ip])
    env = {**os.environ, "BIND_HOST": hosts.router_ip, "CROSSBAR_TLS_PORT": str(free_port()),
           "CROSSBAR_OCS_PORT": str(free_port()), "WAMP_SECRET": SECRET, "PYTHONUNBUFFERED": "1",
           "SISOCK_CERT": os.path.join(cbdir, "server_cert.pem")}
    p = hosts.proc("router", "sisock-crossbar", env, remote=False)
    p.argv += ["--cbdir", cbdir]
    p.start()
    port = int(env["CROSSBAR_TLS_PORT"])
    wait_for(lambda: port_open(port, hosts.router_ip), 60, "the router on the link address")
    return p


def _remote_env(router, **over):
    env = {**router.env, "CROSSBAR_HOST": ROUTER_NAME, "LOGLEVEL": "info"}
    env.pop("BIND_HOST")
    env.update(over)
    return env


@pytest.fixture(scope="module")
def local_client(hosts, router):
    c = Client(Settings.from_env({**router.env, "CROSSBAR_HOST": hosts.router_ip}), timeout=30)
    yield c
    c.close()


def _nodes(client) -> set[str]:
    return {n["name"] for n in client.data_nodes()}


def test_remote_server_joins_by_name_over_tls(hosts, router, local_client):
    started = time.monotonic()
    remote = hosts.proc("remote-weather", "sisock-weather-server", _remote_env(router), remote=True).start()
    wait_for(lambda: "apex_archive" in _nodes(local_client), 30, "the remote server to register")
    joined = time.monotonic() - started
    series = local_client.data("apex_archive", ["apex_pressure"], 1, 0)["apex_pressure"]
    assert len(series.t) > 100
    print(f"remote DataNodeServer registered {joined:.2f} s after start; {len(series.t)} samples across hosts")
    remote.stop()
    wait_for(lambda: "apex_archive" not in _nodes(local_client), 10, "the remote server to leave")
    assert "cannot reach the router" not in remote.output()  # a clean stop is not a connection failure


@pytest.mark.parametrize(("case", "over", "expect"), [
    ("untrusted certificate", "impostor", "is not the one in"),
    ("name not in the certificate", {"CROSSBAR_HOST": OTHER_NAME}, f"does not name {OTHER_NAME!r}"),
    ("wrong secret", {"WAMP_SECRET": "not-the-secret"}, "refused"),
    ("default secret", {"WAMP_SECRET": DEFAULT_WAMP_SECRET}, "public development default"),
])
def test_remote_server_is_refused(hosts, router, local_client, case, over, expect):
    if over == "impostor":
        other, _key = make_certificate(os.path.join(hosts.root, "impostor"), [ROUTER_NAME, hosts.router_ip])
        over = {"SISOCK_CERT": other}
    name = "refused-" + case.replace(" ", "-")
    remote = hosts.proc(name, "sisock-weather-server", _remote_env(router, **over), remote=True).start()
    try:
        wait_for(lambda: expect in remote.output(), 30, f"the remote server to say why ({expect!r})")
        assert "apex_archive" not in _nodes(local_client)
    finally:
        remote.stop()
    lines = [line for line in remote.output().splitlines() if expect in line]
    print(f"{case}: {lines[0].strip()[-160:]}")


def test_router_refuses_the_default_secret_off_loopback(hosts):
    env = {**os.environ, "BIND_HOST": hosts.router_ip, "CROSSBAR_TLS_PORT": str(free_port()),
           "CROSSBAR_OCS_PORT": str(free_port())}
    env.pop("WAMP_SECRET", None)
    cbdir = os.path.join(hosts.root, "refusing")
    done = subprocess.run([os.path.join(BIN, "sisock-crossbar"), "--cbdir", cbdir], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "SISOCK_ALLOW_DEFAULT_SECRET" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(cbdir, "config.json"))


def test_routers_bind_loopback_unless_told(stack, hosts):
    """The session's router was started without BIND_HOST: the remote host
    cannot reach it even at this host's link address."""
    probe = (f"import socket\ntry:\n socket.create_connection(('{hosts.router_ip}', {stack.tls_port}), timeout=2)\n"
             " print('reachable')\nexcept OSError as e:\n print('unreachable', e)")
    done = subprocess.run(["ip", "netns", "exec", hosts.ns, sys.executable, "-c", probe],
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("unreachable"), done.stdout + done.stderr
