"""Hostile input against the real bridge and the archive servers.

- Every HTTP endpoint is fuzzed with generated bodies and parameters (random
  and Grafana-shaped JSON, wrong types, huge and non-finite numbers, deep
  nesting, unicode, invalid UTF-8, binary garbage, odd content types) and
  with malformed HTTP: no answer may be a 5xx and none may hang.
- Names with SQL metacharacters, path traversal and WAMP URI separators
  must not reach a procedure, a query or a file they should not.
- Request bodies over ``MAX_BODY_BYTES`` get a 413, at the default and at a
  configured limit, without the bridge holding the body in memory.
"""

from __future__ import annotations

import collections
import json
import math
import os
import socket
import sys
import threading
import time

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import threads
from twisted.internet.defer import inlineCallbacks

from sisock.base import uri

from procs import free_port, port_open, refused_at_start, wait_for

NODE = "apex_archive"
FIELDS = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]
POST_ENDPOINTS = ["/", "/search", "/query", "/annotations", "/tag-keys", "/tag-values", "/metrics",
                  "/metric-payload-options", "/variable"]
GET_ENDPOINTS = ["/api/v1/nodes", "/api/v1/fields", "/api/v1/data"]
#: Generated cases per endpoint: /query and /api/v1/data have the most to get wrong.
EXAMPLES = {"/query": 2000, "/api/v1/data": 1500}
DEFAULT_EXAMPLES = 800
TIMEOUT = (5, 20)  # connect, read: a request without an answer by then is a hang

HOSTILE_NAMES = [
    "../../etc/passwd", "/etc/passwd", "..", ".", "", " ", "a\x00b", "\x00", "x.y", "a..b", ".x", "x.", "x#y",
    "#", "x y", "x\ty", "x\ny", "consumer.x", "x.get_data", "*", "%", "_", "x'; DROP TABLE fields; --",
    "' OR '1'='1", "\" OR 1=1 --", "50% of _ \\", "x\\..\\..\\y", "C:\\Windows\\win.ini", "~", "~root",
    "é", "\u202e", "\ufeff", "\ud7ff", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "x" * 5000,
]
TIME_TOKENS = ["now", "now-6h", "2026-01-01T00:00:00Z", "2026-13-45T99:99:99Z", "0000-00-00",
               "9999-12-31T23:59:59+23:59", "0001-01-01T00:00:00-23:59", "1e400", "-1e400", "nan", "inf", "-inf",
               "1.5.3", "١٢٣٤٥", "²", "1" * 400, "-0", "0", "", "  ", "T", "Z"]
RAW_NUMBERS = ["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "1" * 400, "-" + "9" * 400,
               "18446744073709551616", "9223372036854775808", "-9223372036854775809", "-0", "0e0", "1E+308",
               "2.2250738585072014e-308", "5e-324", "0.1e1000000000000", "00", "01", "+1", ".5", "1.", "0x10"]
CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8", "application/json; charset=utf-16",
                 "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
                 "multipart/form-data", "application/octet-stream", "", "*/*", "garbage", "text/html; q=nan",
                 "application/json;;;;=", "a" * 2000]
ACCEPTS = [None, "application/json", "text/html", "text/html;q=nan", "*/*;q=1e999", "text/html;q=-1", ",,,",
           "text/html, application/json;q=0.9", "\x7f", "é"]


def _json_value(finite=True):
    leaves = (st.none() | st.booleans() | st.integers(-(2**80), 2**80)
              | st.floats(allow_nan=not finite, allow_infinity=not finite) | st.text(max_size=30)
              | st.sampled_from(HOSTILE_NAMES))
    return st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                        max_leaves=12)


# Deferred, so that the strategies built from them keep a short repr.
JSON = st.deferred(_json_value)
JSON_ANY = st.deferred(lambda: _json_value(finite=False))  # NaN and inf floats: encoded as NaN/Infinity tokens


def _now_ms():
    return int(time.time() * 1000)


def _times():
    now = _now_ms()
    return st.one_of(
        st.integers(now - 30 * 86400_000, now),
        st.integers(now - 30 * 86400_000, now).map(lambda ms: time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                              time.gmtime(ms / 1000))),
        st.sampled_from(TIME_TOKENS), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=30), JSON,
    )


def _metric_names():
    real = [f"{NODE}::{f}" for f in FIELDS]
    return st.one_of(
        st.sampled_from(real), st.sampled_from(real),
        st.sampled_from(HOSTILE_NAMES).map(lambda n: f"{n}::x"),
        st.sampled_from(HOSTILE_NAMES).map(lambda n: f"{NODE}::{n}"),
        st.tuples(st.text(max_size=12), st.text(max_size=12)).map("::".join),
        st.text(max_size=40), st.just("*::*"), st.just("::"), st.just(f"{NODE}::"),
    )


def _maybe(strategy):
    return st.one_of(st.just(None), strategy)


def _object(**fields):
    """A dict with each key present or not; absent keys are dropped."""
    return st.fixed_dictionaries({}, optional={k: v for k, v in fields.items()})


