"""Unit tests of the example-weather DataNodeServer and its data generator.

No router: the server's blocking methods are called directly, which is what
the reactor does in a worker thread.
"""

from __future__ import annotations

import calendar
import os
import re

import pytest
from autobahn.wamp.types import ComponentConfig

from sisock import connect
from sisock.demo import weather as gen
from sisock.servers import weather
from sisock.servers.weather import WeatherServer

START = calendar.timegm((2017, 7, 13, 0, 0, 0))
END = calendar.timegm((2017, 7, 27, 0, 0, 0))
HOURLY = ("apex_humidity", "apex_pressure", "apex_temperature", "apex_windspeed")
FIELDS = (*HOURLY, "apex_radiometer")
ROW = re.compile(r"^\d+ -?\d+\.\d+$")


def read_text(path):
    """The file read independently of the server: header, times, values."""
    with open(path, encoding="ascii") as f:
        lines = f.read().splitlines()
    rows = [line.split(" ") for line in lines[4:]]
    return lines[:4], [int(t) for t, _ in rows], [float(v) for _, v in rows]


def data_path(name):
    return os.path.join(gen.DEFAULT_OUT, f"{name}.dat")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("WEATHER_REPLAY", raising=False)
    monkeypatch.delenv("WEATHER_DATA", raising=False)


@pytest.fixture(scope="module")
def archive():
    return weather.Archive(gen.DEFAULT_OUT)


@pytest.fixture
def server(archive):
    return WeatherServer(ComponentConfig("test_realm", {}), archive=archive)


def test_construction_needs_no_router():
    s = WeatherServer(ComponentConfig("test_realm", {}))
    assert s.name == "apex_archive"
    assert s.description == "Archived APEX weather (example data)"
    assert s.replay is False
    assert sorted(s.archive.fields) == sorted(FIELDS)


# -- the generator and the committed files -----------------------------------

def test_generator_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    gen.generate(str(a))
    gen.generate(str(b))
    names = sorted(os.listdir(a))
    assert names == sorted(f"{n}.dat" for n in FIELDS)
    assert sorted(os.listdir(b)) == names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_committed_files_equal_a_fresh_generation(tmp_path):
    gen.main(["--out", str(tmp_path)])
    for name in FIELDS:
        with open(data_path(name), "rb") as f:
            committed = f.read()
        assert (tmp_path / f"{name}.dat").read_bytes() == committed, f"{name}.dat is stale: rerun the generator"


def test_committed_files_are_small():
    assert sum(os.path.getsize(data_path(n)) for n in FIELDS) < 1_500_000


@pytest.mark.parametrize("name", FIELDS)
def test_header_and_rows(name):
    header, _, _ = read_text(data_path(name))
    assert all(line.startswith("# ") for line in header)
    description, timeline, units, first_date = (line[2:] for line in header)
    assert description
    assert timeline == ("apex_radiometer" if name == "apex_radiometer" else "apex_weather")
    assert units == {"apex_humidity": "%", "apex_pressure": "mBar", "apex_radiometer": "mm",
                     "apex_temperature": "C", "apex_windspeed": "km/h"}[name]
    assert first_date == "2017-07-13"
    with open(data_path(name), encoding="ascii") as f:
        body = f.read().splitlines()[4:]
    assert all(ROW.match(line) for line in body)


@pytest.mark.parametrize("name", FIELDS)
def test_coverage_and_sampling(name):
    _, t, values = read_text(data_path(name))
    step = 60 if name == "apex_radiometer" else 3600
    assert t[0] == START and t[-1] == END
    assert t == list(range(START, END + 1, step))
    lo, hi = {"apex_humidity": (0, 100), "apex_pressure": (540, 570), "apex_radiometer": (0.1, 8),
              "apex_temperature": (-15, 20), "apex_windspeed": (0, 150)}[name]
    assert lo <= min(values) and max(values) <= hi


# -- serving -----------------------------------------------------------------

@pytest.mark.parametrize("name", FIELDS)
def test_values_equal_the_file_text(server, name):
    header, t, values = read_text(data_path(name))
    reply = server.answer_get_data([name], START, END)
    assert reply["data"][name] == values
    assert reply["timeline"] == {header[1][2:]: {"t": [float(x) for x in t], "finalized_until": float(END)}}


def test_range_is_inclusive(server):
    _, t, values = read_text(data_path("apex_temperature"))
    reply = server.answer_get_data(["apex_temperature"], t[10], t[20])
    assert reply["timeline"]["apex_weather"]["t"] == t[10:21]
    assert reply["data"]["apex_temperature"] == values[10:21]
    reply = server.answer_get_data(["apex_temperature"], t[10] + 0.5, t[20] - 0.5)
    assert reply["timeline"]["apex_weather"]["t"] == t[11:20]


def test_unknown_field_and_empty_range(server):
    assert server.answer_get_data(["nope"], START, END) == {"data": {"nope": []}, "timeline": {}}
    reply = server.answer_get_data(["apex_pressure"], START - 100, START - 1)
    assert reply == {"data": {"apex_pressure": []}, "timeline": {}}


def test_get_fields_whole_archive(server):
    fields, timelines = server.answer_get_fields(START, END)
    assert sorted(fields) == sorted(FIELDS)
    assert fields["apex_pressure"] == {"description": "APEX atmospheric pressure",
                                       "timeline": "apex_weather", "type": "number", "units": "mBar"}
    assert timelines["apex_weather"]["interval"] == 3600.0
    assert sorted(timelines["apex_weather"]["field"]) == sorted(HOURLY)
    assert timelines["apex_radiometer"] == {"interval": 60.0, "field": ["apex_radiometer"]}


