"""The apex-weather and ucsc-radiometer servers in process, against
generated archives: values and UTC times must equal what was written."""

from __future__ import annotations

import calendar
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from autobahn.wamp.types import ComponentConfig
from m4_check import assert_m4

from sisock.demo import archives as demo
from sisock.downsample import bucket_width, stride_for
from sisock.servers import text_archive
from sisock.servers.apex_weather import FIELDS as APEX_FIELDS
from sisock.servers.apex_weather import ApexWeatherServer
from sisock.servers.radiometer import RadiometerServer
from sisock.servers.text_archive import TextArchive, parse_pairs

DAY = 86400
DEFECTS = demo.Defects(nan_every=7, blank_every=11, malformed_every=13)


def utc(*ymdhms) -> float:
    return float(calendar.timegm((*ymdhms, 0, 0, 0, 0, 0)[:6]))


def make(cls, root, max_points=None):
    return cls(ComponentConfig("test_realm", {}), archive=TextArchive(str(root), cls.layout), max_points=max_points)


def window(written, name, a, b):
    t, v = written.series[name]
    keep = (t >= a) & (t <= b)
    return t[keep], v[keep]


def assert_served(server, written, names, a, b):
    reply = server.answer_get_data(list(names), a, b)
    for name in names:
        t, v = window(written, name, a, b)
        assert len(t), "the test range must hold data"
        assert reply["timeline"][name]["t"] == t.tolist(), name
        assert reply["data"][name] == v.tolist(), name
    return reply


@pytest.fixture
def reads(monkeypatch):
    """Names of the files the archives parse, in order."""
    seen = []
    original = TextArchive._read

    def spy(self, f, key):
        seen.append(os.path.basename(f.path))
        return original(self, f, key)

    monkeypatch.setattr(TextArchive, "_read", spy)
    return seen


# -- apex-weather --------------------------------------------------------------------


