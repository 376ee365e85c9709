"""SimpleJson's ``POST /query``, answered in the bridge's reactor.

Against the test router and bridge, with tests/servers/whoami.py made slow
(each answer takes ``WHOAMI_DELAY``) and counting its calls: identical
queries in flight together cost the node one call and get one answer; a
client that leaves before its answer leaves nothing behind; the routes
left to Flask still answer while the reactor waits on a slow node.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import orjson
import requests

from conftest import node_names
from procs import wait_for

WHOAMI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers", "whoami.py")
NAME = "slow_whoami"
DELAY = 1.0


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"


def body(field="calls"):
    now = time.time()
    return {"range": {"from": _iso(now - 3600), "to": _iso(now + 3600)}, "maxDataPoints": 100,
            "targets": [{"target": f"{NAME}::{field}", "refId": "A"}]}


def slow_node(stack, client, bridge):
    p = stack.python(NAME, WHOAMI, env={"NAME": NAME, "WHOAMI_DELAY": str(DELAY)}).start()
    wait_for(lambda: NAME in node_names(client), 30, f"{NAME} to be announced")

    def listed():
        r = requests.post(stack.http + "/search", json={"target": f"{NAME}::"}, timeout=5)
        return f"{NAME}::calls" in r.json()

    wait_for(listed, 30, "the bridge to list the slow node's fields")
    return p


def calls_in(answer) -> int:
    (serie,) = answer.json()
    (point,) = serie["datapoints"]
    return int(point[0])


def test_identical_queries_in_flight_share_one_call(stack, client, bridge):
    p = slow_node(stack, client, bridge)
    try:
        payload = orjson.dumps(body())
        answers, lock = [], threading.Lock()

        def ask():
            r = requests.post(stack.http + "/query", data=payload, headers={"Content-Type": "application/json"},
                              timeout=30)
            with lock:
                answers.append(r)

        askers = [threading.Thread(target=ask) for _ in range(3)]
        for t in askers:
            t.start()
        for t in askers:
            t.join(30)
        assert [a.status_code for a in answers] == [200] * 3
        assert len({a.content for a in answers}) == 1, "one computation, one answer"
        first = calls_in(answers[0])
        later = requests.post(stack.http + "/query", data=orjson.dumps(body()),
                              headers={"Content-Type": "application/json"}, timeout=30)
        assert calls_in(later) == first + 1, "the three in flight together cost the node one call"
    finally:
        p.stop()


def test_a_client_leaving_before_its_answer_leaves_nothing_behind(stack, client, bridge):
    p = slow_node(stack, client, bridge)
    try:
        host, port = stack.http.removeprefix("http://").rsplit(":", 1)
        payload = orjson.dumps(body("pid"))
        for _ in range(3):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
            time.sleep(0.1)
            s.close()  # before the node has answered
        time.sleep(DELAY * 1.5)
        r = requests.post(stack.http + "/query", data=payload, headers={"Content-Type": "application/json"},
                          timeout=30)
        assert r.status_code == 200 and r.json()[0]["datapoints"], r.text
        out = bridge.output()
        assert "Traceback" not in out and "unexpected error" not in out and "Unhandled" not in out, out[-3000:]
    finally:
        p.stop()


def test_flask_routes_answer_while_the_reactor_waits_on_a_slow_node(stack, client, bridge):
    p = slow_node(stack, client, bridge)
    try:
        done = []
        slow = threading.Thread(target=lambda: done.append(requests.post(
            stack.http + "/query", json=body("pid"), timeout=30)))
        slow.start()
        time.sleep(0.2)
        search = requests.post(stack.http + "/search", json={"target": f"{NAME}::"}, timeout=30)
        finished_first = not done
        slow.join(30)
        assert search.status_code == 200 and f"{NAME}::pid" in search.json()
        assert finished_first, "/search waited for the slow query"
        assert done[0].status_code == 200
    finally:
        p.stop()
