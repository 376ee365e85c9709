"""Several processes serving one data node name, load-balanced by the router.

First without a router: how ``--shared`` / ``SISOCK_SHARED`` reach a
server's sessions through sisock.runtime, and what a server registers and
announces with them. Then for real, against the test router and hub: two
and three processes of tests/servers/whoami.py under one name (each answer
says which process gave it), the name listed once, kept while any of them
lives and subtracted with the last; mixed exclusive and shared servers
refused; a restarted hub rebuilding the shared node; an in-tree console
script shared through the environment alone.
"""

from __future__ import annotations

import os
import signal
import threading
from types import SimpleNamespace

import pytest
from autobahn.wamp.types import ComponentConfig
from deferreds import result as _result
from twisted.internet import defer

from sisock import connect, contract, runtime, server_registry
from sisock.base import DataNodeServer

from conftest import node_names
from procs import wait_for

WHOAMI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers", "whoami.py")


# -- the setting, without a router ----------------------------------------------------------------


class Plain(DataNodeServer):
    """A server that declares nothing."""

    name = "plain"
    script = "sisock-plain-server"


@pytest.fixture
def made(monkeypatch):
    """What runtime.run hands the connection, with the connection replaced."""
    runs = []
    monkeypatch.setattr(connect, "run", lambda make: runs.append(make) or 0)
    monkeypatch.delenv(runtime.SHARED_VARIABLE, raising=False)

    def run(server=Plain, argv=()):
        with pytest.raises(SystemExit) as exited:
            runtime.run(server, list(argv))
        assert exited.value.code == 0
        return runs[-1]

    return run


def session(make):
    return make(ComponentConfig("test_realm", {}))


@pytest.mark.parametrize(("env", "argv", "expect"), [
    (None, ["--shared", "roundrobin"], "roundrobin"),
    ("random", [], "random"),
    ("random", ["--shared", "roundrobin"], "roundrobin"),
    ("", [], None),
    ("  ", [], None),
])
def test_the_flag_and_the_variable_reach_every_session(made, monkeypatch, env, argv, expect):
    if env is not None:
        monkeypatch.setenv(runtime.SHARED_VARIABLE, env)
    make = made(Plain, argv)
    a, b = session(make), session(make)
    assert a is not b and a.shared == b.shared == expect
    assert Plain.shared is None, "the class is left as it was"


def test_unset_the_runtime_hands_the_server_over_untouched(made):
    assert made(Plain) is Plain


def test_a_bad_policy_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv(runtime.SHARED_VARIABLE, "sometimes")
    monkeypatch.setattr(connect, "run", lambda make: pytest.fail("the connection must not start"))
    with pytest.raises(SystemExit) as exited:
        runtime.run(Plain, [])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sisock-plain-server: SISOCK_SHARED must be one of roundrobin, random (or empty for an "
                   "exclusive node), got 'sometimes'"]


def test_help_tells_of_the_flag_and_only_data_node_servers_take_it(capsys):
    with pytest.raises(SystemExit):
        runtime.argument_parser(Plain).parse_args(["--help"])
    assert "--shared POLICY (or SISOCK_SHARED=POLICY)" in " ".join(capsys.readouterr().out.split())
    assert runtime.common(lambda config: None) == ()
    with pytest.raises(SystemExit):
        runtime.argument_parser(lambda config: None).parse_args(["--shared", "random"])


def joined(server):
    """``server`` joined to a stand-in router; returns what it registered and called."""
    seen = SimpleNamespace(registered=[], calls=[])

    def register(proc, procedure, options=None):
        seen.registered.append((procedure, None if options is None else options.invoke))
        return defer.succeed(None)

    def call(procedure, *args, **kwargs):
        seen.calls.append((procedure, args, kwargs))
        return defer.succeed(True)

    server.register, server.call = register, call
    server.subscribe = lambda *a, **k: defer.succeed(None)
    _result(server.onJoin(SimpleNamespace(realm="test_realm", session=42)))
    return seen