def test_get_fields_lists_only_fields_with_data(server):
    fields, timelines = server.answer_get_fields(START + 60, START + 120)
    assert list(fields) == ["apex_radiometer"] and list(timelines) == ["apex_radiometer"]
    fields, timelines = server.answer_get_fields(START + 3600, START + 3600)
    assert sorted(fields) == sorted(FIELDS) and len(timelines) == 2
    assert server.answer_get_fields(END + 1, END + 86400) == ({}, {})


# -- min/max decimation ------------------------------------------------------

@pytest.mark.parametrize("name,min_stride", [
    ("apex_radiometer", 600), ("apex_radiometer", 3600),
    *((n, 6 * 3600) for n in HOURLY),
])
def test_min_stride_keeps_spikes(server, name, min_stride):
    _, _, raw = read_text(data_path(name))
    reply = server.answer_get_data([name], START, END, min_stride=min_stride)
    values = reply["data"][name]
    t = next(iter(reply["timeline"].values()))["t"]
    assert len(t) == len(values)
    expected = (END - START) / min_stride
    assert 0.8 * expected <= len(values) <= 1.2 * expected + 2
    # The generator makes its three spikes the three largest values.
    for spike in sorted(raw)[-3:]:
        assert spike in values
    assert min(raw) in values and max(values) == max(raw)
    assert t == sorted(t)


# -- replay ------------------------------------------------------------------

def replay_server(archive, monkeypatch, now):
    monkeypatch.setattr(weather.time, "time", lambda: now)
    return WeatherServer(ComponentConfig("test_realm", {}), replay=True, archive=archive)


def test_replay_shift_is_whole_hours(archive, monkeypatch):
    now = 1_800_000_123.25
    s = replay_server(archive, monkeypatch, now)
    hour = now // 3600 * 3600
    assert s.shift() % 3600 == 0 and s.shift() == hour - END
    reply = s.answer_get_data(["apex_temperature", "apex_radiometer"], now - 15 * 86400, now)
    for tl in reply["timeline"].values():
        assert tl["t"][-1] == hour
        assert now - 3600 < tl["t"][-1] <= now
    _, _, values = read_text(data_path("apex_temperature"))
    assert reply["data"]["apex_temperature"] == values


def test_replay_is_stable_within_the_hour(archive, monkeypatch):
    hour = 1_800_000_000 // 3600 * 3600
    request = (["apex_pressure"], hour - 86400, hour + 7200, 1800)
    first = replay_server(archive, monkeypatch, hour + 10).answer_get_data(*request)
    later = replay_server(archive, monkeypatch, hour + 3590).answer_get_data(*request)
    assert first == later
    next_hour = replay_server(archive, monkeypatch, hour + 3610).answer_get_fields(hour + 3600, hour + 3600)
    assert sorted(next_hour[0]) == sorted(FIELDS)


def test_replay_with_the_real_clock(archive):
    import time

    s = WeatherServer(ComponentConfig("test_realm", {}), replay=True, archive=archive)
    before = time.time()
    reply = s.answer_get_data(["apex_windspeed"], -15 * 86400 + before, before + 3600)
    after = time.time()
    last = reply["timeline"]["apex_weather"]["t"][-1]
    assert (last - START) % 3600 == 0
    assert before - 3600 < last <= after


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("YES", True),
                                            ("0", False), ("", False), ("no", False)])
def test_replay_from_environment(archive, monkeypatch, value, expected):
    monkeypatch.setenv("WEATHER_REPLAY", value)
    assert WeatherServer(ComponentConfig("test_realm", {}), archive=archive).replay is expected
    assert WeatherServer(ComponentConfig("test_realm", {}), replay=False, archive=archive).replay is False


def test_main_builds_sessions_from_one_archive(monkeypatch):
    made = []
    monkeypatch.setattr(connect, "run", lambda factory: made.append(factory) or 7)
    with pytest.raises(SystemExit) as exit_info:
        weather.main(["--replay"])
    assert exit_info.value.code == 7
    a, b = (made[0](ComponentConfig("test_realm", {})) for _ in range(2))
    assert isinstance(a, WeatherServer) and a.replay is True
    assert a.archive is b.archive
    with pytest.raises(SystemExit):
        weather.main([])
    assert made[1](ComponentConfig("test_realm", {})).replay is False


# -- loading errors ----------------------------------------------------------

def test_data_folder_from_environment(tmp_path, monkeypatch):
    gen.generate(str(tmp_path))
    os.remove(tmp_path / "apex_windspeed.dat")
    monkeypatch.setenv("WEATHER_DATA", str(tmp_path))
    s = WeatherServer(ComponentConfig("test_realm", {}))
    assert "apex_windspeed" not in s.archive.fields and "apex_pressure" in s.archive.fields


def test_mismatched_timeline_is_a_clear_error(tmp_path):
    gen.generate(str(tmp_path))
    path = tmp_path / "apex_pressure.dat"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(ValueError, match="apex_weather.*different sample times"):
        weather.Archive(str(tmp_path))


def test_bad_header_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .dat files"):
        weather.Archive(str(tmp_path))
    (tmp_path / "x.dat").write_text("# only\n# three\n# lines\n1 2.0\n")
    with pytest.raises(ValueError, match="header lines"):
        weather.Archive(str(tmp_path))
