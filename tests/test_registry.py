"""The hub's registry through a real router: add, refuse, drop, recover."""

import signal

from conftest import node_names
from procs import wait_for

RAMP = "servers/ramp.py"


def _ramp(stack, name, tag=None):
    import os

    path = os.path.join(os.path.dirname(__file__), RAMP)
    return stack.python(tag or f"ramp-{name}", path, env={"NAME": name}).start()


def test_server_appears_with_description(stack, client):
    p = _ramp(stack, "ramp_a")
    try:
        wait_for(lambda: "ramp_a" in node_names(client), 30, "ramp_a to register")
        entry = next(n for n in client.data_nodes() if n["name"] == "ramp_a")
        assert entry == {"name": "ramp_a", "description": "1 Hz test ramp with spikes"}
    finally:
        p.stop()


def test_duplicate_name_refused(stack, client):
    first = _ramp(stack, "ramp_dup", "ramp-dup-1")
    try:
        wait_for(lambda: "ramp_dup" in node_names(client), 30, "the first ramp_dup")
        second = _ramp(stack, "ramp_dup", "ramp-dup-2")
        try:
            wait_for(lambda: "already taken" in second.output(), 30, "the second server to be refused")
            assert second.alive and first.alive
            assert [n["name"] for n in client.data_nodes()].count("ramp_dup") == 1
            first.stop()
            wait_for(lambda: "data node registered as ramp_dup" in second.output(), 30,
                     "the refused server to take the name over once it is free")
            assert "ramp_dup" in node_names(client)
            # It serves under the name, not only holds it in the registry.
            field, _timeline = client.fields("ramp_dup")
            assert field
            data = client.get_data("ramp_dup", list(field), -60, 0)
            assert any(len(v) for v in data["data"].values())
        finally:
            second.stop()
    finally:
        first.stop()


def test_dead_server_disappears(stack, client):
    p = _ramp(stack, "ramp_doomed")
    wait_for(lambda: "ramp_doomed" in node_names(client), 30, "ramp_doomed to register")
    p.signal(signal.SIGKILL)
    p.popen.wait(10)
    wait_for(lambda: "ramp_doomed" not in node_names(client), 10, "ramp_doomed to be dropped")


def test_hub_restart_recovers_registry(stack, client, weather):
    p = _ramp(stack, "ramp_survivor")
    try:
        wait_for(lambda: "ramp_survivor" in node_names(client), 30, "ramp_survivor to register")
        before = sorted(client.data_nodes(), key=lambda n: n["name"])
        weather_pid = weather.popen.pid
        stack.hub.kill()
        stack.hub = stack.proc("hub-restarted", "sisock-hub").start()

        def recovered():
            return sorted(client.data_nodes(), key=lambda n: n["name"]) == before

        wait_for(recovered, 30, "the restarted hub to know every server again")
        assert weather.alive and weather.popen.pid == weather_pid and p.alive
    finally:
        p.stop()
