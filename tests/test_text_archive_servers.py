"""apex-weather and ucsc-radiometer as real DataNodeServers behind the router."""

from __future__ import annotations

import calendar
import sys

import numpy as np
import pytest

from sisock.demo import archives as demo

from conftest import node_names
from procs import Proc, wait_for

DAY = 86400
APEX_START = float(calendar.timegm((2021, 12, 31, 0, 0, 0)))
UCSC_START = float(calendar.timegm((2018, 7, 19, 0, 0, 0)))  # across the 2018 naming switch


@pytest.fixture(scope="module")
def archives(stack, client, tmp_path_factory):
    root = tmp_path_factory.mktemp("text-archives")
    defects = demo.Defects(nan_every=5, blank_every=9, malformed_every=17)
    apex = demo.write_apex(root, APEX_START, APEX_START + 2 * DAY, defects=defects)
    ucsc = demo.write_ucsc(root, UCSC_START, UCSC_START + 3 * DAY, defects=defects)
    procs = []
    for name, module in (("apex-weather", "sisock.servers.apex_weather"), ("radiometer", "sisock.servers.radiometer")):
        p = Proc(name, [sys.executable, "-m", module], env={**stack.env, "DATA_DIRECTORY": str(root)},
                 cwd=stack.root, logdir=stack.logdir)
        stack.procs.append(p)
        procs.append(p.start())
    wait_for(lambda: {"apex_weather", "ucsc_radiometer"} <= node_names(client), 30, "both servers to register")
    yield {"apex_weather": apex, "ucsc_radiometer": ucsc}
    for p in procs:
        p.stop()


@pytest.mark.parametrize("node,a,b", [
    ("apex_weather", APEX_START + 1234, APEX_START + DAY + 5000),
    ("ucsc_radiometer", UCSC_START + 3600, UCSC_START + 3 * DAY),
])
def test_served_through_the_router_equals_what_was_written(client, archives, node, a, b):
    written = archives[node]
    field, timeline = client.fields(node, a, b)
    assert sorted(field) == sorted(written.series)
    assert all(timeline[name]["field"] == [name] for name in field)
    got = client.data(node, list(written.series), a, b)
    for name, (t, v) in written.series.items():
        keep = (t >= a) & (t <= b)
        assert np.array_equal(got[name].t, t[keep]) and np.array_equal(got[name].values, v[keep]), name


def test_min_stride_through_the_router(client, archives):
    a, b = APEX_START, APEX_START + 2 * DAY
    got = client.data("apex_weather", ["pressure"], a, b, min_stride=600)
    t, v = archives["apex_weather"].series["pressure"]
    assert len(got["pressure"].t) <= (b - a) / 600
    assert v.max() in got["pressure"].values and v.min() in got["pressure"].values
