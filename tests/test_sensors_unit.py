"""Unit tests of the sensors DataNodeServer: parsing, sysfs, the ring, the sampler.

No router and no reactor: the sampler is driven by calling ``sample`` and the
server's blocking methods directly, as the worker threads would.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from autobahn.wamp.types import ComponentConfig

from sisock.ring import TimeRing
from sisock.servers import sensors
from sisock.servers.sensors import Sampler, SensorsServer

SENSORS_U = """\
coretemp-isa-0000
Adapter: ISA adapter
Package id 0:
  temp1_input: 52.000
  temp1_max: 84.000
  temp1_crit: 100.000
  temp1_crit_alarm: 0.000
Core 0:
  temp2_input: 49.000
  temp2_max: 84.000
  temp2_crit: 100.000
  temp2_crit_alarm: 0.000
Core 1:
  temp3_input: 51.500
  temp3_max: 84.000

acpitz-acpi-0
Adapter: ACPI interface
temp1:
  temp1_input: 27.800
  temp1_crit: 119.000

nct6798-isa-0290
Adapter: ISA adapter
in0:
  in0_input: 0.304
  in0_min: 0.000
fan2:
  fan2_input: 1121.000
  fan2_min: 0.000
SYSTIN:
  temp1_input: 33.000
  temp1_max: 80.000
  temp1_max_hyst: 75.000
CPUTIN:
  temp2_input: N/A

nvme-pci-0100
Adapter: PCI adapter
Composite:
  temp1_input: 38.850
  temp1_max: 81.850
Sensor 1:
  temp2_input: 38.850

nvme-pci-0100
Adapter: PCI adapter
Composite:
  temp1_input: 41.850
"""


def test_parse_sensors_u():
    assert sensors.parse_sensors_u(SENSORS_U) == {
        "coretemp_isa_0000_package_id_0": 52.0,
        "coretemp_isa_0000_core_0": 49.0,
        "coretemp_isa_0000_core_1": 51.5,
        "acpitz_acpi_0_temp1": 27.8,
        "nct6798_isa_0290_systin": 33.0,
        "nvme_pci_0100_composite": 38.85,
        "nvme_pci_0100_sensor_1": 38.85,
        "nvme_pci_0100_composite_2": 41.85,
    }


def test_parse_sensors_u_nothing():
    assert sensors.parse_sensors_u("") == {}
    assert sensors.parse_sensors_u("No sensors found!\n") == {}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fake_sys(tmp_path):
    thermal = tmp_path / "class" / "thermal"
    write(thermal / "thermal_zone0" / "type", "acpitz\n")
    write(thermal / "thermal_zone0" / "temp", "27800\n")
    write(thermal / "thermal_zone2" / "type", "x86_pkg_temp\n")
    write(thermal / "thermal_zone2" / "temp", "52000\n")
    write(thermal / "thermal_zone10" / "type", "iwlwifi_1\n")
    write(thermal / "thermal_zone10" / "temp", "-1500\n")
    write(thermal / "thermal_zone3" / "type", "asleep\n")  # no temp: present but unreadable
    write(thermal / "cooling_device0" / "type", "Processor\n")
    hwmon = tmp_path / "class" / "hwmon"
    write(hwmon / "hwmon1" / "name", "coretemp\n")
    write(hwmon / "hwmon1" / "temp1_input", "53000\n")
    write(hwmon / "hwmon1" / "temp1_label", "Package id 0\n")
    write(hwmon / "hwmon1" / "temp2_input", "50000\n")
    write(hwmon / "hwmon1" / "temp2_label", "Core 0\n")
    write(hwmon / "hwmon1" / "fan1_input", "1200\n")
    write(hwmon / "hwmon3" / "name", "nvme\n")
    write(hwmon / "hwmon3" / "temp1_input", "38850\n")  # no label: named after the input
    write(hwmon / "hwmon4" / "name", "nvme\n")
    write(hwmon / "hwmon4" / "temp1_input", "41850\n")
    write(hwmon / "hwmon4" / "temp3_input", "garbage\n")
    return tmp_path


def test_kernel_temperatures(fake_sys):
    temps = sensors.kernel_temperatures(str(fake_sys))
    assert temps == {
        "thermal_zone0_acpitz": 27.8,
        "thermal_zone2_x86_pkg_temp": 52.0,
        "thermal_zone10_iwlwifi_1": -1.5,
        "coretemp_package_id_0": 53.0,
        "coretemp_core_0": 50.0,
        "nvme_temp1": 38.85,
        "nvme_temp1_2": 41.85,
    }
    assert list(temps)[:3] == ["thermal_zone0_acpitz", "thermal_zone2_x86_pkg_temp", "thermal_zone10_iwlwifi_1"]


def test_kernel_temperatures_none(tmp_path):
    assert sensors.kernel_temperatures(str(tmp_path)) == {}


# -- the ring -------------------------------------------------------------------------


def _ring(fields, capacity):
    """The sensors' buffer: a TimeRing bounded by count, its fields fixed."""
    return TimeRing(1e9, capacity=capacity, max_samples=capacity, channels=fields)


