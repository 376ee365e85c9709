"""The compose stack, built and run on a real container engine.

``make compose-test`` runs this module (marker ``compose``); ``make test``
leaves it out because it needs a docker engine. It builds the sisock image
from docker/Dockerfile, brings docker-compose.yml up as a throwaway project
(its own name, fresh secrets, free ports on 127.0.0.1, data folders written
here) and checks it only through the published ports and the documented
commands, as a site would: every service healthy; every data node listed;
a g3 archive indexed by the scanner container and served by the reader
container sample for sample; a real OCS FakeDataAgent on this machine seen
through a data-feed container; a DataNodeServer outside the stack joining
with the certificate copied as the guide says; ``docker compose restart`` of
the router, of MariaDB and of the bridge healing with nothing lost; every
container started at once with no ordering (what a host reboot does); the
certificate remade and handed out again; the stack coming down clean.

Grafana's image cannot be built where its base image cannot be pulled; the
Grafana test then says so and skips, and its provisioning files are checked
statically by tests/test_compose.py.

The figures (build time, image size, up to healthy, recovery times) are
printed; ``-s`` shows them.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import requests
import yaml

from sisock.components.ocs_site import AgentSpec
from sisock.config import Settings
from sisock.demo.archives import write_apex, write_ucsc

from g3_helpers import START, make_archive
from ocs_fixtures import FAKE_FEED, OcsSite
from procs import Proc, free_port, wait_for

pytestmark = pytest.mark.compose

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE_FILE = os.path.join(ROOT, "docker-compose.yml")
#: Services this module starts: everything but Grafana, whose image needs a
#: base that may not be available (see test_grafana).
GRAFANA = "grafana"
#: One-shot services: they must have exited 0, not be running.
ONE_SHOT = {"certs"}
#: Data nodes every stack serves, and the one made from the FakeDataAgent.
NODES = {"apex_archive", "sensors", "apex_weather", "ucsc_radiometer", "g3_reader"}
FAKE_AGENT = "fake-compose1"
FAKE_NODE = "fake_feed"
HOST_NODE = "host_sensors"
#: The g3 archive: three hourly files; two are there at start, the third is
#: added while the stack runs, the fourth after MariaDB restarts.
G3_HOURS = 4
#: Upper bounds of waits (a slow machine may need them; a healthy one is far
#: quicker, and the printed figures say how much).
HEALTHY_TIMEOUT = 240.0
HEAL_TIMEOUT = 180.0
BUILD_TIMEOUT = 3600.0
#: maxDataPoints of every data request: above any window's sample count, and
#: low enough that all targets of one request stay within the bridge's
#: allowance per answer (MAX_ANSWER_POINTS).
MAX_POINTS_PER_TARGET = 100_000


def _run(argv, timeout=600.0, check=True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
    return done


def compose_command() -> list[str]:
    """``$COMPOSE``, else Compose v2 (``docker compose``), else the v1 binary."""
    if os.environ.get("COMPOSE"):
        return shlex.split(os.environ["COMPOSE"])
    if _run(["docker", "compose", "version"], check=False, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return [shutil.which("docker-compose")]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed")


def _iso_ms(t: float) -> str:
    return str(int(round(t * 1000)))


def _chmod_readable(top: str):
    """Containers run as uid 9000: the folders they read must be world-readable
    (pytest's temporary folders are 0700)."""
    for root, _dirs, files in os.walk(top):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


@dataclass
class Figures:
    rows: list = field(default_factory=list)

    def add(self, what: str, value: str):
        self.rows.append((what, value))
        print(f"[compose-test] {what}: {value}", flush=True)


@dataclass
class ComposeStack:
    """One compose project: its files, its commands, its published ports."""

    workdir: str
    image: str
    figures: Figures
    project: str = field(default_factory=lambda: f"sisocktest{secrets.token_hex(3)}")

    def __post_init__(self):
        self.cmd = compose_command()
        self.ports = {name: free_port() for name in ("ocs", "http", "tls", "grafana")}
        self.g3_dir = os.path.join(self.workdir, "g3")
        self.apex_dir = os.path.join(self.workdir, "apex")
        self.radiometer_dir = os.path.join(self.workdir, "radiometer")
        self.secret = secrets.token_urlsafe(24)
        self.env_file = os.path.join(self.workdir, "test.env")
        self.override = os.path.join(self.workdir, "override.yml")
        with open(self.env_file, "w") as f:
            f.write("\n".join([
                f"WAMP_SECRET={self.secret}",
                f"SQL_PASSWD={secrets.token_urlsafe(24)}",
                f"MARIADB_ROOT_PASSWORD={secrets.token_urlsafe(24)}",
                f"GRAFANA_ADMIN_PASSWORD={secrets.token_urlsafe(24)}",
                f"OCS_PUBLISH_PORT={self.ports['ocs']}",
                f"HTTP_PUBLISH_PORT={self.ports['http']}",
                f"GRAFANA_PUBLISH_PORT={self.ports['grafana']}",
                f"G3_DATA_DIR={self.g3_dir}",
                f"APEX_DATA_DIR={self.apex_dir}",
                f"RADIOMETER_DATA_DIR={self.radiometer_dir}",
                "SCAN_INTERVAL=5",
                "LOGLEVEL=info",
            ]) + "\n")
        with open(self.override, "w") as f:
            yaml.safe_dump(self._override(), f, sort_keys=False)

    def _override(self) -> dict:
        """What the test adds, the ways the deployment guide shows: the
        router's TLS port published (on loopback here) for a DataNodeServer
        outside the stack, and a data-feed service for the FakeDataAgent."""
        return {"services": {
            "sisock-crossbar": {"ports": [f"127.0.0.1:{self.ports['tls']}:8080"]},
            "fake-feed": {
                "image": self.image, "init": True, "restart": "unless-stopped",
                "command": ["sisock-data-feed-server"],
                "environment": {
                    "WAMP_SECRET": self.secret, "CROSSBAR_HOST": "sisock-crossbar",
                    "SISOCK_CERT": "/certs/server_cert.pem", "LOGLEVEL": "info",
                    "TARGET": FAKE_AGENT, "FEED": FAKE_FEED, "NAME": FAKE_NODE,
                    "DESCRIPTION": "FakeDataAgent on the host",
                },
                "volumes": ["certs:/certs:ro"],
                "depends_on": {"sisock-crossbar": {"condition": "service_healthy"}},
            },
        }}

    # -- commands ---------------------------------------------------------------------

    def compose(self, *args, timeout=600.0, check=True) -> subprocess.CompletedProcess:
        return _run([*self.cmd, "--project-name", self.project, "--project-directory", ROOT,
                     "-f", COMPOSE_FILE, "-f", self.override, "--env-file", self.env_file, *args],
                    timeout=timeout, check=check)

    def services(self) -> list[str]:
        names = self.compose("config", "--services").stdout.split()
        return [n for n in names if n != GRAFANA]

    def containers(self) -> dict[str, dict]:
        """``{service: docker inspect}`` of this project's containers."""
        ids = _run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"]).stdout
        if not ids.split():
            return {}
        info = json.loads(_run(["docker", "inspect", *ids.split()]).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in info}

    def states(self) -> dict[str, str]:
        """Each service's state as a word: healthy, unhealthy, starting,
        running (no health check), exited(N)."""
        out = {}
        for name, c in self.containers().items():
            state = c["State"]
            if state["Status"] != "running":
                out[name] = f"{state['Status']}({state['ExitCode']})"
            else:
                out[name] = state.get("Health", {}).get("Status", "running")
        return out

    def wait_healthy(self, timeout=HEALTHY_TIMEOUT, what="every service to be healthy") -> float:
        t0 = time.monotonic()
        wanted = set(self.services())

        def ready():
            states = self.states()
            ready.last = states
            if set(states) != wanted:
                return False
            return all((states[s] == "exited(0)") if s in ONE_SHOT else states[s] in ("healthy", "running")
                       for s in states)

        ready.last = {}
        try:
            wait_for(ready, timeout, what, interval=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstates: {ready.last}\n{self.logs_tail()}") from None
        return time.monotonic() - t0

    def logs_tail(self, services=(), lines=40) -> str:
        return self.compose("logs", "--no-color", "--tail", str(lines), *services, check=False).stdout[-12000:]

    def restart_counts(self) -> dict[str, int]:
        return {name: c["RestartCount"] for name, c in self.containers().items()}

    # -- what OcsSite needs of the stack it runs agents against --------------------------

    @property
    def ocs_port(self) -> int:
        return self.ports["ocs"]

    @property
    def env(self) -> dict:
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    # -- the bridge -------------------------------------------------------------------

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def metrics(self, text: str = "") -> list[str]:
        r = requests.post(self.http + "/search", json={"target": text}, timeout=10)
        r.raise_for_status()
        return r.json()

    def nodes(self) -> set[str]:
        return {m.split("::", 1)[0] for m in self.metrics()}

    def columns(self, targets, start: float, end: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every sample of ``targets`` in ``[start, end]`` through the REST
        API: ``{target: (times in ms, values)}``. The windows asked for hold
        far fewer than MAX_POINTS_PER_TARGET samples, so nothing is thinned.
        The bridge sends ``t * 1000.0`` of each sample's float time, so a
        time is exact when it equals the source's time times 1000.0, bit for
        bit (rounding to µs would not be: at today's epoch a float64 holds a
        quarter of a µs)."""
        params = [("target", t) for t in targets] + [
            ("from", _iso_ms(start)), ("to", _iso_ms(end)), ("maxDataPoints", str(MAX_POINTS_PER_TARGET)),
            ("format", "columns")]
        r = requests.get(self.http + "/api/v1/data", params=params, timeout=60)
        r.raise_for_status()
        return {s["target"]: (np.asarray(s["time"], dtype=float), np.asarray(s["value"], dtype=float))
                for s in r.json()["series"]}

    def host_settings(self, cert: str) -> Settings:
        """Settings of a client outside the stack, as the guide tells it to
        join: the published TLS port, a name in the certificate, the secret
        and the copied certificate."""
        return Settings.from_env({
            "CROSSBAR_HOST": "localhost", "CROSSBAR_TLS_PORT": str(self.ports["tls"]),
            "WAMP_SECRET": self.secret, "SISOCK_CERT": cert, "LOGLEVEL": "info",
        })

    def copy_certificate(self, path: str) -> str:
        """The guide's command: ``docker compose exec -T sisock-http cat /certs/server_cert.pem``."""
        done = self.compose("exec", "-T", "sisock-http", "cat", "/certs/server_cert.pem")
        assert "BEGIN CERTIFICATE" in done.stdout
        with open(path, "w") as f:
            f.write(done.stdout)
        return path


# -- the stack --------------------------------------------------------------------------


def _docker_engine():
    if not shutil.which("docker"):
        pytest.fail("make compose-test needs docker (the client) and a running docker engine")
    done = _run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"make compose-test needs a running docker engine: `docker info` says {done.stderr.strip()}")
    return done.stdout.strip()


def _image_name() -> str:
    with open(COMPOSE_FILE) as f:
        return yaml.safe_load(f)["x-sisock"]["image"]


def _image_size(image: str) -> int:
    return int(_run(["docker", "image", "inspect", "-f", "{{.Size}}", image]).stdout.strip())


@dataclass
class Truth:
    """What was written, to check the answers against."""

    g3: dict  # full field name -> (times s, values)
    g3_staged: list  # g3 files not yet in the mounted folder, in time order
    apex: object = None
    ucsc: object = None


def _write_data(stack: ComposeStack) -> Truth:
    staging = os.path.join(stack.workdir, "g3-staging")
    paths, truth = make_archive(staging, hours=G3_HOURS)
    os.makedirs(stack.g3_dir)
    for path in paths[:2]:
        _place(path, staging, stack.g3_dir)
    now = float(int(time.time()) // 60 * 60)
    apex = write_apex(stack.apex_dir, now - 2 * 86400, now)
    ucsc = write_ucsc(stack.radiometer_dir, now - 2 * 86400, now)
    for top in (stack.g3_dir, stack.apex_dir, stack.radiometer_dir):
        _chmod_readable(top)
    return Truth(truth, [(p, staging) for p in paths[2:]], apex, ucsc)


def _place(path: str, staging: str, g3_dir: str):
    """Move a finished file into the archive in one step (a rename), as a
    writer that closes its files and moves them in would."""
    target = os.path.join(g3_dir, os.path.relpath(path, staging))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.chmod(os.path.dirname(target), 0o755)
    shutil.copy(path, target + ".part")
    os.chmod(target + ".part", 0o644)
    os.rename(target + ".part", target)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    figures = Figures()
    figures.add("engine", f"docker {_docker_engine()}, compose {' '.join(compose_command())}")
    image = _image_name()
    t0 = time.monotonic()
    # The build uses the host's network: the engine on some machines gives
    # containers none, and a build needs the package registries.
    _run(["docker", "build", "--network", "host", "-f", os.path.join(ROOT, "docker", "Dockerfile"),
          "-t", image, ROOT], timeout=BUILD_TIMEOUT)
    figures.add("image build (cached layers count)", f"{time.monotonic() - t0:.0f} s")
    figures.add("image size", f"{_image_size(image) / 1e6:.0f} MB ({image})")
    s = ComposeStack(str(tmp_path_factory.mktemp("compose-stack")), image, figures)
    s.truth = _write_data(s)
    s.procs = []
    s.logdir = os.path.join(s.workdir, "logs")
    os.makedirs(s.logdir)
    try:
        t0 = time.monotonic()
        s.compose("up", "-d", "--no-build", *s.services(), timeout=900)
        s.up_seconds = time.monotonic() - t0
        yield s
    finally:
        for p in s.procs:
            p.stop()
        if os.environ.get("COMPOSE_TEST_KEEP"):
            print(f"[compose-test] left running: project {s.project}, files in {s.workdir}")
        else:
            s.compose("down", "-v", "--remove-orphans", "-t", "30", check=False, timeout=300)
        print("\n[compose-test] figures:\n" + "\n".join(f"  {w}: {v}" for w, v in figures.rows))


@pytest.fixture(scope="module")
def healthy(stack):
    seconds = stack.wait_healthy()
    stack.figures.add("`up -d` to every service healthy", f"{stack.up_seconds + seconds:.0f} s "
                      f"(`up -d` itself {stack.up_seconds:.0f} s)")
    return stack


@pytest.fixture(scope="module")
def host_cert(healthy):
    return healthy.copy_certificate(os.path.join(healthy.workdir, "sisock-router.pem"))


# -- the tests, in the order a site meets them -------------------------------------------


def test_every_service_is_healthy(healthy):
    states = healthy.states()
    assert set(states) == set(healthy.services()), states
    for name, state in states.items():
        assert state == ("exited(0)" if name in ONE_SHOT else "healthy"), (name, state)
    assert all(count == 0 for count in healthy.restart_counts().values()), healthy.restart_counts()


def test_bridge_lists_every_data_node(healthy):
    t0 = time.monotonic()
    wait_for(lambda: NODES <= healthy.nodes(), HEAL_TIMEOUT, f"the bridge to list {sorted(NODES)}", interval=1)
    healthy.figures.add("healthy to every node listed", f"{time.monotonic() - t0:.1f} s")
    metrics = healthy.metrics()
    listed = {node: {m.split("::", 1)[1] for m in metrics if m.startswith(node + "::")}
              for node in ("apex_weather", "ucsc_radiometer")}
    assert listed["apex_weather"] == set(healthy.truth.apex.series), listed
    assert listed["ucsc_radiometer"] == set(healthy.truth.ucsc.series), listed
    assert any(m.startswith("sensors::") for m in metrics)
    assert any(m.startswith("apex_archive::") for m in metrics)
    g3 = {m.removeprefix("g3_reader::") for m in metrics if m.startswith("g3_reader::")}
    wait_for(lambda: {m.removeprefix("g3_reader::") for m in healthy.metrics("g3_reader::")} == set(healthy.truth.g3),
             HEAL_TIMEOUT, "every g3 field to be listed", interval=1)
    assert g3 <= set(healthy.truth.g3)


#: Counts, inside a container, the UNIX sockets naming the router's socket
#: (the router's listening one; a client's connection, whose accepted end
#: lives in the client's network namespace) and the TCP connections
#: established on the router's TLS port.
ROUTER_LINKS = r"""
import json, os
path = os.environ["SISOCK_ROUTER_SOCKET"]
unix = sum(line.split()[-1] == path for line in open("/proc/net/unix").read().splitlines()[1:]
           if len(line.split()) == 8)
port = "%04X" % int(os.environ.get("CROSSBAR_TLS_PORT") or 8080)
tls = sum(1 for name in ("/proc/net/tcp", "/proc/net/tcp6") if os.path.exists(name)
          for line in open(name).read().splitlines()[1:]
          if line.split()[1].endswith(":" + port) and line.split()[3] == "01")
print(json.dumps({"unix": unix, "tls": tls}))
"""
#: The services that join the router from inside the stack.
ROUTER_CLIENTS = ("sisock-http", "weather", "sensors", "apex-weather", "ucsc-radiometer", "thermometry", "g3-reader")


def test_database_has_the_buffer_pool_the_compose_file_asks_for(healthy):
    out = healthy.compose("exec", "-T", "database", "sh", "-c",
                          'mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" -N -e "SELECT @@innodb_buffer_pool_size"').stdout
    assert int(out.split()[-1]) == 2**30, out


def test_containers_join_the_router_through_its_socket(healthy):
    """On one host the containers share the router's socket (a volume), not
    its TLS port; outside servers still use TLS (see the certificate test)."""
    assert set(ROUTER_CLIENTS) <= set(healthy.services())

    def links(service):
        return json.loads(healthy.compose("exec", "-T", service, "python", "-c", ROUTER_LINKS).stdout)

    router = links("sisock-crossbar")
    # The health probe's short TLS handshake may be open at that moment.
    assert router["unix"] >= 1 and router["tls"] <= 1, router
    clients = {service: links(service)["unix"] for service in ROUTER_CLIENTS}
    assert all(count >= 1 for count in clients.values()), clients


def _g3_targets(stack, count=None) -> list[str]:
    names = sorted(stack.truth.g3)
    return [f"g3_reader::{n}" for n in (names if count is None else names[:count])]


def assert_g3_exact(stack, start: float, end: float):
    """Every sample of every g3 field in ``[start, end]``, time and value."""
    got = stack.columns(_g3_targets(stack), start, end)
    for name, (t, v) in stack.truth.g3.items():
        keep = (t >= start) & (t <= end)
        gt, gv = got[f"g3_reader::{name}"]
        want_t = t[keep] * 1000.0
        assert len(gt) == len(want_t), (name, len(gt), len(want_t))
        assert np.array_equal(gt, want_t), name
        assert np.array_equal(gv, v[keep]), name


def test_g3_archive_is_indexed_and_served_exactly(healthy):
    start, end = START, START + 2 * 3600 - 1e-3
    wait_for(lambda: len(healthy.columns(_g3_targets(healthy, 1), start, end)[_g3_targets(healthy, 1)[0]][0]) > 0,
             HEAL_TIMEOUT, "the g3-reader to serve the first files", interval=1)
    assert_g3_exact(healthy, start, end)


@pytest.mark.parametrize("node", ["apex_weather", "ucsc_radiometer"])
def test_text_archives_are_served_exactly(healthy, node):
    written = healthy.truth.apex if node == "apex_weather" else healthy.truth.ucsc
    names = sorted(written.series)
    t_any = written.series[names[0]][0]
    start, end = t_any[len(t_any) // 3], t_any[len(t_any) // 3] + 6 * 3600
    got = healthy.columns([f"{node}::{n}" for n in names], start, end)
    for name in names:
        t, v = written.series[name]
        keep = (t >= start) & (t <= end)
        gt, gv = got[f"{node}::{name}"]
        assert np.array_equal(gt, t[keep] * 1000.0), name
        assert np.array_equal(gv, v[keep]), name


def test_a_file_added_while_running_is_indexed_and_served(healthy):
    path, staging = healthy.truth.g3_staged.pop(0)
    t_file = float(os.path.basename(path)[:-3])
    _place(path, staging, healthy.g3_dir)
    t0 = time.monotonic()
    target = _g3_targets(healthy, 1)[0]
    wait_for(lambda: len(healthy.columns([target], t_file, t_file + 3599)[target][0]) > 0, HEAL_TIMEOUT,
             "the new file to be served", interval=1)
    healthy.figures.add("g3 file placed to served (SCAN_INTERVAL=5)", f"{time.monotonic() - t0:.1f} s")
    assert_g3_exact(healthy, START, t_file + 3600 - 1e-3)


class Recorder:
    """Every message the FakeDataAgent publishes, as a subscriber outside the
    stack sees it. A subscription lasts as long as the client's session, so
    after the router restarts it is made again on the new session."""

    def __init__(self, client, topic: str):
        import threading

        self.client, self.topic = client, topic
        self.lock = threading.Lock()
        self.blocks = []
        self.session = None

    def __call__(self, message, *_args, **_kwargs):
        blocks, _feed = message  # an OCS feed message: [blocks, feed description]
        with self.lock:
            self.blocks.extend(blocks.values())

    def subscribed(self) -> bool:
        session = self.client.link.session
        if session is None:
            return False
        if session is not self.session:
            self.client.subscribe(self.topic, self)
            self.session = session
        return True

    def samples(self, channel) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            chunks = [(b["timestamps"], b["data"][channel]) for b in self.blocks if channel in b["data"]]
        if not chunks:
            return np.array([]), np.array([])
        return (np.concatenate([np.asarray(c[0], dtype=float) for c in chunks]),
                np.concatenate([np.asarray(c[1], dtype=float) for c in chunks]))


@pytest.fixture(scope="module")
def host_client(healthy, host_cert):
    from sisock.client import Client

    c = Client(healthy.host_settings(host_cert), timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def fake_agent(healthy, host_client):
    """A real FakeDataAgent on this machine, publishing on the stack's OCS
    port, and a subscriber (through the TLS port) recording what it sends."""
    recorder = Recorder(host_client, f"observatory.{FAKE_AGENT}.feeds.{FAKE_FEED}")
    wait_for(recorder.subscribed, 60, "the subscription outside the stack")
    site = OcsSite(healthy, os.path.join(healthy.workdir, "site"), [AgentSpec(FAKE_AGENT, "FakeDataAgent", [
        "--mode", "acq", "--num-channels", 2, "--sample-rate", 5, "--frame-length", 1,
        # An OCS agent stops for good 10 s after it loses the router, unless
        # told to wait (sites restart agents; this one outlives the restarts).
        "--crossbar-timeout", 0])])
    site.start(FAKE_AGENT)
    site.wait_for_log(FAKE_AGENT, "Starting acquisition", timeout=60)
    yield recorder
    site.stop()


def _served_exactly(stack, t_pub, v_pub) -> bool:
    """Every one of these published samples is served by the data-feed
    container, at its time with its value (False while some are still on
    their way; a wrong value fails at once)."""
    if len(t_pub) == 0:
        return True
    target = f"{FAKE_NODE}::channel_00"
    got_t, got_v = stack.columns([target], t_pub[0] - 1e-3, t_pub[-1] + 1e-3)[target]
    want_t = t_pub * 1000.0
    at = np.minimum(np.searchsorted(got_t, want_t), max(len(got_t) - 1, 0))
    if len(got_t) == 0 or not np.array_equal(got_t[at], want_t):
        return False
    assert np.array_equal(got_v[at], v_pub)
    return True


def _feed_matches(stack, recorder, since: float = 0.0) -> int:
    """How many samples the agent published after ``since`` are served
    exactly (0 until there are some and all have arrived). Only what both
    the recorder and the data-feed container heard is compared: a live feed
    cannot serve what was published while it was cut off from the router."""
    if not recorder.subscribed():
        return 0
    t_pub, v_pub = recorder.samples("channel_00")
    keep = t_pub >= since
    if keep.sum() < 5 or not _served_exactly(stack, t_pub[keep], v_pub[keep]):
        return 0
    return int(keep.sum())


def test_ocs_agent_on_the_host_is_served_by_a_data_feed_container(healthy, fake_agent):
    wait_for(lambda: FAKE_NODE in healthy.nodes(), HEAL_TIMEOUT, f"{FAKE_NODE} to be listed", interval=1)
    wait_for(lambda: f"{FAKE_NODE}::channel_00" in healthy.metrics(FAKE_NODE), 60, "its channels", interval=1)
    wait_for(lambda: _feed_matches(healthy, fake_agent) >= 20, 60, "20 published samples served exactly",
             interval=1)


@pytest.fixture(scope="module")
def host_server(healthy, host_cert):
    """A DataNodeServer outside the stack (the sensors server on this
    machine), joining through the published TLS port with the copied
    certificate, as a DataNodeServer on another machine would."""
    settings_env = {"CROSSBAR_HOST": "localhost", "CROSSBAR_TLS_PORT": str(healthy.ports["tls"]),
                    "WAMP_SECRET": healthy.secret, "SISOCK_CERT": host_cert, "NAME": HOST_NODE,
                    "PYTHONUNBUFFERED": "1"}
    p = Proc.script("host-sensors", "sisock-sensors-server", env={**os.environ, **settings_env},
                    cwd=healthy.workdir, logdir=healthy.logdir).start()
    healthy.procs.append(p)
    return p


def test_certificate_flow_lets_an_outside_server_join(healthy, host_server):
    wait_for(lambda: HOST_NODE in healthy.nodes(), 60, f"{HOST_NODE} (outside the stack) to be listed",
             interval=1)
    assert host_server.alive


def _everything_answers(stack, recorder, feed_since: float = 0.0) -> bool:
    if not (NODES | {FAKE_NODE, HOST_NODE}) <= stack.nodes():
        return False
    assert_g3_exact(stack, START, START + 3 * 3600 - 1e-3)
    return _feed_matches(stack, recorder, since=feed_since) > 0


@pytest.mark.parametrize("service", ["sisock-crossbar", "database", "sisock-http"])
def test_restart_heals_without_data_loss(healthy, fake_agent, host_server, service):
    wait_for(lambda: _everything_answers(healthy, fake_agent), HEAL_TIMEOUT, "everything to answer before")
    before = fake_agent.samples("channel_00")  # all served, as just checked
    t0 = time.monotonic()
    healthy.compose("restart", service, timeout=300)
    restarted = time.monotonic() - t0
    wait_for(lambda: _everything_answers(healthy, fake_agent, feed_since=time.time() - 3), HEAL_TIMEOUT,
             f"everything to answer after restarting {service}", interval=0.5)
    healed = time.monotonic() - t0
    healthy.figures.add(f"restart {service}: command / all answers again",
                        f"{restarted:.1f} s / {healed:.1f} s")
    # Nothing served before is lost: the live cache outlived the outage.
    assert len(before[0]) > 0 and _served_exactly(healthy, *before)
    healthy.wait_healthy(what=f"every service healthy after restarting {service}")
    if service == "database":
        # The index is intact and the scanner goes on indexing.
        path, staging = healthy.truth.g3_staged.pop(0)
        t_file = float(os.path.basename(path)[:-3])
        _place(path, staging, healthy.g3_dir)
        target = _g3_targets(healthy, 1)[0]
        wait_for(lambda: len(healthy.columns([target], t_file, t_file + 3599)[target][0]) > 0, HEAL_TIMEOUT,
                 "a file added after the restart to be served", interval=1)
        assert_g3_exact(healthy, START, START + G3_HOURS * 3600 - 1e-3)
    assert host_server.alive


def test_every_container_started_at_once_comes_up_working(healthy, fake_agent):
    """A host reboot: the engine starts every container of the project at
    the same moment, with none of compose's ordering (no depends_on, no
    waiting for health)."""
    healthy.compose("stop", "-t", "30", timeout=300)
    containers = [c["Id"] for name, c in healthy.containers().items() if name not in ONE_SHOT]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(containers)) as pool:
        list(pool.map(lambda cid: _run(["docker", "start", cid], timeout=120), containers))
    healthy.wait_healthy(what="every service healthy after starting all at once")
    wait_for(lambda: _everything_answers(healthy, fake_agent, feed_since=time.time() - 3), HEAL_TIMEOUT,
             "everything to answer", interval=0.5)
    healthy.figures.add("all containers started at once to all answers", f"{time.monotonic() - t0:.1f} s")
    states = healthy.states()
    assert all(states[s] in ("healthy", "exited(0)") for s in states), states


def test_a_remade_certificate_is_handed_out_and_used(healthy, host_server, host_cert):
    """The guide's way to add a host name: remake the pair with --force,
    restart everything, copy the new certificate to outside clients."""
    with open(host_cert) as f:
        old = f.read()
    logged = len(host_server.output())
    healthy.compose("run", "--rm", "certs", "sisock", "tls", "--dir", "/certs", "--host", "sisock-crossbar",
                    "--host", "router.example.org", "--force", timeout=300)
    t0 = time.monotonic()
    healthy.compose("restart", timeout=600)
    healthy.wait_healthy(what="every service healthy with the new certificate")
    wait_for(lambda: NODES <= healthy.nodes(), HEAL_TIMEOUT, "every node listed again", interval=1)
    healthy.figures.add("certificate remade: `restart` to all nodes listed", f"{time.monotonic() - t0:.1f} s")
    # The outside server still trusts the old certificate and is refused...
    wait_for(lambda: "certificate verify failed" in host_server.output()[logged:] and HOST_NODE not in healthy.nodes(),
             60, "the outside server to report the certificate it no longer trusts", interval=1)
    healthy.copy_certificate(host_cert)
    with open(host_cert) as f:
        assert f.read() != old
    # ... until it is given the new one and started again.
    host_server.stop()
    host_server.start()
    wait_for(lambda: HOST_NODE in healthy.nodes(), 60, f"{HOST_NODE} to join with the new certificate", interval=1)


def test_grafana(healthy):
    base = "grafana/grafana:13.2.0"
    if _run(["docker", "image", "inspect", base], check=False).returncode != 0:
        pytest.skip(f"Grafana not started: its base image {base} is not on this engine and cannot be pulled "
                    "here; its provisioning files are checked by tests/test_compose.py and "
                    "tests/test_grafana_provisioning.py")
    healthy.compose("build", GRAFANA, timeout=BUILD_TIMEOUT)
    healthy.compose("up", "-d", GRAFANA, timeout=300)
    url = f"http://127.0.0.1:{healthy.ports['grafana']}"
    wait_for(lambda: requests.get(url + "/api/health", timeout=5).ok, HEALTHY_TIMEOUT, "Grafana", interval=2)


def test_stack_comes_down_clean(healthy):
    for p in healthy.procs:
        p.stop()
    t0 = time.monotonic()
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    healthy.compose("stop", "-t", "30", timeout=300)
    healthy.figures.add("`stop` of the whole stack", f"{time.monotonic() - t0:.1f} s")
    for name, c in healthy.containers().items():
        state = c["State"]
        assert state["Status"] == "exited", (name, state["Status"])
        # 137 is SIGKILL: a service that did not stop on SIGTERM in time.
        assert state["ExitCode"] in (0, 128 + signal.SIGTERM), (name, state["ExitCode"], healthy.logs_tail([name]))
        # A stack on its way down does not try to reconnect.
        done = _run(["docker", "logs", "--since", since, c["Id"]])
        logged = done.stdout + done.stderr
        assert "cannot reach the router" not in logged and "retry" not in logged.lower(), (name, logged[-2000:])
    healthy.compose("down", "-v", "--remove-orphans", timeout=300)
    label = f"label=com.docker.compose.project={healthy.project}"
    for kind in ("ps -aq", "network ls -q", "volume ls -q"):
        left = _run(["docker", *kind.split(), "--filter", label]).stdout.split()
        assert not left, (kind, left)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-m", "compose", "-s"]))
