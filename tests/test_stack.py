"""`sisock up`: one command brings up router (with the hub inside it), bridge
and the example-weather server; Ctrl-C takes everything down.

``sisock up`` runs in a session of its own and gets its Ctrl-C as a terminal
delivers it, to its whole process group."""

import os
import re
import signal
import subprocess
import sys
import time

import requests

from procs import free_port, wait_for


def _descendants(pid) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    children = [int(x) for x in out.split()]
    return children + [d for c in children for d in _descendants(c)]


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _sisock_up(tmp_path, *args):
    """``sisock up`` on free ports, its output in ``up.log``; (process, bridge URL, port map, log)."""
    ports = {"CROSSBAR_TLS_PORT": free_port(), "CROSSBAR_OCS_PORT": free_port(), "PORT": free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "WAMP_SECRET": "stack-test-secret"}
    env.pop("SISOCK_CERT", None)
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "sisock"), "up", *args,
                           "--state-dir", str(tmp_path / "state")],
                          env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return up, f"http://127.0.0.1:{ports['PORT']}", ports, log


def _router_links(pids, socket_path, tls_port) -> tuple[list[str], int]:
    """The command lines among ``pids`` connected to the router's TLS port,
    and how many connections the router accepted on its socket."""
    import psutil

    on_tls, on_socket = [], 0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if any(c.raddr and c.raddr.port == tls_port for c in p.net_connections(kind="tcp")):
                on_tls.append(" ".join(p.cmdline()))
            on_socket += sum(c.laddr == socket_path for c in p.net_connections(kind="unix"))
        except psutil.Error:
            continue
    return on_tls, on_socket


def _ctrl_c(up):
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
    os.killpg(up.pid, signal.SIGINT)


#: What a client logs when it tries to reach a router that is gone.
RETRY_WORDS = ("cannot reach the router", "Scheduling retry", "retrying", "transport_lost")


