"""The sensors DataNodeServer through a real router: registers, lists its
fields with units, and serves fresh, plausible live readings."""

from __future__ import annotations

import sys
import time

import pytest

from conftest import node_names
from procs import Proc, wait_for

SYSTEM_UNITS = {"cpu_percent": "%", "load_1m": "", "memory_percent": "%", "disk_percent": "%"}


@pytest.fixture
def sensors_server(stack, client):
    p = Proc("sensors", [sys.executable, "-m", "sisock.servers.sensors"],
             env={**stack.env, "SENSORS_INTERVAL": "0.5"}, cwd=stack.root, logdir=stack.logdir)
    stack.procs.append(p)
    p.start()
    try:
        wait_for(lambda: "sensors" in node_names(client), 30, "the sensors server to register")
        yield p
    finally:
        p.stop()


def test_live_readings(sensors_server, client):
    entry = next(n for n in client.data_nodes() if n["name"] == "sensors")
    assert entry["description"].startswith("Live readings of ")

    def listed():
        field, timeline = client.fields("sensors")
        return (field, timeline) if field else None

    field, timeline = wait_for(listed, 15, "the first samples")
    for name, units in SYSTEM_UNITS.items():
        assert field[name]["units"] == units and field[name]["timeline"] == "sensors"
    assert all(info["units"] == "C" for name, info in field.items() if name not in SYSTEM_UNITS)
    assert timeline["sensors"]["interval"] == 0.5
    assert sorted(timeline["sensors"]["field"]) == sorted(field)

    wait_for(lambda: len(client.data("sensors", ["cpu_percent"], -60, 0).get("cpu_percent", ((),))[0]) >= 4,
             15, "a few samples")
    data = client.data("sensors", list(field), -60, 0)
    assert set(data) == set(field)
    t = data["cpu_percent"].t
    assert abs(t[-1] - time.time()) < 5
    assert (t[1:] > t[:-1]).all() and 0.3 < float((t[-1] - t[0]) / (len(t) - 1)) < 2
    assert ((data["cpu_percent"].values >= 0) & (data["cpu_percent"].values <= 100)).all()
    assert ((data["memory_percent"].values > 0) & (data["memory_percent"].values <= 100)).all()
    assert ((data["disk_percent"].values >= 0) & (data["disk_percent"].values <= 100)).all()
    assert (data["load_1m"].values >= 0).all()


def test_two_machines_register_under_their_own_names(sensors_server, stack, client):
    """NAME keeps a second machine's sensors apart from the first's."""
    second = Proc("sensors-2", [sys.executable, "-m", "sisock.servers.sensors"],
                  env={**stack.env, "SENSORS_INTERVAL": "0.5", "NAME": "sensors_daq2"},
                  cwd=stack.root, logdir=stack.logdir)
    stack.procs.append(second)
    second.start()
    try:
        wait_for(lambda: {"sensors", "sensors_daq2"} <= node_names(client), 30, "both sensors servers")
        wait_for(lambda: client.fields("sensors_daq2")[0], 15, "the second server's first samples")
    finally:
        second.stop()