def _target():
    return st.one_of(
        _object(target=st.one_of(_metric_names(), _metric_names(), JSON), refId=st.one_of(st.text(max_size=5), JSON),
                type=st.one_of(st.sampled_from(["timeserie", "timeseries", "table", "TABLE", ""]), JSON),
                hide=st.one_of(st.booleans(), JSON)),
        JSON,
    )


def _plain_target():
    return st.fixed_dictionaries({"target": _metric_names()}, optional={
        "refId": st.text(max_size=5), "type": st.sampled_from(["timeserie", "table"])})


def _query_body():
    return _object(
        range=st.one_of(_object(**{"from": _times(), "to": _times()}), JSON),
        maxDataPoints=st.one_of(st.integers(-10, 2_000_000), st.integers(-(2**70), 2**70), st.floats(), JSON),
        intervalMs=st.one_of(st.integers(-10, 10**9), st.floats(), st.just(1e-300), st.just(5e-324), JSON),
        interval=st.one_of(st.sampled_from(["1ms", "30s", "5m", "1h", "0s", "0.0000001ms", "9" * 400 + "y", "1e9y",
                                            "١٢s", " 1 m ", "m", "1x"]), JSON),
        targets=st.one_of(st.lists(_target(), max_size=6), JSON),
        adhocFilters=JSON, scopedVars=JSON,
    )


def _working_query_body():
    """A query that parses (a real range), with the rest still generated,
    so the data path behind the parsing is fuzzed too."""
    now = _now_ms()
    ranges = st.tuples(st.integers(now - 30 * 86400_000, now), st.integers(1, 3 * 86400_000)).map(
        lambda r: {"from": r[0] - r[1], "to": r[0]})
    return st.fixed_dictionaries(
        {"range": ranges, "targets": st.lists(st.one_of(_target(), _plain_target(), _plain_target()), max_size=6)},
        optional={"maxDataPoints": st.one_of(st.integers(1, 5000), st.integers(-(2**70), 2**70), st.floats(), JSON),
                  "intervalMs": st.one_of(st.integers(1, 10**7), st.floats(), JSON),
                  "interval": st.one_of(st.sampled_from(["1s", "30s", "5m", "1h"]), JSON)},
    )


SHAPED = {
    "/": JSON,
    "/search": _object(target=st.one_of(_metric_names(), JSON)),
    "/query": st.one_of(_query_body(), _working_query_body(), _working_query_body()),
    "/annotations": _object(annotation=JSON, range=JSON, rangeRaw=JSON),
    "/tag-keys": JSON,
    "/tag-values": _object(key=JSON),
    "/metrics": _object(metric=st.one_of(_metric_names(), JSON), payload=JSON),
    "/metric-payload-options": _object(metric=st.one_of(_metric_names(), JSON), payload=JSON, name=JSON),
    "/variable": _object(payload=st.one_of(_object(target=st.one_of(_metric_names(), st.just("*"), JSON)), JSON),
                         range=JSON),
}


def _encodings(text: str):
    return st.sampled_from([
        lambda s: s.encode("utf-8", "surrogatepass"),
        lambda s: b"\xef\xbb\xbf" + s.encode("utf-8", "surrogatepass"),
        lambda s: s.encode("utf-16", "surrogatepass"),
        lambda s: s.encode("latin-1", "replace"),
    ]).map(lambda encode: encode(text))


def _serialized(value_strategy):
    """Valid JSON mostly; NaN/Infinity tokens or invalid UTF-8 when the value asks for it."""
    return st.tuples(value_strategy, st.booleans()).flatmap(
        lambda pair: _encodings(json.dumps(pair[0], allow_nan=True, ensure_ascii=pair[1])))


def _with_raw_number(value_strategy):
    """A shaped body with one number replaced by a raw token (``1e999``, ``NaN``, 400 digits, ...)."""
    def substitute(args):
        value, token = args
        marker = '"\\u0000MARK"'
        if isinstance(value, dict) and value:
            key = sorted(value)[0]
            text = json.dumps({**value, key: "\x00MARK"}, allow_nan=True)
        else:
            text = json.dumps([value, "\x00MARK"], allow_nan=True)
        return text.replace(marker, token).encode()
    return st.tuples(value_strategy, st.sampled_from(RAW_NUMBERS)).map(substitute)


def _deep():
    """Nesting up to 20,000 levels, left open or closed."""
    def build(args):
        depth, opener, closed = args
        return (opener * depth + ("1" + _closing(opener) * depth if closed else "")).encode()
    return st.tuples(st.integers(1, 20_000), st.sampled_from(["[", "{\"a\":", "[{\"b\":", " [ "]),
                     st.booleans()).map(build)


def _closing(opener: str) -> str:
    return "".join({"[": "]", "{": "}"}[c] for c in reversed(opener) if c in "[{")


