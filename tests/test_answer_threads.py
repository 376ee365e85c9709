"""Data answers in a server's own pool of threads (``answer_threads``).

A server that sets it computes ``get_data`` answers in that many threads,
however many calls the router hands it at once, while ``get_fields`` keeps
Twisted's pool and is answered meanwhile. Checked against the test router
with tests/servers/whoami.py, whose answers say how many of them were in
progress at once and in which thread; a server that sets nothing runs them
side by side, as before. The g3-reader's setting (``G3_THREADS``) is
checked like every other setting.
"""

from __future__ import annotations

import os
import threading

import pytest

from sisock import connect, runtime
from sisock.servers.g3_reader import DEFAULT_THREADS, G3Reader

from conftest import node_names
from procs import wait_for

WHOAMI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers", "whoami.py")
CALLS = 6
DELAY = 0.4


def ask_together(client, name, fields, calls=CALLS):
    """``calls`` get_data calls in flight at once; their replies, and
    ``get_fields`` asked once the first reply is in, with the order in
    which all of them came back."""
    order, replies, lock = [], [], threading.Lock()

    def ask():
        reply = client.get_data(name, fields, -60, 0)
        with lock:
            replies.append(reply)
            order.append("data")

    askers = [threading.Thread(target=ask) for _ in range(calls)]
    for t in askers:
        t.start()
    wait_for(lambda: replies, 30, "the first answer")
    client.fields(name)
    with lock:
        order.append("fields")
    for t in askers:
        t.join(30)
    return replies, order


def serve(stack, client, name, **env):
    p = stack.python(name, WHOAMI, env={"NAME": name, "WHOAMI_DELAY": str(DELAY), **env}).start()
    wait_for(lambda: name in node_names(client), 30, f"{name} to be announced")
    return p


def test_answers_run_in_the_servers_pool_and_get_fields_does_not_wait(stack, client):
    p = serve(stack, client, "pooled", ANSWER_THREADS="2")
    try:
        replies, order = ask_together(client, "pooled", ["peak", "thread"])
    finally:
        p.stop()
    assert len(replies) == CALLS
    assert max(r["data"]["peak"][0] for r in replies) == 2, "never more answers at once than threads"
    assert {r["data"]["thread"][0].rsplit("-", 1)[0] for r in replies} == {"PoolThread-sisock-answers-2"}
    # Six answers of 0.4 s in two threads take 1.2 s; fields are asked after the first 0.4 s.
    assert order.index("fields") < CALLS - 1, f"get_fields waited for the data answers: {order}"


def test_a_server_that_sets_nothing_answers_side_by_side(stack, client):
    p = serve(stack, client, "unpooled")
    try:
        replies, _ = ask_together(client, "unpooled", ["peak", "thread"])
    finally:
        p.stop()
    assert max(r["data"]["peak"][0] for r in replies) > 2, "Twisted's pool runs the calls together"
    assert not any("sisock-answers" in r["data"]["thread"][0] for r in replies)


@pytest.fixture
def no_connection(monkeypatch):
    made = []
    monkeypatch.setattr(connect, "load_trust", lambda settings: None)
    monkeypatch.setattr(connect, "start_logging", lambda settings: None)
    monkeypatch.setattr(connect, "run", lambda make: made.append(make) or 0)
    monkeypatch.setattr(G3Reader, "prepare", classmethod(lambda cls, s: {"answer_threads": s.answer_threads}))
    monkeypatch.delenv("G3_THREADS", raising=False)
    monkeypatch.setenv("DATA_DIRECTORY", os.path.dirname(WHOAMI))
    return made


@pytest.mark.parametrize(("value", "threads"), [(None, DEFAULT_THREADS), ("3", 3)])
def test_the_g3_readers_threads_come_from_g3_threads(no_connection, monkeypatch, value, threads):
    if value is not None:
        monkeypatch.setenv("G3_THREADS", value)
    with pytest.raises(SystemExit) as exited:
        runtime.run(G3Reader, [])
    assert exited.value.code == 0
    assert no_connection[-1].keywords == {"answer_threads": threads}


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_g3_threads_is_one_line_and_exit_2(no_connection, monkeypatch, capsys, value):
    monkeypatch.setenv("G3_THREADS", value)
    with pytest.raises(SystemExit) as exited:
        runtime.run(G3Reader, [])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "G3_THREADS" in err[0] and err[0].startswith("sisock-g3-reader-server: "), err
    assert no_connection == []