def test_sisock_up_serves_radiometer_and_stops_cleanly(tmp_path):
    up, http, ports, log = _sisock_up(tmp_path)
    try:
        wait_for(lambda: "apex_archive::apex_radiometer" in requests.post(http + "/search", json={}, timeout=2).json(),
                 90, "the stack to serve apex_archive")
        end = time.time()
        body = {"range": {"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - 6 * 3600)),
                          "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))},
                "maxDataPoints": 100, "targets": [{"target": "apex_archive::apex_radiometer", "refId": "A"}]}
        (series,) = requests.post(http + "/query", json=body, timeout=10).json()
        assert 50 <= len(series["datapoints"]) <= 100
        assert f"http://127.0.0.1:{ports['PORT']}" in (tmp_path / "up.log").read_text()
        # The demo g3 archive, scanned into SQLite and served by the g3-reader.
        g3 = "g3_reader::observatory.LSA22YE.feeds.temperatures"

        def g3_listed():
            return [m for m in requests.post(http + "/search", json={"target": g3}, timeout=2).json()]

        metric = wait_for(g3_listed, 60, "the demo g3 archive in /search")[0]
        sensors = wait_for(lambda: requests.post(http + "/search", json={"target": "sensors::cpu"}, timeout=2).json(),
                           60, "the sensors server in /search")
        assert sensors == ["sensors::cpu_percent"]
        body["targets"] = [{"target": metric, "refId": "G"}]

        def g3_points():  # the first scan may still be indexing when the field shows up
            return requests.post(http + "/query", json=body, timeout=10).json()[0]["datapoints"]

        assert 50 <= len(wait_for(g3_points, 60, "demo g3 data in the last 6 h")) <= 100
        # The InfluxQL URL the banner gives answers, and lists the demo archive's agent.
        influx = re.search(r"InfluxDB \(InfluxQL\) (\S+)   database (\S+)", (tmp_path / "up.log").read_text())
        assert influx and influx[1] == f"{http}/influxdb", (tmp_path / "up.log").read_text()[-2000:]
        assert requests.get(influx[1] + "/ping", timeout=5).status_code == 204
        shown = requests.get(influx[1] + "/query", params={"db": influx[2], "q": "SHOW MEASUREMENTS"}, timeout=10)
        assert ["observatory.LSA22YE"] in shown.json()["results"][0]["series"][0]["values"], shown.text[:500]
        family = _descendants(up.pid)
        assert len(family) >= 4, family  # crossbar controller + router worker, bridge, weather
        # The stack's servers join through the router's socket, not its TLS port.
        socket_path = str(tmp_path / "state" / "crossbar" / "router.sock")
        assert f"router socket       unix:{socket_path}" in (tmp_path / "up.log").read_text()
        on_tls, on_socket = _router_links(family, socket_path, ports["CROSSBAR_TLS_PORT"])
        # Its listening socket, and the bridge, weather, sensors and g3-reader joined there.
        assert on_tls == [] and on_socket >= 5, (on_tls, on_socket)
    finally:
        _ctrl_c(up)
        code = up.wait(60)
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output[-3000:]
    wait_for(lambda: not any(_alive(p) for p in family), 10, "no child left behind")
    # The banner comes before anything of crossbar's start-up, whose log is in a file.
    before, banner = output.split("sisock is up", 1)
    assert "[Controller" not in before and "add_role" not in before, before[:3000]
    router_log = tmp_path / "state" / "crossbar" / "router.log"
    assert f"router log          {router_log}" in banner
    assert "add_role" in router_log.read_text()
    # Clients stopped before the router: none of them missed it on the way down.
    stopping = output[output.index("stopping (Ctrl-C again to kill)"):]
    assert not [w for w in RETRY_WORDS if w in stopping], stopping
    for port in ports.values():
        wait_for(lambda p=port: _port_free(p), 10, f"port {port} to be released")


def _port_free(port) -> bool:
    """Nobody listens on ``port``: a new router or bridge could bind it.
    Connections that ended in TIME_WAIT (clients that left cleanly, so the
    router closed them) do not count, as they do not for those servers."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_sisock_up_ocs_and_archive_demos(tmp_path):
    """--ocs-demo: a real FakeDataAgent publishes through the router's OCS
    port and the data-feed server serves it through the bridge.
    --archives-demo: the APEX weather and UCSC radiometer servers run on
    example archives."""
    up, http, _, log = _sisock_up(tmp_path, "--servers", "none", "--ocs-demo", "--archives-demo")
    try:
        wait_for(lambda: "fake_data1::channel_00" in requests.post(http + "/search", json={}, timeout=2).json(),
                 90, "the demo feed's channels in /search")
        end = time.time()
        body = {"range": {"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - 60)),
                          "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end + 5))},
                "maxDataPoints": 1000, "targets": [{"target": "fake_data1::channel_00", "refId": "A"}]}

        def points():
            return requests.post(http + "/query", json=body, timeout=10).json()[0]["datapoints"]

        latest = wait_for(points, 30, "live samples")[-1][1] / 1000.0
        assert abs(latest - time.time()) < 10
        for metric in ("apex_weather::temperature", "ucsc_radiometer::pwv"):
            wait_for(lambda m=metric: m in requests.post(http + "/search", json={}, timeout=2).json(), 60,
                     f"{metric} in /search")
            body["targets"] = [{"target": metric, "refId": "B"}]
            body["range"]["from"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - 86400))
            assert len(points()) > 100
    finally:
        _ctrl_c(up)
        code = up.wait(60)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]


def test_sisock_up_killed_outright_leaves_nothing_running(tmp_path):
    """SIGKILL gives ``sisock up`` no chance to stop its children: each
    of them, and crossbar under the router's, stops because its parent died."""
    up, http, ports, log = _sisock_up(tmp_path, "--servers", "none")
    try:
        wait_for(lambda: "sisock is up" in (tmp_path / "up.log").read_text(), 90, "the banner")
        wait_for(lambda: requests.get(http + "/", headers={"Accept": "application/json"}, timeout=2).ok, 60,
                 "the bridge to join the router")
        family = _descendants(up.pid)
        assert len(family) >= 4, family  # sisock-crossbar, crossbar controller and worker, bridge
        up.kill()
        up.wait(10)
    finally:
        log.close()
    wait_for(lambda: not any(_alive(p) for p in family), 60, "every child to stop after sisock up died")
    for port in ports.values():
        wait_for(lambda p=port: _port_free(p), 10, f"port {port} to be released")