def _bodies(path):
    shaped = SHAPED[path]
    plain = shaped.map(lambda v: json.dumps(v).encode())
    return st.one_of(
        plain, plain, _serialized(shaped), _serialized(shaped), _serialized(JSON_ANY), _with_raw_number(shaped),
        _deep(),
        st.binary(max_size=300), st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"", b" ", b"\n", b"null", b"[]", b"{}", b"\"\"", b"0", b"true", b"{\"a\": NaN}",
                         b"1e999", b"{\"range\": {\"from\": 1e999, \"to\": NaN}}", b"\x00", b"\xff\xfe\x00{",
                         b"{\"targets\": [" + b"{}," * 5000 + b"{}]}"]),
    )


def _headers():
    return st.fixed_dictionaries({}, optional={"Content-Type": st.sampled_from(CONTENT_TYPES),
                                               "Accept": st.sampled_from(ACCEPTS)}).map(
        lambda h: {k: v for k, v in h.items() if v is not None})


# -- GET parameters ------------------------------------------------------------------------------

PARAM_NAMES = ["target", "from", "to", "maxDataPoints", "intervalMs", "format", "node", "q"]
PARAM_VALUES = ["nan", "inf", "-inf", "1e999", "-1e999", "1e-999", "-0", "0", "-1", "9" * 400, "18446744073709551616",
                "0x10", "1_000", "rows", "columns", "ROWS", "*::*", "*", "[", "[!", "[]]", "*" * 300 + "::*",
                "?" * 200, "apex_archive::*", "apex_archive::[a-z]*", f"{NODE}::apex_temperature", "::", "a::",
                "::b", "\x00", "%00"]


def _param_value():
    return st.one_of(st.sampled_from(PARAM_VALUES), st.sampled_from(TIME_TOKENS), st.sampled_from(HOSTILE_NAMES),
                     _metric_names(), st.text(max_size=40),
                     st.integers(_now_ms() - 30 * 86400_000, _now_ms()).map(str), st.floats().map(repr))


def _params():
    names = st.one_of(st.sampled_from(PARAM_NAMES), st.sampled_from(PARAM_NAMES), st.text(max_size=8))
    return st.lists(st.tuples(names, _param_value()), max_size=8)


def _working_params():
    """``/api/v1/data`` parameters with a real range and target-like names, the rest generated."""
    now = _now_ms()
    return st.tuples(
        st.lists(_metric_names().map(lambda n: ("target", n)), min_size=1, max_size=3),
        st.tuples(st.integers(now - 30 * 86400_000, now), st.integers(1, 3 * 86400_000)).map(
            lambda r: [("from", str(r[0] - r[1])), ("to", str(r[0]))]),
        _params().map(lambda p: p[:2]),
    ).map(lambda parts: parts[0] + parts[1] + parts[2])


def _clean_params():
    """What a Grafana panel sends: real (or glob) targets, a range, a resolution, a format."""
    now = _now_ms()
    targets = st.sampled_from([f"{NODE}::{f}" for f in FIELDS] + [f"{NODE}::*", "*::*temp*", f"{NODE}::nothing"])
    return st.tuples(
        st.lists(targets.map(lambda n: ("target", n)), min_size=1, max_size=3),
        st.tuples(st.integers(now - 30 * 86400_000, now), st.integers(1, 3 * 86400_000)).map(
            lambda r: [("from", str(r[0] - r[1])), ("to", str(r[0]))]),
        st.lists(st.one_of(st.integers(1, 5000).map(lambda n: ("maxDataPoints", str(n))),
                           st.integers(1, 10**7).map(lambda n: ("intervalMs", str(n))),
                           st.sampled_from([("format", "rows"), ("format", "columns")])), max_size=2),
    ).map(lambda parts: parts[0] + parts[1] + parts[2])


def _raw_query():
    """Query strings requests would never send: bad percent-escapes and separators."""
    return st.lists(st.sampled_from(["%", "%z", "%zz", "%ff", "%fe%ff", "%00", "%c0%af", "%2e%2e%2f", "&", "=", ";",
                                     "target", "from", "to", "q", "node", "format", "%3A%3A", "::", "+", "%2B", "[]",
                                     "maxDataPoints", "1e999", "nan", "*"]), max_size=20).map("".join)


# -- fuzzing ---------------------------------------------------------------------------------------

class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_endpoint: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def add(self, endpoint, status):
        with self.lock:
            self.by_endpoint[endpoint][status] += 1

    def total(self) -> int:
        return sum(sum(c.values()) for c in self.by_endpoint.values())


def _check_answer(r, what):
    """No 5xx, and every answer the application gives is JSON; a 4xx says why in one line."""
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    if r.headers.get("Content-Type", "").startswith("text/html"):
        return
    assert r.headers.get("Content-Type", "").startswith("application/json"), (what, r.status_code, r.headers)
    body = r.json()
    if r.status_code >= 400:
        message = body["message"]
        assert message and "\n" not in message and "Traceback" not in message, (what, message)


def _exchange(tally, path, what, send):
    """One request: counted, never a hang, never a 5xx or a traceback."""
    try:
        r = send()
    except requests.Timeout:
        tally.add(path, "hang")
        raise AssertionError(f"{what}: no answer in time") from None
    tally.add(path, r.status_code)
    _check_answer(r, what)