def test_an_exclusive_server_registers_and_announces_as_servers_always_did():
    seen = joined(Plain(ComponentConfig("test_realm", {})))
    assert seen.registered == [(contract.get_fields_procedure("plain"), None),
                               (contract.get_data_procedure("plain"), None),
                               (contract.get_data_packed_procedure("plain"), None),
                               (contract.get_aggregates_procedure("plain"), None)]
    assert seen.calls == [(contract.DATA_NODE_ADD, ("plain", None, 42), {})]


@pytest.mark.parametrize("policy", contract.SHARED_POLICIES)
def test_a_shared_server_registers_with_the_policy_and_says_so(policy):
    server = Plain(ComponentConfig("test_realm", {}))
    server.shared = policy
    seen = joined(server)
    assert seen.registered == [(contract.get_fields_procedure("plain"), policy),
                               (contract.get_data_procedure("plain"), policy),
                               (contract.get_data_packed_procedure("plain"), policy),
                               (contract.get_aggregates_procedure("plain"), policy)]
    assert seen.calls == [(contract.DATA_NODE_ADD, ("plain", None, 42), {contract.SHARED_KEYWORD: policy})]


def test_a_server_answering_in_the_reactor_is_not_asked_packed_nor_for_aggregates():
    class Reactor(Plain):
        def get_data(self, field, start, end, min_stride=None):
            return {"data": {}, "timeline": {}}

    seen = joined(Reactor(ComponentConfig("test_realm", {})))
    assert [uri for uri, _ in seen.registered] == [contract.get_fields_procedure("plain"),
                                                   contract.get_data_procedure("plain")]


def test_a_server_listing_fields_in_the_reactor_is_not_asked_for_aggregates():
    class Listing(Plain):
        def get_fields(self, start, end):
            return {}, {}

    seen = joined(Listing(ComponentConfig("test_realm", {})))
    assert contract.get_aggregates_procedure("plain") not in [uri for uri, _ in seen.registered]
    assert contract.get_data_packed_procedure("plain") in [uri for uri, _ in seen.registered]


def test_a_class_attribute_shares_servers_built_directly():
    class Mine(Plain):
        shared = "random"

    seen = joined(Mine(ComponentConfig("test_realm", {})))
    assert {invoke for _, invoke in seen.registered} == {"random"}


def test_a_bad_class_attribute_stops_the_session_before_it_registers():
    class Wrong(Plain):
        shared = "everyone"

    server = Wrong(ComponentConfig("test_realm", {}))
    with pytest.raises(ValueError, match="Wrong.shared must be one of roundrobin, random"):
        joined(server)


# -- for real, against the test router and hub ------------------------------------------------


def whoami(stack, name, tag, *args, env=None):
    return stack.python(tag, WHOAMI, *args, env={"NAME": name, **(env or {})}).start()


def listed(client, name) -> int:
    return [n["name"] for n in client.data_nodes()].count(name)


def callees(client, name) -> list:
    """The sessions the router holds as callees of ``name``'s get_data."""
    reg = client.call("wamp.registration.lookup", contract.get_data_procedure(name))
    return [] if reg is None else client.call("wamp.registration.list_callees", reg)


def registered(p, name, policy):
    return f"data node registered as {name}, shared ({policy})" in p.output()


def start_shared(stack, client, name, policy, count, tag=None):
    procs = [whoami(stack, name, f"{tag or name}-{i}", "--shared", policy) for i in range(count)]
    for p in procs:
        wait_for(lambda p=p: registered(p, name, policy), 30, f"{p.name} to be accepted by the hub")
    assert len(callees(client, name)) == count
    return procs


def answering(client, name, calls) -> set[int]:
    """The processes that answered ``calls`` get_data calls to ``name``."""
    pids = set()
    for _ in range(calls):
        reply = client.get_data(name, ["pid"], -60, 0)
        pids.update(reply["data"]["pid"])
    return pids


