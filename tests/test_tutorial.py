"""The tutorial's DataNodeServer (docs/tutorial/thermometer_server.py), run
as the tutorial runs it: as its own process against the real router, then
queried through the Python client and the HTTP bridge."""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np
import pytest
import requests

from conftest import node_names
from procs import wait_for

TUTORIAL = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "tutorial", "thermometer_server.py")
NAME = "tutorial_thermometer"
HOUR = 3600.0


def _load_tutorial():
    """The tutorial's module, for the values it must serve (not run here)."""
    spec = importlib.util.spec_from_file_location("thermometer_server", TUTORIAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tutorial = _load_tutorial()


@pytest.fixture(scope="module")
def thermometer(stack, client):
    p = stack.python("thermometer", TUTORIAL, env={"THERMOMETER_NAME": NAME}).start()
    try:
        wait_for(lambda: NAME in node_names(client), 30, f"{NAME} to register")
        yield p
    finally:
        p.stop()
    wait_for(lambda: NAME not in node_names(client), 30, f"{NAME} to leave the registry")


def _hours_ago(n: int) -> float:
    """A whole hour ``n`` hours back: well inside the simulated history."""
    return (int(time.time() // HOUR) - n) * HOUR


def test_registers_with_its_description(client, thermometer):
    nodes = {n["name"]: n["description"] for n in client.data_nodes()}
    assert nodes[NAME] == tutorial.ThermometerServer.description
    assert f"data node registered as {NAME}" in thermometer.output()


def test_get_fields(client, thermometer):
    field, timeline = client.fields(NAME)
    assert set(field) == {"temperature", "heater"}
    assert field["temperature"] == {"description": "Cold plate temperature", "timeline": "thermometer",
                                    "type": "number", "units": "K"}
    assert field["heater"]["units"] == "W"
    assert timeline == {"thermometer": {"interval": 10.0, "field": ["temperature", "heater"]}}
    # No readings in the future, so no fields there.
    future = time.time() + 86400
    assert client.fields(NAME, future, future + 3600) == ({}, {})


def test_get_data_equals_the_simulation(client, thermometer):
    start, end = _hours_ago(3), _hours_ago(1)
    series = client.data(NAME, ["temperature", "heater", "no_such_field"], start, end)
    expected_t = np.arange(start, end + 1, tutorial.INTERVAL)
    temperature = series["temperature"]
    assert np.array_equal(temperature.t, expected_t)
    assert np.array_equal(temperature.values, tutorial.temperature(expected_t))
    assert np.array_equal(series["heater"].values, tutorial.heater(expected_t))
    assert "no_such_field" not in series
    # The raw reply, as on the wire: one timeline, finalized up to its last reading.
    raw = client.get_data(NAME, ["temperature", "no_such_field"], start, end)
    assert raw["data"]["no_such_field"] == []
    assert raw["timeline"]["thermometer"]["finalized_until"] == end


def test_min_stride_keeps_every_glitch(client, thermometer):
    start, end = _hours_ago(7), _hours_ago(1)
    full = client.data(NAME, ["temperature"], start, end)["temperature"]
    coarse = client.data(NAME, ["temperature"], start, end, min_stride=600)["temperature"]
    # Two points per 1200 s bucket, plus the partial buckets at both edges.
    assert len(coarse.t) <= (end - start) / 600 + 4 < len(full.t)
    glitches = full.t[np.mod(full.t, HOUR) == 0]
    assert len(glitches) == 7
    # A glitch is above every other reading, so the seven largest values of
    # the decimated series must be the seven glitches.
    assert np.array_equal(np.sort(coarse.values)[-7:], np.sort(tutorial.temperature(glitches)))


def test_relative_times(client, thermometer):
    series = client.data(NAME, ["temperature"], -600, 0)["temperature"]
    assert 59 <= len(series.t) <= 61
    assert time.time() - 600 - 1 <= series.t[0] and series.t[-1] <= time.time()


def test_query_through_the_bridge(stack, bridge, thermometer):
    def known():
        r = requests.get(f"{stack.http}/api/v1/fields", params={"node": NAME}, timeout=5)
        return r.status_code == 200 and {f["field"] for f in r.json()} == {"temperature", "heater"}

    wait_for(known, 30, f"the bridge to list {NAME}")
    fields = requests.get(f"{stack.http}/api/v1/fields", params={"node": NAME}, timeout=5).json()
    units = {f["target"]: f["units"] for f in fields}
    assert units == {f"{NAME}::temperature": "K", f"{NAME}::heater": "W"}

    start, end = _hours_ago(2), _hours_ago(1)
    params = {"target": f"{NAME}::temperature", "from": int(start * 1000), "to": int(end * 1000),
              "maxDataPoints": 10000}
    r = requests.get(f"{stack.http}/api/v1/data", params=params, timeout=30)
    assert r.status_code == 200, r.text
    rows = r.json()
    expected_t = np.arange(start, end + 1, tutorial.INTERVAL)
    assert [row["time"] for row in rows] == (expected_t * 1000).tolist()
    assert [row["value"] for row in rows] == tutorial.temperature(expected_t).tolist()


def test_bridge_downsampling_keeps_every_glitch(stack, bridge, thermometer):
    start, end = _hours_ago(7), _hours_ago(1)
    params = {"target": f"{NAME}::temperature", "from": int(start * 1000), "to": int(end * 1000),
              "maxDataPoints": 100}

    def answer():
        r = requests.get(f"{stack.http}/api/v1/data", params=params, timeout=30)
        return r.json() if r.status_code == 200 and r.json() else None

    rows = wait_for(answer, 30, f"the bridge to serve {NAME}")
    assert len(rows) <= 100
    top = sorted(row["value"] for row in rows)[-7:]
    hours = np.arange(start, end + 1, HOUR)
    assert top == sorted(tutorial.temperature(hours).tolist())


def test_bridge_unknown_field_and_node(stack, bridge, thermometer):
    r = requests.get(f"{stack.http}/api/v1/data", params={"target": f"{NAME}::no_such_field"}, timeout=30)
    assert r.status_code == 200 and r.json() == []
    r = requests.get(f"{stack.http}/api/v1/data", params={"target": "no_such_node::temperature"}, timeout=30)
    assert r.status_code == 404 and "no_such_node" in r.json()["message"]


def test_runs_without_a_router():
    """The two methods are plain functions of their arguments: check them
    without any WAMP session, as the tutorial suggests."""
    server = tutorial.ThermometerServer()
    start, end = _hours_ago(2), _hours_ago(1)
    reply = server.answer_get_data(["heater"], start, end)
    assert len(reply["data"]["heater"]) == len(reply["timeline"]["thermometer"]["t"]) == 361
    field, timeline = server.answer_get_fields(start, end)
    assert timeline["thermometer"]["field"] == ["temperature", "heater"]