def test_ring_before_and_after_wrapping():
    ring = _ring(["a", "b"], 4)
    t, v = ring.snapshot()
    assert len(t) == 0 and len(v["a"]) == 0
    for i in range(3):
        ring.extend([float(i)], {"a": [i], "b": [10 * i]})
    t, v = ring.snapshot()
    assert t.tolist() == [0, 1, 2] and v["a"].tolist() == [0, 1, 2] and v["b"].tolist() == [0, 10, 20]
    for i in range(3, 11):
        ring.extend([float(i)], {"a": [i], "b": [10 * i]})
        assert len(ring) <= ring.capacity
        t, v = ring.snapshot()
        assert t.tolist() == list(range(max(0, i - 3), i + 1))
        assert v["a"].tolist() == t.tolist() and v["b"].tolist() == (10 * t).tolist()
    assert len(ring) == 4 and ring._t.shape == (4,) and ring._v.shape == (2, 4)


def test_ring_snapshot_is_a_copy():
    ring = _ring(["a"], 3)
    for i in range(5):
        ring.extend([float(i)], {"a": [i]})
    t, v = ring.snapshot()
    ring.extend([9.0], {"a": [9]})
    assert t.tolist() == [2, 3, 4] and v["a"].tolist() == [2, 3, 4]


def test_ring_missing_fields_read_nan():
    ring = _ring(["a", "b"], 3)
    ring.extend([1.0], {"a": [1], "b": [2]})
    ring.extend([2.0], {"a": [3]})
    ring.extend([3.0], {"a": [5], "b": [6]})
    ring.extend([4.0], {"a": [7]})  # reuses the slot of t=1, whose b must not leak through
    t, v = ring.snapshot()
    assert t.tolist() == [2, 3, 4]
    assert np.isnan(v["b"][0]) and v["b"][1] == 6 and np.isnan(v["b"][2])


def test_sampler_clock_step_back_restarts(tmp_path):
    times = iter([100.0, 101.0, 102.0, 50.0])
    s = Sampler(interval=1, buffer=60, sys_root=str(tmp_path), sensors=None, clock=lambda: next(times))
    for _ in range(4):
        s.sample()
    t, v = s.snapshot()
    assert t.tolist() == [50.0] and set(v) == set(s.fields)


def test_sampler_ignores_fields_it_did_not_list(tmp_path):
    s = Sampler(interval=1, buffer=60, sys_root=str(tmp_path), sensors=None)
    s.read = lambda: {"cpu_percent": 1.0, "not_a_field": 2.0}
    s.sample()
    t, v = s.snapshot()
    assert set(v) == set(s.fields) and v["cpu_percent"].tolist() == [1.0] and np.isnan(v["load_1m"][0])


# -- the sampler and server --------------------------------------------------------------


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        self.t += 1.0
        return self.t


def test_sampler_fields_and_units_without_temperatures(tmp_path):
    s = Sampler(interval=1, buffer=60, sys_root=str(tmp_path), sensors=None)
    assert s.source is None
    assert {name: info["units"] for name, info in s.fields.items()} == {
        "cpu_percent": "%", "load_1m": "", "memory_percent": "%", "disk_percent": "%",
    }
    assert all(info["timeline"] == "sensors" and info["type"] == "number" for info in s.fields.values())
    assert s.ring.capacity == 60 + sensors.SLACK
    s.sample()
    t, v = s.snapshot()
    assert len(t) == 1 and set(v) == set(s.fields)
    assert 0 <= v["cpu_percent"][0] <= 100 and 0 < v["memory_percent"][0] <= 100
    assert 0 <= v["disk_percent"][0] <= 100 and v["load_1m"][0] >= 0


def test_sampler_interval_limits():
    s = Sampler(interval=0.01, buffer=10, sys_root="/nonexistent", sensors=None)
    assert s.interval == sensors.MIN_INTERVAL
    assert s.ring.capacity == math.ceil(10 / sensors.MIN_INTERVAL) + sensors.SLACK