class Events:
    """data_node_added / data_node_subtracted events of one name, as received."""

    def __init__(self, client, name):
        self.lock = threading.Lock()
        self.added, self.subtracted = [], []
        client.subscribe(contract.DATA_NODE_ADDED, self._on(name, self.added))
        client.subscribe(contract.DATA_NODE_SUBTRACTED, self._on(name, self.subtracted))

    def _on(self, name, into):
        def handler(node, *args, **kwargs):
            if isinstance(node, dict) and node.get("name") == name:
                with self.lock:
                    into.append(node)
        return handler

    def counts(self, client) -> tuple[int, int]:
        # A call answered by the hub after it published: its events have
        # reached this client before the answer.
        client.data_nodes()
        with self.lock:
            return len(self.added), len(self.subtracted)


def kill(p):
    p.signal(signal.SIGKILL)
    p.popen.wait(10)


def hub_saw_leave(stack, name, remain):
    return f"left shared data node {name} ({remain} session(s) remain)" in stack.hub.output()


def test_two_processes_serve_one_name_in_turn(stack, client):
    name = "shared_pair"
    events = Events(client, name)
    procs = start_shared(stack, client, name, "roundrobin", 2)
    try:
        assert listed(client, name) == 1
        entry = next(n for n in client.data_nodes() if n["name"] == name)
        assert entry == {"name": name, "description": "Which process answered"}
        assert events.counts(client) == (1, 0), "added once, when the name first appeared"
        pids = {p.popen.pid for p in procs}
        # Round robin: two calls in a row reach both processes, in turn.
        first = [client.get_data(name, ["pid"], -60, 0)["data"]["pid"][0] for _ in range(4)]
        assert set(first[:2]) == pids and first[:2] == first[2:]
        field, _ = client.fields(name)
        assert set(field) == {"pid", "calls", "peak", "thread"}

        kill(procs[0])
        wait_for(lambda: hub_saw_leave(stack, name, 1), 30, "the hub to see the first process leave")
        assert listed(client, name) == 1
        assert answering(client, name, 4) == {procs[1].popen.pid}
        assert events.counts(client) == (1, 0)

        procs[1].stop()
        wait_for(lambda: name not in node_names(client), 30, f"{name} to be subtracted")
        assert events.counts(client) == (1, 1)
        assert callees(client, name) == []
    finally:
        for p in procs:
            p.stop()


def test_three_processes_share_a_name_at_random_until_the_last_leaves(stack, client):
    name = "shared_three"
    events = Events(client, name)
    procs = start_shared(stack, client, name, "random", 3)
    try:
        assert listed(client, name) == 1
        pids = [p.popen.pid for p in procs]
        # 300 random picks miss one of three processes with a probability of 1e-52.
        assert answering(client, name, 300) == set(pids)
        calls = client.get_data(name, ["calls"], -60, 0)["data"]["calls"]
        assert calls and calls[0] < 300, "each process answered only its share"

        kill(procs[0])
        wait_for(lambda: hub_saw_leave(stack, name, 2), 30, "the hub to see one process go")
        assert listed(client, name) == 1
        assert answering(client, name, 200) == set(pids[1:])

        kill(procs[1])
        wait_for(lambda: hub_saw_leave(stack, name, 1), 30, "the hub to see a second process go")
        assert listed(client, name) == 1
        assert answering(client, name, 5) == {pids[2]}
        assert events.counts(client) == (1, 0)

        kill(procs[2])
        wait_for(lambda: name not in node_names(client), 30, f"{name} to go with its last process")
        assert events.counts(client) == (1, 1)
    finally:
        for p in procs:
            p.stop()