def _run_then_close(fuzz, session):
    def run():
        try:
            fuzz()
        finally:
            session.close()
    return run


def _post_fuzzer(base, path, tally, examples):
    session = requests.Session()

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_bodies(path), _headers())
    def fuzz(body, headers):
        _exchange(tally, path, f"POST {path} {body[:200]!r} {headers}",
                  lambda: session.post(base + path, data=body, headers=headers, timeout=TIMEOUT))

    return _run_then_close(fuzz, session)


def _get_fuzzer(base, path, tally, examples):
    session = requests.Session()

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(_params(), _params(), _working_params(), _working_params(), _clean_params(), _clean_params(),
                     _raw_query()), _headers())
    def fuzz(params, headers):
        def send():
            if isinstance(params, str):
                prepared = session.prepare_request(requests.Request("GET", base + path, headers=headers))
                prepared.url = f"{base}{path}?{params}"  # as written, not re-quoted
                return session.send(prepared, timeout=TIMEOUT)
            return session.get(base + path, params=params, headers=headers, timeout=TIMEOUT)

        _exchange(tally, path, f"GET {path} {params!r} {headers}", send)

    return _run_then_close(fuzz, session)


@pytest.mark.slow
# The session's WAMP client runs a reactor thread in this process whose use of
# the random module Hypothesis may notice while drawing; the strategies use none.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_fuzz_every_endpoint(stack, bridge):
    tally = Tally()
    jobs = [_post_fuzzer(stack.http, p, tally, EXAMPLES.get(p, DEFAULT_EXAMPLES)) for p in POST_ENDPOINTS]
    jobs += [_get_fuzzer(stack.http, p, tally, EXAMPLES.get(p, DEFAULT_EXAMPLES)) for p in GET_ENDPOINTS]
    # One after the other: Hypothesis draws examples under the GIL, so
    # threads gain little, and tests in several threads share random state.
    started = time.monotonic()
    errors = []
    for job in jobs:
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - reported after every endpoint had its turn
            errors.append(exc)
    elapsed = time.monotonic() - started
    print(f"\nfuzzing {len(jobs)} endpoints: {tally.total()} requests in {elapsed:.1f} s")
    for path in POST_ENDPOINTS + GET_ENDPOINTS:
        counts = tally.by_endpoint[path]
        method = "GET " if path in GET_ENDPOINTS else "POST"
        print(f"  {method} {path:26s} {sum(counts.values()):6d}  {dict(sorted(counts.items(), key=str))}")
    for error in errors:
        raise error
    assert tally.total() >= 10_000
    assert not any(status == "hang" or status >= 500 for c in tally.by_endpoint.values() for status in c)
    assert requests.get(stack.http + "/", timeout=5).status_code == 200  # and the bridge is still serving


# Bodies named in the issue, each sent to every POST endpoint.
NAMED_BODIES = {
    "10,000 levels of [": b"[" * 10_000,
    "10,000 levels, closed": b"[" * 10_000 + b"]" * 10_000,
    "100,000 levels of {": b'{"a":' * 100_000,
    "NaN": b'{"a": NaN}',
    "1e999": b"1e999",
    "range of 1e999": b'{"range": {"from": 1e999, "to": -1e999}, "targets": [{"target": "apex_archive::x"}]}',
    "huge integer": b'{"range": {"from": ' + b"9" * 4000 + b', "to": 1}, "maxDataPoints": ' + b"9" * 4000 + b"}",
    "u64 integer": b'{"range": {"from": 18446744073709551615, "to": 18446744073709551616}}',
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "lone surrogate": b'{"target": "\\ud800"}',
    "invalid UTF-8": b'{"target": "\xc0\xaf"}',
    "NUL in string": b'{"target": "a\\u0000b", "metric": "\\u0000"}',
    "UTF-16": '{"target": "x"}'.encode("utf-16"),
}