def test_apex_range_spanning_several_files_opens_only_those(tmp_path, reads):
    start = utc(2023, 3, 1)
    written = demo.write_apex(tmp_path, start, start + 4 * DAY, file_days=1)
    assert len(written.files) == 4 * len(APEX_FIELDS)
    server = make(ApexWeatherServer, tmp_path)
    a, b = start + DAY / 2 + 30, start + 2 * DAY + 6 * 3600
    assert_served(server, written, list(APEX_FIELDS), a, b)
    days = {int((utc(2023, 3, 1) + d * DAY) // 60 * 60) for d in range(3)}
    assert sorted(reads) == sorted(f"APEX_{f}_{d}_{d + DAY - 60}.dat" for f in APEX_FIELDS for d in days)
    reads.clear()
    assert_served(server, written, list(APEX_FIELDS), a, b)
    assert reads == []  # served from the cache
    # One field inside one file: that file alone (cached already, so nothing read now).
    fresh = make(ApexWeatherServer, tmp_path)
    assert_served(fresh, written, ["pressure"], start + 3 * DAY + 10, start + 3 * DAY + 5000)
    assert reads == [f"APEX_pressure_{int(start + 3 * DAY)}_{int(start + 4 * DAY - 60)}.dat"]


def test_apex_fields_are_separate_timelines_with_units(tmp_path):
    start = utc(2023, 3, 1)
    demo.write_apex(tmp_path, start, start + DAY)
    field, timeline = make(ApexWeatherServer, tmp_path).answer_get_fields(start, start + DAY)
    assert sorted(field) == sorted(APEX_FIELDS)
    for name, (description, units) in APEX_FIELDS.items():
        assert field[name] == {"description": description, "timeline": name, "type": "number", "units": units}
        assert timeline[name]["field"] == [name]
    assert field["windspeed"]["units"] == "km/h" and field["pressure"]["units"] == "mBar"


def test_get_fields_lists_only_fields_with_data_in_range(tmp_path):
    start = utc(2023, 6, 1)
    demo.write_apex(tmp_path, start, start + 2 * DAY, fields=["humidity", "pressure"])
    demo.write_apex(tmp_path, start + DAY, start + 2 * DAY, fields=["temperature"])
    demo.write_apex(tmp_path, start, start + DAY, fields=["windspeed"], defects=demo.Defects(nan_every=1))
    server = make(ApexWeatherServer, tmp_path)
    assert sorted(server.answer_get_fields(start, start + DAY - 1)[0]) == ["humidity", "pressure"]
    assert sorted(server.answer_get_fields(start + DAY, start + 2 * DAY)[0]) == ["humidity", "pressure",
                                                                                    "temperature"]
    assert server.answer_get_fields(start - 10 * DAY, start - 1) == ({}, {})
    # A file's span overlaps, but its samples do not fall in the range.
    assert server.answer_get_fields(start + 10, start + 50) == ({}, {})
    ucsc = make(RadiometerServer, tmp_path)
    assert ucsc.answer_get_fields(start, start + DAY) == ({}, {})
    demo.write_ucsc(tmp_path, start, start + DAY)
    field, _ = make(RadiometerServer, tmp_path).answer_get_fields(start, start + DAY)
    assert field == {"pwv": {"description": "UCSC radiometer precipitable water vapour", "timeline": "pwv",
                             "type": "number", "units": "mm"}}


def test_unknown_fields_and_empty_ranges(tmp_path):
    start = utc(2023, 6, 1)
    demo.write_apex(tmp_path, start, start + DAY, fields=["humidity"])
    server = make(ApexWeatherServer, tmp_path)
    reply = server.answer_get_data(["nope", "humidity"], start - 100, start - 1)
    assert reply == {"data": {"nope": [], "humidity": []}, "timeline": {}}
    reply = server.answer_get_data(["nope", "humidity"], start, start + 60)
    assert reply["data"]["nope"] == [] and reply["timeline"]["humidity"]["t"] == [start, start + 60]


# -- ucsc-radiometer -------------------------------------------------------------------


def _pwv_names(tmp_path):
    return sorted(os.listdir(tmp_path / "PWV"))


def test_ucsc_year_boundary(tmp_path, reads):
    start = utc(2019, 12, 30)
    written = demo.write_ucsc(tmp_path, start, start + 4 * DAY)
    assert _pwv_names(tmp_path) == ["PWV_UCSC_2019-364.txt", "PWV_UCSC_2019-365.txt",
                                    "PWV_UCSC_2020-001.txt", "PWV_UCSC_2020-002.txt"]
    with open(tmp_path / "PWV" / "PWV_UCSC_2020-001.txt") as f:
        assert f.readline().strip() and f.readline().split()[0] == "1.00000000"
    server = make(RadiometerServer, tmp_path)
    reply = assert_served(server, written, ["pwv"], start + 3600.5, start + 4 * DAY)
    t = reply["timeline"]["pwv"]["t"]
    assert utc(2020, 1, 1) in t and utc(2019, 12, 31, 23, 59) in t and utc(2020, 1, 2, 23, 59) == t[-1]
    reads.clear()
    assert_served(make(RadiometerServer, tmp_path), written, ["pwv"], utc(2019, 12, 31, 1), utc(2019, 12, 31, 2))
    assert reads == ["PWV_UCSC_2019-365.txt"]


@pytest.mark.parametrize("year,leap", [(2020, True), (2019, False)])
def test_ucsc_leap_day(tmp_path, year, leap):
    start = utc(year, 2, 28)
    written = demo.write_ucsc(tmp_path, start, utc(year, 3, 2))
    day60 = f"PWV_UCSC_{year}-060.txt"
    assert day60 in _pwv_names(tmp_path) and (f"PWV_UCSC_{year}-061.txt" in _pwv_names(tmp_path)) == leap
    with open(tmp_path / "PWV" / day60) as f:
        lines = f.read().split("\n")
    assert lines[1].split()[0] == "60.00000000"
    reply = assert_served(make(RadiometerServer, tmp_path), written, ["pwv"], start, utc(year, 3, 2))
    t = reply["timeline"]["pwv"]["t"]
    # Day 60 starts on Feb 29 in a leap year, on Mar 1 otherwise.
    first_of_day60 = written.series["pwv"][0][np.searchsorted(written.series["pwv"][0], utc(year, 2, 28) + DAY)]
    assert first_of_day60 == (utc(2020, 2, 29) if leap else utc(2019, 3, 1))
    assert t[-1] == utc(year, 3, 1, 23, 59) and len(t) == (3 if leap else 2) * 1440


def test_ucsc_2018_naming_switch(tmp_path):
    start = utc(2018, 7, 18)
    written = demo.write_ucsc(tmp_path, start, utc(2018, 7, 24))
    assert _pwv_names(tmp_path) == sorted(["PWV_UCSC_199-2018.txt", "PWV_UCSC_200-2018.txt", "PWV_UCSC_201-2018.txt",
                                           "PWV_UCSC_2018-202.txt", "PWV_UCSC_2018-203.txt", "PWV_UCSC_2018-204.txt"])
    reply = assert_served(make(RadiometerServer, tmp_path), written, ["pwv"], start, utc(2018, 7, 24))
    t = reply["timeline"]["pwv"]["t"]
    assert len(t) == 6 * 1440 and utc(2018, 7, 20, 23, 59) in t and utc(2018, 7, 21) in t  # day 201 | 202


def test_both_namings_of_one_day_are_merged(tmp_path):
    start = utc(2018, 7, 20)
    written = demo.write_ucsc(tmp_path, start, start + DAY)
    old = tmp_path / "PWV" / "PWV_UCSC_201-2018.txt"
    os.link(old, tmp_path / "PWV" / "PWV_UCSC_2018-201.txt")
    assert_served(make(RadiometerServer, tmp_path), written, ["pwv"], start, start + DAY)


# -- both ---------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.lines = []

    def warn(self, fmt, **kw):
        self.lines.append(fmt.format(**kw))

    info = error = debug = warn


@pytest.mark.parametrize("cls,write", [(ApexWeatherServer, demo.write_apex), (RadiometerServer, demo.write_ucsc)])
def test_nan_rows_blank_and_malformed_lines(tmp_path, monkeypatch, cls, write):
    log = Recorder()
    monkeypatch.setattr(text_archive, "log", log)
    start = utc(2021, 5, 10)
    written = write(tmp_path, start, start + 2 * DAY, defects=DEFECTS)
    names = list(written.series)
    for path in written.files:
        with open(path, "rb") as f:
            content = f.read()
        assert b"NaN" in content and b"\n\n" in content and b"\n   \n" in content and b"garbage" in content
    server = make(cls, tmp_path)
    assert_served(server, written, names, start, start + 2 * DAY)
    n, _ = written.series[names[0]]
    assert len(n) == 2 * 1440 - 2 * (1440 // 7)  # NaN rows are left out
    assert server.archive.malformed == written.files and all(written.files.values())
    assert sorted(log.lines) == sorted(f"{p}: skipped {c} malformed line(s)" for p, c in written.files.items())
    # Parsed again (emptied cache): counted again, not logged again.
    server.archive.cache = type(server.archive.cache)(1 << 30)
    assert_served(server, written, names, start, start + 2 * DAY)
    assert len(log.lines) == len(written.files)


def test_a_file_that_grows_is_read_again(tmp_path, reads):
    start = utc(2022, 8, 1)
    written = demo.write_apex(tmp_path, start, start + DAY, fields=["temperature"])
    (path,) = written.files
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    with open(path, "wb") as f:
        f.writelines(lines[:700])
    server = make(ApexWeatherServer, tmp_path)
    t, v = written.series["temperature"]
    reply = server.answer_get_data(["temperature"], start, start + DAY)
    assert reply["timeline"]["temperature"]["t"] == t[:700].tolist()
    assert reply["data"]["temperature"] == v[:700].tolist()
    with open(path, "ab") as f:
        f.writelines(lines[700:])
    assert_served(server, written, ["temperature"], start, start + DAY)
    assert len(reads) == 2 and len(server.archive.cache) == 1  # the old version is dropped


def _check_bucket_extremes(reply, written, name, a, b, max_points):
    t_out = np.array(reply["timeline"][name]["t"])
    v_out = np.array(reply["data"][name])
    assert 0 < len(t_out) <= max_points
    t, v = window(written, name, a, b)
    assert len(t) > 4 * max_points
    assert_m4(t, v, t_out, v_out, a, b, bucket_width(stride_for(None, a, b, max_points)))
    assert v.max() in v_out and v.min() in v_out


@pytest.mark.parametrize("cls,write", [(ApexWeatherServer, demo.write_apex), (RadiometerServer, demo.write_ucsc)])
def test_max_points_keeps_each_buckets_min_and_max(tmp_path, cls, write):
    start = utc(2020, 12, 30)
    written = write(tmp_path, start, start + 3 * DAY, cadence=30)
    max_points = 200
    server = make(cls, tmp_path, max_points=max_points)
    a, b = start + 100.5, start + 3 * DAY - 7
    names = list(written.series)
    reply = server.answer_get_data(names, a, b)
    for name in names:
        _check_bucket_extremes(reply, written, name, a, b, max_points)
    # A coarser min_stride than MAX_POINTS implies still wins; a finer one does not.
    coarse = server.answer_get_data(names[:1], a, b, min_stride=(b - a) / 50)
    assert len(coarse["timeline"][names[0]]["t"]) <= 50 + 4  # epoch-aligned: a partial bucket at each edge
    fine = server.answer_get_data(names[:1], a, b, min_stride=1)
    assert fine == server.answer_get_data(names[:1], a, b)
    # Short ranges are not decimated.
    assert_served(server, written, names, a, a + 50 * 30)


def test_parse_pairs_classifies_lines():
    data = (b"header line\n1 2\r\n\n  \t \n# a comment\n3\t4.5\n5 nan\nnan 6\n1.2.3 4\n7 8 9\nx y\n"
            b"-1e3 +2E-1\n9 inf\n10 11")
    parsed = parse_pairs(data, header_lines=1)
    assert parsed.x.tolist() == [1, 3, -1000, 10] and parsed.y.tolist() == [2, 4.5, 0.2, 11]
    assert parsed.malformed == 3
    assert parse_pairs(b"").malformed == 0 and parse_pairs(b"a\nb\n").malformed == 2
    assert len(parse_pairs(b"1 2\n", header_lines=1).x) == 0


def test_demo_cli_writes_both_archives_ending_now(tmp_path):
    demo.main([str(tmp_path), "--days", "1"])
    assert len(os.listdir(tmp_path / "targets")) >= len(APEX_FIELDS) and os.listdir(tmp_path / "PWV")
    now = time.time()
    assert sorted(make(ApexWeatherServer, tmp_path).answer_get_fields(now - 3600, now)[0]) == sorted(APEX_FIELDS)
    assert list(make(RadiometerServer, tmp_path).answer_get_fields(now - 3600, now)[0]) == ["pwv"]


def test_generator_is_deterministic(tmp_path):
    start = utc(2024, 1, 1)
    one = demo.write_apex(tmp_path / "a", start, start + DAY, defects=DEFECTS)
    two = demo.write_apex(tmp_path / "b", start, start + DAY, defects=DEFECTS)
    for path in one.files:
        twin = path.replace(str(tmp_path / "a"), str(tmp_path / "b"))
        with open(path, "rb") as f, open(twin, "rb") as g:
            assert f.read() == g.read()
    assert all(np.array_equal(one.series[n][1], two.series[n][1]) for n in one.series)


@pytest.mark.parametrize("module", ["sisock.servers.apex_weather", "sisock.servers.radiometer"])
@pytest.mark.parametrize("case", ["unset", "missing", "file", "max_points"])
def test_data_directory_errors_exit_2_with_one_line(tmp_path, module, case):
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIRECTORY", "MAX_POINTS")}
    if case == "missing":
        env["DATA_DIRECTORY"] = str(tmp_path / "nowhere")
    elif case == "file":
        (tmp_path / "f").write_text("")
        env["DATA_DIRECTORY"] = str(tmp_path / "f")
    elif case == "max_points":
        env.update(DATA_DIRECTORY=str(tmp_path), MAX_POINTS="lots")
    proc = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert ("MAX_POINTS" if case == "max_points" else "DATA_DIRECTORY") in lines[0]
