"""sisock's InfluxQL API against a real InfluxDB 1.x, statement by statement.

The same samples go into both (tests/influx_samples.py): a g3 archive
indexed in MariaDB and served by a g3-reader, a live feed published on the
router for a data-feed server; and InfluxDB written through the OCS
publisher's own ``format_data``. Every statement of the corpus
(tests/influxql_corpus.py) is sent to InfluxDB's ``/query`` and to the
bridge's ``/influxdb/query`` with the same parameters, and the JSON answers
must agree (tests/influx_compare.py). The pair is set up by
tests/influxql_stack.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from influx_compare import diff, same_point
from influx_samples import DATABASE
from influxql_corpus import corpus


@dataclass(frozen=True)
class Intended:
    """A difference sisock means to have: which statements, and InfluxDB's
    answer turned into the one sisock gives instead. The rest of the answer
    is still compared in full, so an intended difference hides nothing else."""

    reason: str
    applies: Callable[[str], bool]
    expect: Callable[[dict, dict], dict]


#: None today: every statement of the corpus is answered as InfluxDB answers it.
INTENDED: list[Intended] = []


def _ask(base: str, case) -> tuple[int, dict]:
    params = {"q": case.q}
    if case.db is not None:
        params["db"] = case.db
    if case.epoch is not None:
        params["epoch"] = case.epoch
    if case.method == "POST":
        r = requests.post(base + "/query", data=params, timeout=60)
    else:
        r = requests.get(base + "/query", params=params, timeout=60)
    return r.status_code, r.json()


def test_influxdb_answers_every_statement_of_the_corpus(influxdb, influxql_samples, influxql_live_t0):
    """The corpus is valid InfluxQL, with data behind most of it: each
    statement is answered by InfluxDB without an error."""
    cases = corpus(influxql_live_t0)
    assert len(cases) >= 200
    failed, with_data = [], 0
    for case in cases:
        status, body = _ask(influxdb.url, case)
        errors = [r["error"] for r in body.get("results", []) if "error" in r]
        if status != 200 or errors or "error" in body:
            failed.append((case.q, status, errors or body))
        with_data += any(r.get("series") for r in body.get("results", []))
    print(f"\n{len(cases)} statements, {with_data} with series, {len(failed)} refused by InfluxDB")
    assert not failed, failed[:5]
    assert with_data > len(cases) * 0.7


def test_sisock_answers_as_influxdb_does(influxql_pair, influxql_live_t0, tmp_path):
    """Every statement, the same parameters, the same answer (or a difference
    listed in INTENDED). For a ``now()``-relative statement a time may differ
    by the time between the two requests plus a second (InfluxDB answers an
    aggregate without GROUP BY time at the range's start, ``now() - 1h``);
    its rows and values must still be equal, which the corpus makes so by
    giving those statements ranges that hold the whole live feed."""
    influx, sisock = influxql_pair
    cases = corpus(influxql_live_t0)
    equal, differences, intended = 0, [], []
    for case in cases:
        t0 = time.monotonic_ns()
        want_status, want = _ask(influx.url, case)
        got_status, got = _ask(sisock, case)
        slack = (time.monotonic_ns() - t0) + 1_000_000_000 if case.now else 0
        now_slack = _in_units(slack, case.epoch)
        problem = (f"HTTP {want_status} != {got_status}" if want_status != got_status
                   else diff(want, got, now_slack=now_slack))
        if problem is None:
            equal += 1
            continue
        listed = [i for i in INTENDED if i.applies(case.q)]
        if want_status == got_status and listed:
            expected = want
            for i in listed:
                expected = i.expect(expected, got)
            if diff(expected, got, now_slack=now_slack) is None:
                intended.append((case, problem, listed))
                continue
        differences.append((case, problem, want, got))
    report = tmp_path / "differences.txt"
    with open(report, "w", encoding="utf-8") as fh:
        for case, problem, want, got in differences:
            fh.write(f"{case.q}\n  epoch={case.epoch} db={case.db} {case.method}\n  {problem}\n"
                     f"  influxdb: {str(want)[:600]}\n  sisock:   {str(got)[:600]}\n\n")
    print(f"\n{len(cases)} statements compared: {equal} equal, {len(intended)} intended differences, "
          f"{len(differences)} other differences (details in {report})")
    for case, problem, listed in intended:
        print(f"  intended: {problem}\n    {case.q[:200]}\n    because {'; '.join(i.reason for i in listed)}")
    for case, problem, *_ in differences[:40]:
        print(f"  {problem}\n    {case.q[:200]} (epoch={case.epoch})")
    assert not differences, f"{len(differences)} statements answered differently; see {report}"


def _in_units(ns: int, epoch: str | None) -> int:
    scale = {None: 1, "ns": 1, "n": 1, "u": 1_000, "µ": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
             "h": 3600 * 10**9}[epoch]
    return -(-ns // scale) if ns else 0


def test_the_influxdb_client_reads_sisock_as_it_reads_influxdb(influxql_pair):
    """The ``influxdb`` PyPI client (what scripts and the OCS tools use),
    pointed at sisock's path, returns the same points as from InfluxDB."""
    from urllib.parse import urlsplit

    from influxdb import InfluxDBClient

    influx, sisock = influxql_pair
    url = urlsplit(sisock)
    ours = InfluxDBClient(host=url.hostname, port=url.port, path=url.path.strip("/"), database=DATABASE, timeout=60)
    theirs = influx.client(DATABASE)
    q = ('SELECT mean("ch1_t"), max("ch1_t") FROM "observatory.therm1" WHERE time >= 1700000600000ms '
         'and time <= 1700004200000ms GROUP BY time(5m), "feed" fill(null)')
    for epoch in (None, "ms", "ns"):
        want, got = theirs.query(q, epoch=epoch), ours.query(q, epoch=epoch)
        assert list(got.keys()) == list(want.keys()) and len(want.keys()) == 2  # the two feeds
        for key in want.keys():
            points = list(want.get_points(*key))
            assert len(points) == 13
            ours_points = list(got.get_points(*key))
            assert len(ours_points) == len(points) and all(map(same_point, points, ours_points)), (epoch, key)
    assert [m["name"] for m in ours.get_list_measurements()] == [m["name"] for m in theirs.get_list_measurements()]
    assert ours.ping() and theirs.ping()
    ours.close()
    theirs.close()