@pytest.mark.parametrize("path", POST_ENDPOINTS)
def test_named_hostile_bodies(stack, bridge, path):
    statuses = {}
    for name, body in NAMED_BODIES.items():
        r = requests.post(stack.http + path, data=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
        statuses[name] = r.status_code
        _check_answer(r, f"{path} {name}")
    print(f"\nPOST {path}: {statuses}")
    if path == "/query":
        assert all(400 <= s < 500 for s in statuses.values()), statuses


def test_query_numbers_at_the_edges(stack, bridge):
    """Numbers that overflow or vanish when converted give 400 or a bounded answer, never 500."""
    now = _now_ms()
    base = {"range": {"from": now - 3600_000, "to": now}, "targets": [{"target": f"{NODE}::apex_pressure"}]}
    cases = [{"intervalMs": 1e-300}, {"intervalMs": 5e-324}, {"intervalMs": 1e308}, {"interval": "0.0000001ms"},
             {"interval": "9" * 400 + "y"}, {"maxDataPoints": 1e308}, {"maxDataPoints": 2**64},
             {"maxDataPoints": 0.5}, {"intervalMs": 2**64}]
    for extra in cases:
        r = requests.post(stack.http + "/query", json={**base, **extra}, timeout=TIMEOUT)
        _check_answer(r, extra)
        if r.status_code == 200:
            (series,) = r.json()
            assert len(series["datapoints"]) <= 1_000_000
    # The case that used to be a 500: an interval so small the point count overflows to infinity.
    r = requests.post(stack.http + "/query", json={**base, "intervalMs": 1e-300}, timeout=TIMEOUT)
    assert r.status_code == 200 and len(r.json()[0]["datapoints"]) > 0
    r = requests.get(stack.http + "/api/v1/data", params={"target": f"{NODE}::apex_pressure", "intervalMs": "1e-300",
                                                          "from": str(now - 3600_000), "to": str(now)}, timeout=TIMEOUT)
    assert r.status_code == 200 and len(r.json()) > 0


RAW_REQUESTS = [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 1000 + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n",
    b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n{}",
    b"POST /query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00",
    b"POST /search HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /static/../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /static/%2e%2e/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /static/..%2f..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /static/%00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /static//etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"BREW /query HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/data?target=" + b"%" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nAccept: " + b"text/html;q=0.5," * 500 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\xff\xfe: \x00\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS hello on the plain port
]


def _raw_exchange(port, payload, timeout=10.0) -> bytes:
    """The start of the bridge's answer to ``payload``, or b"" if it closed
    without one. A request that is incomplete as sent (a body shorter than
    its length) may rightly wait for more: then the client ends its side
    and the bridge must close. Either way nothing may hang."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            return b""  # refused while sending
        sock.settimeout(3.0)
        try:
            first = sock.recv(65536)
            return first
        except TimeoutError:
            pass
        except ConnectionResetError:
            return b""
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(timeout)
        try:
            return sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no answer and no close within {timeout} s for {payload[:80]!r}") from None
        except ConnectionResetError:
            return b""


def test_overlong_url_and_header_are_answered(stack, bridge):
    r = requests.get(stack.http + "/api/v1/data", params={"target": "x" * 20_000}, timeout=TIMEOUT)
    assert r.status_code == 414 and "request line" in r.json()["message"]
    r = requests.get(stack.http + "/api/v1/nodes", headers={"X-Big": "b" * 20_000}, timeout=TIMEOUT)
    assert r.status_code == 431 and "header" in r.json()["message"]
    r = requests.get(stack.http + "/api/v1/data", params={"target": f"{NODE}::apex_pressure", "q": "x" * 15_000},
                     timeout=TIMEOUT)
    assert r.status_code == 200  # long, but within the line limit


def test_malformed_http(stack, bridge):
    statuses = collections.Counter()
    for payload in RAW_REQUESTS:
        answer = _raw_exchange(stack.http_port, payload)
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else "closed"
        statuses[status] += 1
        assert status == "closed" or status < 500, (payload[:100], answer[:300])
        if b"passwd" in payload:  # 404, or a redirect to /static/etc/passwd for a doubled slash
            assert b"root:" not in answer and b"Location: /static/.." not in answer, (payload, answer[:300])
            assert status == 404 or status == 308 and b"/static/etc/passwd\r\n" in answer, answer[:300]
    print(f"\n{len(RAW_REQUESTS)} malformed requests: {dict(sorted(statuses.items(), key=str))}")
    assert requests.get(stack.http + "/", timeout=5).status_code == 200


# -- names that must not reach another procedure, query or file ------------------------------------

URI_HOSTILE_NODES = ["trap.secret", "trap..x", "trap.", "trap#", "trap.#", "trap x", "trap\tx", "trap\x00x",
                     "trap\nx", "trap.secret.get_fields.x", "trap" + "x" * 300]


class _Trap:
    """Procedures registered with prefix matching under ``consumer.trap``:
    any call the bridge makes into that part of the URI space lands here."""

    def __init__(self, client):
        self.client = client
        self.calls = []
        self.registrations = []

    @inlineCallbacks
    def _register(self):
        from autobahn.wamp.types import RegisterOptions

        session = self.client.link.session

        def record(*args, details=None, **kwargs):
            self.calls.append(details.procedure if details else None)
            return {"data": {}, "timeline": {}}

        reg = yield session.register(record, uri("consumer.trap"),
                                     options=RegisterOptions(match="prefix", details_arg="details"))
        self.registrations.append(reg)

    def __enter__(self):
        threads.blockingCallFromThread(self.client.link.reactor, self._register)
        return self

    def __exit__(self, *exc):
        for reg in self.registrations:
            threads.blockingCallFromThread(self.client.link.reactor, reg.unregister)


def _query(stack, targets, span=3600.0):
    end = time.time()
    body = {"range": {"from": (end - span) * 1000, "to": end * 1000}, "maxDataPoints": 100,
            "targets": [{"target": t, "refId": str(i)} for i, t in enumerate(targets)]}
    return requests.post(stack.http + "/query", json=body, timeout=TIMEOUT)


def test_node_names_stay_one_uri_component(stack, bridge, client):
    with _Trap(client) as trap:
        # A valid name under the trap is called: the trap works.
        r = _query(stack, ["trapvalid::f"])
        assert r.status_code == 200 and r.json()[0]["datapoints"] == []
        asked = ("consumer.trapvalid.get_data", "consumer.trapvalid.get_data_packed")
        assert any(p.endswith(asked) for p in trap.calls), trap.calls
        trap.calls.clear()
        # Names that are not one URI component are never called: empty series, as for an unknown node.
        r = _query(stack, [f"{n}::f" for n in URI_HOSTILE_NODES] + [f"{NODE}::apex_pressure"])
        assert r.status_code == 200
        answer = r.json()
        assert [s["target"] for s in answer] == [f"{n}::f" for n in URI_HOSTILE_NODES] + [f"{NODE}::apex_pressure"]
        assert all(s["datapoints"] == [] for s in answer[:-1]) and len(answer[-1]["datapoints"]) > 0
        # ... nor through the REST API or the JSON datasource's endpoints.
        for name in URI_HOSTILE_NODES:
            r = requests.get(stack.http + "/api/v1/data", params={"target": f"{name}::f"}, timeout=TIMEOUT)
            assert r.status_code in (400, 404), (name, r.status_code)
            r = requests.get(stack.http + "/api/v1/fields", params={"node": name}, timeout=TIMEOUT)
            assert r.status_code == 404, (name, r.status_code)
            r = requests.post(stack.http + "/variable", json={"payload": {"target": f"{name}::"}}, timeout=TIMEOUT)
            assert r.status_code == 200 and r.json() == []
        time.sleep(0.5)
        assert trap.calls == [], trap.calls


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_field_names_through_the_bridge(stack, bridge, name):
    r = _query(stack, [f"{NODE}::{name}", f"{NODE}::apex_pressure"])
    assert r.status_code == 200
    hostile, good = r.json()
    assert hostile["datapoints"] == [] and len(good["datapoints"]) > 0
    r = requests.get(stack.http + "/api/v1/data", params={"target": f"{NODE}::{name}"}, timeout=TIMEOUT)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json() == [] or "*" in name or "?" in name or "[" in name  # globs may match real fields


SENTINEL_VALUE = 123456.0


@pytest.fixture(scope="module")
def archive_servers(stack, client, tmp_path_factory):
    """apex-weather and ucsc-radiometer on a small archive, with sentinel
    files that would parse placed just outside it."""
    from sisock.demo import archives as demo

    from conftest import node_names
    from procs import Proc

    root = tmp_path_factory.mktemp("hostile-archives")
    data = root / "data"
    data.mkdir()
    start = time.time() - 2 * 86400
    demo.write_apex(data, start, start + 86400)
    demo.write_ucsc(data, start, start + 86400)
    rows = "".join(f"{start + i * 60:.0f} {SENTINEL_VALUE}\n" for i in range(100))
    days = "".join(f"{1 + i / 100:.4f} {SENTINEL_VALUE}\n" for i in range(100))
    year = time.gmtime(start).tm_year
    sentinels = {
        root / f"APEX_passwd_0_{2**32}.dat": rows,           # next to DATA_DIRECTORY
        data / f"APEX_passwd_0_{2**32}.dat": rows,           # inside it, outside the archive's folder
        root / "passwd": rows,
        root / f"PWV_UCSC_{year}-001.txt": "header\n" + days,
        data / f"PWV_UCSC_{year}-001.txt": "header\n" + days,
    }
    for path, text in sentinels.items():
        path.write_text(text)
    procs = []
    for name, module in (("hostile-apex", "sisock.servers.apex_weather"),
                         ("hostile-ucsc", "sisock.servers.radiometer")):
        p = Proc(name, [sys.executable, "-m", module],
                 env={**stack.env, "DATA_DIRECTORY": str(data)}, cwd=stack.root, logdir=stack.logdir)
        stack.procs.append(p)
        procs.append(p.start())
    wait_for(lambda: {"apex_weather", "ucsc_radiometer"} <= node_names(client), 30, "both archive servers")
    yield {"root": root, "data": data, "start": start, "sentinels": sentinels}
    for p in procs:
        p.stop()


def _traversals(root, data, sentinels):
    names = list(HOSTILE_NAMES)
    for path in sentinels:
        names += [str(path), os.path.relpath(path, data / "targets"), os.path.relpath(path, data / "PWV"),
                  os.path.relpath(path, data), path.name, path.stem, "passwd", f"../{path.name}",
                  f"../../{path.name}", f"targets/../../{path.name}", f"{path}\x00.dat"]
    return list(dict.fromkeys(names))


def test_archive_servers_never_serve_files_outside(client, archive_servers):
    a = archive_servers
    names = _traversals(a["root"], a["data"], a["sentinels"])
    for node in ("apex_weather", "ucsc_radiometer"):
        reply = client.get_data(node, names, 1, 2**32)
        assert reply["timeline"] == {}, (node, reply["timeline"].keys())
        assert all(len(v) == 0 for v in reply["data"].values())
        field, _ = client.fields(node, 1, 2**32)
        assert "passwd" not in field
        everything = client.data(node, list(field), 1, 2**32)
        assert all(SENTINEL_VALUE not in s.values for s in everything.values())


def test_archive_field_names_open_nothing_outside(archive_servers):
    """In process, with an audit hook: whatever the field names, every file
    the server opens or lists lies inside DATA_DIRECTORY."""
    from sisock.servers.apex_weather import ApexWeatherServer
    from sisock.servers.radiometer import RadiometerServer
    from sisock.servers.text_archive import TextArchive

    a = archive_servers
    data = os.path.realpath(a["data"])
    names = _traversals(a["root"], a["data"], a["sentinels"])
    for server_type in (ApexWeatherServer, RadiometerServer):
        server = server_type(archive=TextArchive(str(a["data"]), server_type.layout))
        with _opened() as opened:
            reply = server.answer_get_data(names, 1, 2**32)
            server.answer_get_fields(1, 2**32)
        assert all(len(v) == 0 for v in reply["data"].values()) and reply["timeline"] == {}
        assert _outside(opened, "/nowhere"), "the audit hook saw nothing: the test would prove nothing"
        outside = _outside(opened, data)
        assert outside == [], outside


def test_weather_server_with_hostile_names(client, weather):
    reply = client.get_data(NODE, HOSTILE_NAMES, 1, 2**32)
    assert reply["timeline"] == {} and all(len(v) == 0 for v in reply["data"].values())


def test_g3_reader_names_are_data_not_sql_or_paths(tmp_path):
    """The g3-reader's names go into bound parameters: SQL metacharacters,
    LIKE wildcards and paths match nothing and change nothing."""
    pytest.importorskip("so3g")
    from sisock.servers.g3_reader import G3Reader

    from g3_helpers import START, archive, make_archive, scan

    env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
    data = tmp_path / "data"
    _, truth = make_archive(data, hours=1)
    scan(env, data)
    server = G3Reader(archive=archive(env, data))
    counts = server.archive.index.counts()
    real = sorted(truth)[0]
    names = HOSTILE_NAMES + [real + "' OR '1'='1", real[:-3] + "%", real[:-3] + "___", "%", "%%", "_",
                             "observatory.%", f"{real}; DROP TABLE files; --", str(data / "17000"), "../state"]
    with _opened() as opened:
        for stride in (None, 60.0):
            reply = server.answer_get_data(names, START, START + 3600, stride)
            assert reply["timeline"] == {} and all(len(v) == 0 for v in reply["data"].values())
    outside = _outside(opened, str(tmp_path))
    assert outside == [], outside
    assert server.archive.index.counts() == counts
    assert server.answer_get_data([real], START, START + 3600)["data"][real]  # the index still works


_AUDIT = {"recording": None}


def _audit(event, args):
    recording = _AUDIT["recording"]
    if recording is not None and event in ("open", "os.scandir", "os.listdir") and args and args[0] is not None:
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)):
            recording.append(os.fsdecode(path))


sys.addaudithook(_audit)


#: Python's own files (a module imported lazily during a call), not data.
_CODE = tuple(os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})


def _outside(paths, root):
    """``paths`` not inside ``root``, leaving out Python's own code."""
    root = os.path.realpath(root)
    out = []
    for path in paths:
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) == root:
            continue
        if real.endswith((".py", ".pyc", ".so")) and real.startswith(_CODE) or real.startswith(("/proc/", "/sys/")):
            continue
        out.append(path)
    return out


