"""The bridge's statistics and raw samples, through a real router.

The DataSource runs in this process on the test client's link, against
real servers: one answering ``get_aggregates`` with the base class's
default, the example weather server, and a server written the way the
original sisock's were (``get_data`` overridden, answered in the reactor),
for which the bridge computes the statistics itself.
"""

import importlib.util
import os
import shutil
import time

import numpy as np
import pytest
from autobahn.wamp.exception import ApplicationError
from bridge_source import datasource_on, stop
from twisted.internet import threads

from sisock import contract
from sisock.aggregate import TEXT_KEYS, bucket_stats
from sisock.components.http.datasource import NodeFailed
from sisock.components.http.request import AnswerTooLarge, BadRequest

from conftest import node_names
from procs import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
FIELDS = ["level", "counts", "state", "flag"]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"test_server_{name}", os.path.join(HERE, "servers", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mixed = _load("mixed")


@pytest.fixture(scope="module")
def datasource(client):
    ds = datasource_on(client)
    yield ds
    stop(client, ds)


@pytest.fixture(scope="module")
def mixed_node(stack, client):
    p = stack.python("mixed", os.path.join(HERE, "servers", "mixed.py"), env={"NAME": "mixed"}).start()
    wait_for(lambda: "mixed" in node_names(client), 30, "mixed to register")
    yield "mixed"
    p.stop()


@pytest.fixture(scope="module")
def old_node(stack, client, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("old")
    os.makedirs(cwd / ".crossbar")
    shutil.copy(stack.settings.cert, cwd / ".crossbar" / "server_cert.pem")
    p = stack.python("old-aggregates", os.path.join(HERE, "servers", "original_style.py"), "old_agg", "class",
                     cwd=str(cwd))
    p.env = {k: v for k, v in stack.env.items() if k != "SISOCK_CERT"}
    p.start()
    wait_for(lambda: "old_agg" in node_names(client), 30, "old_agg to register")
    yield "old_agg"
    p.stop()


def assert_same(got, want):
    """Two answers of one field: counts, values and times exact, sums to 1e-9."""
    assert set(got) == set(want)
    for key, column in want.items():
        if key == "sum":
            np.testing.assert_allclose(got[key], column, rtol=1e-9)
        else:
            assert np.asarray(got[key]).tolist() == np.asarray(column).tolist(), key
    assert got["bucket"].dtype == np.int64 and got["n"].dtype == np.int64


def expected(series, start, end, interval, offset):
    out = {}
    for name, (t, v) in series.items():
        answer = bucket_stats(t, v, start, end, interval, offset)
        if len(answer["bucket"]):
            out[name] = answer
    return out


def local_series():
    return {name: (tl.t, values) for tl in mixed.timelines() for name, values in tl.fields.items()}


CASES = [  # start, end (seconds after T0), interval, offset
    (0, mixed.SPAN, 60.0, 0.0),
    (-500, mixed.SPAN + 500, 600.0, 0.0),
    (123.456, 7000.25, 61.5, 0.0),
    (3600, 3600, 60.0, 0.0),
    (59.9, 3000.0, 0.001 * 777, 13.0),
    (1000, 9000, 3600.0, -1800.0),
    (mixed.SPAN + 10, mixed.SPAN + 900, 60.0, 0.0),
    (0, mixed.SPAN, 86400.0, 7.5),
]


@pytest.mark.parametrize("case", CASES)
def test_a_node_with_get_aggregates_answers_exactly(datasource, mixed_node, case):
    lo, hi, interval, offset = case
    start, end = mixed.T0 + lo, mixed.T0 + hi
    got = datasource.aggregates(mixed_node, [*FIELDS, "unknown"], start, end, interval, offset)
    want = expected({k: v for k, v in local_series().items() if k in FIELDS}, start, end, interval, offset)
    assert set(got) == set(want)
    for name in want:
        assert_same(got[name], want[name])
    assert mixed_node not in datasource._no_aggregates


def test_raw_gives_every_sample_of_the_range(datasource, mixed_node):
    start, end = mixed.T0 + 100.5, mixed.T0 + 4000
    got = datasource.raw(mixed_node, [*FIELDS, "unknown"], start, end)
    series = local_series()
    assert set(got) == set(FIELDS)
    for name in FIELDS:
        t, v = series[name]
        inside = (t >= start) & (t <= end)
        assert got[name][0].tolist() == t[inside].tolist()
        assert [x for x in np.asarray(got[name][1]).tolist() if x == x] == \
            [x for x in np.asarray(v[inside]).tolist() if x == x]
    total = sum(len(t) for t, _ in got.values())
    assert len(datasource.raw(mixed_node, FIELDS, start, end, limit=total)) == len(FIELDS)
    with pytest.raises(AnswerTooLarge, match="more than the"):
        datasource.raw(mixed_node, FIELDS, start, end, limit=total - 1)
    assert datasource.raw(mixed_node, FIELDS, mixed.T0 - 1000, mixed.T0 - 100) == {}


def test_the_node_registers_get_aggregates_and_refuses_too_large_answers(client, datasource, mixed_node):
    procedure = contract.get_aggregates_procedure(mixed_node)
    reply = client.call(procedure, ["flag"], mixed.T0, mixed.T0 + 100, 60.0)
    assert set(reply["fields"]["flag"]) == {"bucket", *bucket_stats([0.0], [True], 0, 1, 1)}
    # 300 000 samples in 1 ms buckets: more statistics than one reply carries.
    assert client.call(procedure, ["dense"], mixed.T0, mixed.T0 + 3000, 0.001) is False
    with pytest.raises(AnswerTooLarge, match="refused to send that much"):
        datasource.aggregates(mixed_node, ["dense"], mixed.T0, mixed.T0 + 3000, 0.001)
    coarse = datasource.aggregates(mixed_node, ["dense"], mixed.T0, mixed.T0 + 3000, 600.0)
    assert coarse["dense"]["n"].sum() == 300_000
    with pytest.raises(ApplicationError):
        client.call(procedure, ["flag"], mixed.T0, mixed.T0 + 100, 0)


def test_a_failing_node_and_bad_requests(datasource, mixed_node):
    with pytest.raises(NodeFailed, match="boom sensor"):
        datasource.aggregates(mixed_node, ["boom"], mixed.T0, mixed.T0 + 100, 60.0)
    with pytest.raises(NodeFailed, match="boom sensor"):
        datasource.raw(mixed_node, ["boom"], mixed.T0, mixed.T0 + 100)
    for interval in (0, -60, float("nan")):
        with pytest.raises(BadRequest):
            datasource.aggregates(mixed_node, ["level"], mixed.T0, mixed.T0 + 100, interval)
    assert datasource.aggregates("no_such_node", ["x"], 1, 2, 1.0) == {}
    assert datasource.raw("no_such_node", ["x"], 1, 2) == {}
    assert datasource.aggregates("a.b", ["x"], 1, 2, 1.0) == {}


def test_the_weather_server_answers_as_its_samples_say(client, datasource, weather):
    fields, _ = client.fields("apex_archive")
    names = sorted(fields)[:3]
    now = time.time()
    raw = datasource.raw("apex_archive", names, now - 3 * 86400, now)
    assert raw and all(len(t) > 10 for t, _ in raw.values())
    start = min(t[0] for t, _ in raw.values())
    end = max(t[-1] for t, _ in raw.values())
    for interval, offset in ((60.0, 0.0), (3600.0, 0.0), (1234.5, 100.0)):
        got = datasource.aggregates("apex_archive", names, start, end, interval, offset)
        want = expected(raw, start, end, interval, offset)
        assert set(got) == set(want) == set(names)
        for name in names:
            assert_same(got[name], want[name])


def test_a_server_without_get_aggregates_is_answered_by_the_bridge(client, datasource, old_node):
    with pytest.raises(ApplicationError) as info:
        client.call(contract.get_aggregates_procedure(old_node), ["counter"], 1000.0, 2000.0, 2.0)
    assert info.value.error == contract.NO_SUCH_PROCEDURE
    got = datasource.aggregates(old_node, ["counter"], 1000.0, 2000.0, 2.0)
    assert old_node in datasource._no_aggregates
    assert datasource.aggregates(old_node, ["counter", "unknown"], 1000.0, 2000.0, 2.0).keys() == {"counter"}
    # The server sends times 1001..1005 with values 1..5 whatever is asked.
    assert_same(got["counter"], bucket_stats(np.arange(1001.0, 1006.0), np.arange(1.0, 6.0), 1000, 2000, 2.0))
    assert set(got) == {"counter"}
    assert got["counter"]["bucket"].tolist() == [1_000_000_000_000, 1_002_000_000_000, 1_004_000_000_000]
    again = datasource.aggregates(old_node, ["counter"], 1000.0, 1003.0, 10.0, 0.0)
    assert again["counter"]["n"].tolist() == [3]  # samples after the range's end are not counted
    assert datasource.raw(old_node, ["counter"], 1000.0, 1002.5)["counter"][1].tolist() == [1.0, 2.0]


BAD_REPLIES = [None, [], "x", {"fields": []}, {"fields": {"level": {"bucket": []}}},
               {"fields": {"level": {k: [1] for k in TEXT_KEYS} | {"n": [1, 2]}}},
               {"fields": {"level": {k: ["not a number"] for k in TEXT_KEYS}}},
               {"fields": {"level": {k: {"a": 1} for k in TEXT_KEYS}}}]


def test_a_node_sending_something_else_than_the_contract_is_a_failed_node(client, datasource):
    replies = iter(BAD_REPLIES)

    def liar(*args, **kwargs):
        return next(replies)

    reactor = client.link.reactor
    registration = threads.blockingCallFromThread(
        reactor, client.link.session.register, liar, contract.get_aggregates_procedure("liar"))
    try:
        for bad in BAD_REPLIES:
            with pytest.raises(NodeFailed, match="liar"):  # a 502 with a reason, never a traceback
                datasource.aggregates("liar", ["level"], 1.0, 100.0, 10.0)
            assert "liar" not in datasource._no_aggregates, bad
    finally:
        threads.blockingCallFromThread(reactor, registration.unregister)