def test_exclusive_and_shared_servers_do_not_mix(stack, client):
    name = "shared_mixed"
    exclusive = whoami(stack, name, "mixed-exclusive")
    others = []
    try:
        wait_for(lambda: f"data node registered as {name}" in exclusive.output(), 30, "the exclusive server")
        # A second exclusive server is refused as it always was.
        twin = whoami(stack, name, "mixed-twin")
        others.append(twin)
        wait_for(lambda: "the name is already taken" in twin.output(), 30, "the exclusive twin to be refused")
        twin.stop()
        # A shared one is refused by the router and by the hub, and says why.
        joiner = whoami(stack, name, "mixed-shared", "--shared", "roundrobin")
        others.append(joiner)
        wait_for(lambda: f"hub refused data node {name} shared (roundrobin)" in joiner.output(), 30,
                 "the shared server to be refused")
        assert "it is held by a server that does not share it" in joiner.output()
        assert (f"refused data node {name} from session" in stack.hub.output()
                and "the node is exclusive and this server announced it shared (roundrobin)" in stack.hub.output())
        assert listed(client, name) == 1 and len(callees(client, name)) == 1
        assert answering(client, name, 3) == {exclusive.popen.pid}

        # Once the exclusive server is gone, the shared one takes the name
        # over, and then refuses an exclusive server in its turn.
        exclusive.stop()
        wait_for(lambda: registered(joiner, name, "roundrobin"), 30, "the shared server to take the name")
        assert answering(client, name, 3) == {joiner.popen.pid}
        late = whoami(stack, name, "mixed-late-exclusive")
        others.append(late)
        wait_for(lambda: "the name is already taken" in late.output(), 30, "an exclusive server to be refused")
        assert "it is held by servers that share it," in late.output()
        assert "the node is shared (roundrobin) and this server announced it exclusive" in stack.hub.output()
        # And one with another policy.
        other = whoami(stack, name, "mixed-random", "--shared", "random")
        others.append(other)
        wait_for(lambda: f"hub refused data node {name} shared (random)" in other.output(), 30,
                 "a server with another policy to be refused")
        assert contract.PROCEDURE_POLICY_CONFLICT in other.output()
        assert listed(client, name) == 1 and len(callees(client, name)) == 1
        assert answering(client, name, 3) == {joiner.popen.pid}
    finally:
        # The refused ones first, or they would take the name over.
        for p in reversed([exclusive, *others]):
            p.stop()


def test_a_restarted_hub_rebuilds_the_shared_node(stack, client):
    name = "shared_survivor"
    procs = start_shared(stack, client, name, "roundrobin", 2)
    try:
        stack.hub.kill()
        stack.hub = stack.proc("hub-after-shared", "sisock-hub").start()
        wait_for(lambda: "hub ready" in stack.hub.output(), 30, "the new hub")
        wait_for(lambda: {"name": name, "description": "Which process answered"} in client.data_nodes(), 30,
                 f"the new hub to list {name} with its description")
        assert listed(client, name) == 1
        assert all(p.alive for p in procs)
        assert answering(client, name, 4) == {p.popen.pid for p in procs}

        kill(procs[0])
        wait_for(lambda: hub_saw_leave(stack, name, 1), 30, "the new hub to see one process go")
        assert listed(client, name) == 1
        procs[1].stop()
        wait_for(lambda: name not in node_names(client), 30, f"{name} to go with its last process")
    finally:
        for p in procs:
            p.stop()


def test_an_in_tree_server_is_shared_through_the_environment(stack, client):
    """Two sensors servers, the registry's console script, with SISOCK_SHARED alone."""
    name = "shared_sensors"
    script = server_registry.get("sensors").script
    env = {"NAME": name, runtime.SHARED_VARIABLE: "roundrobin"}
    procs = [stack.proc(f"{name}-{i}", script, env=env).start() for i in range(2)]
    try:
        for p in procs:
            wait_for(lambda p=p: registered(p, name, "roundrobin"), 30, f"{p.name} to be accepted")
        assert listed(client, name) == 1
        assert len(callees(client, name)) == 2
        wait_for(lambda: client.fields(name)[0], 30, f"{name} to list its fields")
    finally:
        for p in procs:
            p.stop()
    wait_for(lambda: name not in node_names(client), 30, f"{name} to go")