def test_sampler_from_env():
    s = sensors.sampler_from_env({"SENSORS_INTERVAL": "0.5", "SENSORS_BUFFER": "30"})
    assert s.interval == 0.5 and s.ring.capacity == 60 + sensors.SLACK
    assert sensors.sampler_from_env({}).interval == sensors.DEFAULT_INTERVAL
    with pytest.raises(ValueError):
        sensors.sampler_from_env({"SENSORS_INTERVAL": "fast"})
    with pytest.raises(ValueError):
        sensors.sampler_from_env({"SENSORS_BUFFER": "-1"})
    with pytest.raises(OSError):
        sensors.sampler_from_env({"SENSORS_DISK": "/no/such/disk"})


def test_sampler_sysfs_vanished_sensor_reads_nan(fake_sys):
    s = Sampler(interval=1, buffer=10, sys_root=str(fake_sys), sensors=None, clock=Clock())
    assert s.source == "sysfs"
    assert s.fields["coretemp_core_0"]["units"] == "C"
    assert "cpu_percent" in s.fields
    s.sample()
    (fake_sys / "class" / "hwmon" / "hwmon1" / "temp2_input").unlink()
    write(fake_sys / "class" / "hwmon" / "hwmon9" / "name", "newcomer\n")
    write(fake_sys / "class" / "hwmon" / "hwmon9" / "temp1_input", "20000\n")
    s.sample()
    s.sample()
    t, v = s.snapshot()
    assert len(t) == 3 and np.all(np.diff(t) > 0)
    assert v["coretemp_core_0"][0] == 50.0 and np.isnan(v["coretemp_core_0"][1:]).all()
    assert v["coretemp_package_id_0"].tolist() == [53.0] * 3
    assert "newcomer_temp1" not in v and "newcomer_temp1" not in s.fields
    assert s._missing == {"coretemp_core_0"}


def test_sampler_prefers_lm_sensors(monkeypatch, fake_sys):
    monkeypatch.setattr(sensors, "run_sensors", lambda exe: SENSORS_U)
    s = Sampler(interval=1, buffer=10, sys_root=str(fake_sys), sensors="/usr/bin/sensors")
    assert s.source == "lm-sensors"
    assert "coretemp_isa_0000_core_1" in s.fields and "coretemp_core_0" not in s.fields


def test_sampler_falls_back_when_lm_sensors_finds_nothing(monkeypatch, fake_sys):
    monkeypatch.setattr(sensors, "run_sensors", lambda exe: "")
    s = Sampler(interval=1, buffer=10, sys_root=str(fake_sys), sensors="/usr/bin/sensors")
    assert s.source == "sysfs" and "coretemp_core_0" in s.fields


def test_server_answers_from_the_ring(fake_sys):
    clock = Clock()
    s = Sampler(interval=1, buffer=100, sys_root=str(fake_sys), sensors=None, clock=clock)
    server = SensorsServer(ComponentConfig("test_realm", {}), sampler=s)
    assert server.description.startswith("Live readings of ")
    assert server.answer_get_fields(1, clock.t + 10) == ({}, {})
    for _ in range(10):
        s.sample()
    field, timeline = server.answer_get_fields(1, clock.t + 10)
    assert field == s.fields
    assert timeline == {"sensors": {"interval": 1.0, "field": list(s.fields)}}
    reply = server.answer_get_data(["coretemp_core_0", "cpu_percent", "nope"], clock.t - 4.5, clock.t)
    assert reply["timeline"]["sensors"]["t"] == [clock.t - 4 + i for i in range(5)]
    assert reply["data"]["coretemp_core_0"] == [50.0] * 5
    assert len(reply["data"]["cpu_percent"]) == 5 and reply["data"]["nope"] == []
    thin = server.answer_get_data("coretemp_core_0", 1, clock.t + 1, min_stride=5)
    assert 0 < len(thin["data"]["coretemp_core_0"]) < 10


class StubSampler:
    fields: dict = {}
    interval = 1.0

    def __init__(self):
        self.running = False

    def start(self):
        self.running = True

    def stop(self):
        self.running = False


def test_shared_sampler_outlives_the_session():
    from autobahn.wamp.types import CloseDetails

    shared = StubSampler()
    for _ in range(2):  # a reconnection builds a new session around the same sampler
        server = SensorsServer(ComponentConfig("test_realm", {}), sampler=shared)
        server.after_onJoin(None)
        assert shared.running
        server.onLeave(CloseDetails(reason="wamp.close.transport_lost"))
        assert shared.running