class _opened:
    """Paths opened or listed by Python code in this process meanwhile."""

    def __enter__(self):
        self.paths = []
        _AUDIT["recording"] = self.paths
        return self.paths

    def __exit__(self, *exc):
        _AUDIT["recording"] = None


# -- request bodies over the limit -----------------------------------------------------------------

MIB = 1024 * 1024


def _search_body(size: int) -> bytes:
    """A valid /search body of exactly ``size`` bytes."""
    head = b'{"target": "apex_archive::apex_radio"'
    return head + b" " * (size - len(head) - 1) + b"}"


def _assert_413(r, limit):
    assert r.status_code == 413, (r.status_code, r.text[:200])
    message = r.json()["message"]
    assert "\n" not in message and str(limit) in message and "MAX_BODY_BYTES" in message


def _chunks(total: int, piece: int = 64 * 1024):
    sent = 0
    while sent < total:
        n = min(piece, total - sent)
        sent += n
        yield b" " * n


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_body_limit_default(stack, bridge):
    r = requests.post(stack.http + "/search", data=_search_body(MIB), timeout=TIMEOUT)
    assert r.status_code == 200 and r.json() == [f"{NODE}::apex_radiometer"]
    _assert_413(requests.post(stack.http + "/search", data=_search_body(MIB + 1), timeout=TIMEOUT), MIB)
    _assert_413(requests.get(stack.http + "/api/v1/nodes", data=b"x" * (MIB + 1), timeout=TIMEOUT), MIB)
    # Chunked (no Content-Length): counted as it arrives, and within the limit it still reaches Flask.
    chunks = iter([b'{"target": ', b'"apex_archive::apex_radio"}'])
    r = requests.post(stack.http + "/search", data=chunks, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json() == [f"{NODE}::apex_radiometer"]
    pid = bridge.popen.pid
    before = _rss_kib(pid)
    started = time.monotonic()
    for _ in range(2):
        _assert_413(requests.post(stack.http + "/search", data=_chunks(64 * MIB), timeout=60), MIB)
        _assert_413(requests.post(stack.http + "/query", data=b" " * (64 * MIB), timeout=60), MIB)
    grown = _rss_kib(pid) - before
    print(f"\n4 bodies of 64 MiB refused in {time.monotonic() - started:.2f} s; bridge RSS grew {grown} KiB")
    assert grown < 32 * 1024, "the bridge kept refused bodies in memory"
    assert requests.get(stack.http + "/", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def small_bridge(stack, client, weather):
    port = free_port()
    p = stack.proc("http-small-limits", "sisock-http",
                   env={"PORT": str(port), "MAX_BODY_BYTES": "1000", "MAX_ANSWER_POINTS": "5000"}).start()
    url = f"http://127.0.0.1:{port}"

    def ready():
        r = requests.post(url + "/search", json={"target": NODE}, timeout=2)
        return r.status_code == 200 and r.json()

    wait_for(ready, 30, "the small-limit bridge to list apex_archive")
    yield url
    p.stop()


def test_body_limit_configured(small_bridge):
    r = requests.post(small_bridge + "/search", data=_search_body(1000), timeout=TIMEOUT)
    assert r.status_code == 200 and r.json() == [f"{NODE}::apex_radiometer"]
    for path in POST_ENDPOINTS:
        _assert_413(requests.post(small_bridge + path, data=_search_body(1001), timeout=TIMEOUT), 1000)
    _assert_413(requests.post(small_bridge + "/search", data=_chunks(1001, 100), timeout=TIMEOUT), 1000)
    r = requests.post(small_bridge + "/search", data=_chunks(999, 100), timeout=TIMEOUT)
    assert r.status_code != 413


def test_answer_allowance_is_judged_on_what_the_range_holds(stack, bridge, small_bridge):
    now = _now_ms()

    def body(span_ms, targets, max_points):
        return {"range": {"from": now - span_ms, "to": now}, "maxDataPoints": max_points,
                "targets": [{"target": f"{NODE}::{t}"} for t in targets]}

    # A huge maxDataPoints over a short window holds only what the window has.
    short = body(3600_000, ["apex_pressure", "apex_pressure"], 10**8)
    r = requests.post(small_bridge + "/query", json=short, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert 0 < sum(len(s["datapoints"]) for s in r.json()) < 5000
    # An answer that really holds more than 5000 points is refused, with the limit named.
    fields = ["apex_pressure", "apex_humidity", "apex_temperature", "apex_windspeed", "apex_radiometer"]
    for days in (1, 7, 30, 365):
        wide = body(days * 86400_000, fields, 10**6)
        full = requests.post(stack.http + "/query", json=wide, timeout=TIMEOUT).json()
        if sum(len(s["datapoints"]) for s in full) > 5000:
            break
    else:
        pytest.fail("the test archive holds too few samples to exceed the allowance")
    r = requests.post(small_bridge + "/query", json=wide, timeout=TIMEOUT)
    assert r.status_code == 400 and "5000" in r.json()["message"], r.text
    # The same range at a panel's resolution fits.
    r = requests.post(small_bridge + "/query", json={**wide, "maxDataPoints": 500}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    r = requests.get(small_bridge + "/api/v1/data", timeout=TIMEOUT,
                     params={"target": f"{NODE}::*", "maxDataPoints": "1000000", "from": str(now - days * 86400_000),
                             "to": str(now)})
    assert r.status_code == 400 and "5000" in r.json()["message"]


@pytest.mark.parametrize("env,words", [
    ({"MAX_BODY_BYTES": "lots"}, ["MAX_BODY_BYTES", "whole number"]),
    ({"MAX_BODY_BYTES": "0"}, ["MAX_BODY_BYTES", "at least 1"]),
    ({"MAX_ANSWER_POINTS": "-5"}, ["MAX_ANSWER_POINTS", "at least 1"]),
])
def test_bad_limits_refused_at_start(stack, env, words):
    line = refused_at_start("sisock-http", {**stack.env, "PORT": str(free_port()), **env})
    assert all(w in line for w in words), line


def test_the_bridge_survived(stack, bridge):
    """After everything above, the session bridge still answers and is not wedged."""
    assert port_open(stack.http_port)
    r = _query(stack, [f"{NODE}::apex_pressure"])
    assert r.status_code == 200 and len(r.json()[0]["datapoints"]) > 0
    assert not math.isnan(np.mean([p[0] for p in r.json()[0]["datapoints"]]))
