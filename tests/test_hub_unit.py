"""The hub's registry and its events, without a router: exclusive and shared
data nodes, what is published when, and the rebuild from the router's
registrations after a restart (the router's meta API answered by a fake)."""

from __future__ import annotations

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig
from deferreds import result as _result
from twisted.internet import defer

from sisock import contract
from sisock.components.hub import Hub, Registry

RR = "roundrobin"


# -- the registry ---------------------------------------------------------------------------------


def test_an_exclusive_name_refuses_a_second_session_and_takes_its_own_again():
    r = Registry()
    assert r.add("a", "A", 1)[:2] == (True, True)
    refused = r.add("a", "other", 2)
    assert not refused.accepted and refused.reason == "the name is already taken"
    again = r.add("a", "A2", 1)
    assert again.accepted and again.again and not again.is_new
    assert r.public() == [{"name": "a", "description": "A2"}]
    assert r.sessions("a") == [1] and r.policy("a") is None


def test_a_shared_name_takes_every_session_with_its_policy_and_is_listed_once():
    r = Registry()
    first = r.add("s", "S", 1, RR)
    assert first.accepted and first.is_new
    for session in (2, 3):
        joined = r.add("s", "S", session, RR)
        assert joined.accepted and not joined.is_new and not joined.again
    assert r.sessions("s") == [1, 2, 3] and r.policy("s") == RR
    assert r.public() == [{"name": "s", "description": "S"}]


@pytest.mark.parametrize(("held", "asked"), [(None, RR), (RR, None), (RR, "random")])
def test_a_mixed_announcement_is_refused_with_the_reason(held, asked):
    r = Registry()
    r.add("m", "M", 1, held)
    refused = r.add("m", "M", 2, asked)
    assert not refused.accepted
    assert "SISOCK_SHARED" in refused.reason
    assert ("exclusive" if held is None else f"shared ({held})") in refused.reason
    assert r.sessions("m") == [1] and r.policy("m") == held


def test_a_shared_name_goes_with_its_last_session():
    r = Registry()
    for session in (1, 2, 3):
        r.add("s", "S", session, RR)
    r.add("x", "X", 2)
    assert r.remove("s", 1) is None
    assert r.remove_session(2) == [{"name": "x", "description": "X", "policy": None, "sessions": {}}]
    assert r.sessions("s") == [3]
    assert r.remove("s", 99) is None, "a session it never had changes nothing"
    gone = r.remove("s", 3)
    assert gone["name"] == "s" and r.public() == []


def test_without_a_session_remove_takes_the_whole_node():
    r = Registry()
    for session in (1, 2):
        r.add("s", "S", session, RR)
    assert r.remove("s")["sessions"] == {1: None, 2: None}
    assert r.public() == []


def test_a_description_learned_later_fills_a_recovered_node():
    r = Registry()
    r.add("s", None, 1, RR)
    r.add("s", None, 2, RR)
    r.add("s", "late", 2, RR)
    assert r.entry("s") == {"name": "s", "description": "late"}


def test_a_sole_session_may_change_its_mode_but_not_one_of_several():
    r = Registry()
    r.add("a", "A", 1)
    assert r.add("a", "A", 1, RR).accepted and r.policy("a") == RR
    r.add("a", "A", 2, RR)
    assert not r.add("a", "A", 1).accepted


# -- the hub --------------------------------------------------------------------------------------


class FakeRouter:
    """The router's meta API as far as the hub uses it, and a record of
    what the hub publishes and logs."""

    def __init__(self, registrations=(), alive=()):
        #: {reg_id: (uri, invoke, [callees])}
        self.registrations = dict(enumerate(registrations, start=100))
        self.alive = set(alive)
        self.published: list[tuple[str, dict | None]] = []
        self.logged: list[tuple[str, str]] = []

    def call(self, procedure, *args):
        if procedure == "wamp.registration.list":
            return defer.succeed({"exact": list(self.registrations), "prefix": [], "wildcard": []})
        if procedure == "wamp.registration.get":
            uri, invoke, _ = self.registrations[args[0]]
            return defer.succeed({"id": args[0], "uri": uri, "match": "exact", "invoke": invoke})
        if procedure == "wamp.registration.list_callees":
            return defer.succeed(list(self.registrations[args[0]][2]))
        if procedure == "wamp.session.get":
            if args[0] in self.alive:
                return defer.succeed({"session": args[0]})
            return defer.fail(ApplicationError("wamp.error.no_such_session"))
        raise AssertionError(f"unexpected call {procedure}")

    def events(self, topic, name):
        return [node for t, node in self.published if t == topic and node and node["name"] == name]


class Log:
    def __init__(self, router):
        self.router = router

    def __getattr__(self, level):
        return lambda text, **kw: self.router.logged.append((level, text.format(**kw)))


@pytest.fixture
def make_hub(monkeypatch):
    def make(router=None):
        router = router or FakeRouter()
        hub = Hub(ComponentConfig("test_realm", {}))
        hub.registry = Registry()
        hub.call = router.call
        hub.publish = lambda topic, *args: router.published.append((topic, args[0] if args else None))
        hub.log = Log(router)
        return hub, router

    return make


def added(router, name):
    return router.events(contract.DATA_NODE_ADDED, name)


def subtracted(router, name):
    return router.events(contract.DATA_NODE_SUBTRACTED, name)


def test_old_servers_announcing_with_three_arguments_get_todays_answers(make_hub):
    hub, router = make_hub(FakeRouter(alive={1}))
    assert _result(hub.add("old", "Old", 1)) is True
    assert _result(hub.add("old", "Old", 2)) is False
    assert ("warn", "refused data node old: already served by session 1") in router.logged
    assert _result(hub.add("old", "Old", 1)) is True, "announcing itself again"
    assert len(added(router, "old")) == 2, "published on each accepted announcement, as before"
    assert hub.get_data_node() == [{"name": "old", "description": "Old"}]
    assert hub.subtract("old", 1) is True and subtracted(router, "old") == [{"name": "old", "description": "Old"}]


def test_a_dead_exclusive_holder_hands_the_name_over(make_hub):
    hub, router = make_hub(FakeRouter(alive={2}))
    _result(hub.add("n", "N", 1))
    assert _result(hub.add("n", "N", 2)) is True
    assert hub.registry.sessions("n") == [2]
    assert len(subtracted(router, "n")) == 1


def test_a_shared_name_is_added_once_and_subtracted_with_its_last_session(make_hub):
    hub, router = make_hub()
    for session in (1, 2, 3):
        assert _result(hub.add("s", "S", session, shared=RR)) is True
    assert hub.get_data_node() == [{"name": "s", "description": "S"}]
    assert added(router, "s") == [{"name": "s", "description": "S"}]
    hub._on_session_leave(1)
    assert hub.subtract("s", 2) is True
    assert hub.get_data_node() == [{"name": "s", "description": "S"}] and subtracted(router, "s") == []
    assert any("session 1 left shared data node s (2 session(s) remain)" in text for _, text in router.logged)
    hub._on_session_leave(3)
    assert hub.get_data_node() == [] and subtracted(router, "s") == [{"name": "s", "description": "S"}]


def test_a_member_announcing_itself_again_has_consumers_refresh(make_hub):
    hub, router = make_hub()
    _result(hub.add("s", "S", 1, shared=RR))
    _result(hub.add("s", "S", 2, shared=RR))
    _result(hub.add("s", "S", 2, shared=RR))
    assert len(added(router, "s")) == 2


def test_the_policy_may_come_as_a_fourth_argument(make_hub):
    hub, _ = make_hub()
    assert _result(hub.add("s", "S", 1, RR)) is True
    assert _result(hub.add("s", "S", 2, RR)) is True
    assert hub.registry.sessions("s") == [1, 2]


@pytest.mark.parametrize(("held", "asked"), [(None, RR), (RR, None), (RR, "random")])
def test_a_mixed_announcement_is_refused_with_a_clear_line(make_hub, held, asked):
    hub, router = make_hub(FakeRouter(alive={1}))
    _result(hub.add("m", "M", 1, shared=held))
    assert _result(hub.add("m", "M", 2, shared=asked)) is False
    assert hub.registry.sessions("m") == [1]
    (line,) = [text for level, text in router.logged if level == "warn"]
    mode = "exclusive" if held is None else f"shared ({held})"
    other = "exclusive" if asked is None else f"shared ({asked})"
    assert line == (f"refused data node m from session 2: the node is {mode} and this server announced it "
                    f"{other}: every server of one name must be started with the same SISOCK_SHARED "
                    "(served by session(s) 1)")


def test_shared_sessions_that_died_unheard_do_not_keep_a_mixed_announcement_out(make_hub):
    hub, router = make_hub(FakeRouter(alive={3}))
    _result(hub.add("s", "S", 1, shared=RR))
    _result(hub.add("s", "S", 2, shared=RR))
    assert _result(hub.add("s", "S", 3)) is True
    assert hub.registry.policy("s") is None and hub.registry.sessions("s") == [3]


def test_an_unknown_policy_is_an_error(make_hub):
    hub, _ = make_hub()
    with pytest.raises(ApplicationError) as exc:
        _result(hub.add("s", "S", 1, shared="first-come"))
    assert exc.value.error == contract.ERROR_INVALID_SHARING
    assert hub.get_data_node() == []


def test_subtract_without_a_session_takes_the_whole_shared_node(make_hub):
    hub, router = make_hub()
    _result(hub.add("s", "S", 1, shared=RR))
    _result(hub.add("s", "S", 2, shared=RR))
    assert hub.subtract("s") is True and hub.get_data_node() == []
    assert len(subtracted(router, "s")) == 1
    assert hub.subtract("s") is False and hub.subtract("s", 1) is False


def test_a_restarted_hub_rebuilds_shared_nodes_with_every_callee(make_hub):
    router = FakeRouter(registrations=[
        (contract.get_data_procedure("shared"), RR, [11, 12, 13]),
        (contract.get_fields_procedure("shared"), RR, [11, 12, 13]),
        (contract.get_data_procedure("alone"), "single", [21]),
        (contract.get_data_procedure("rand"), "random", [31, 32]),
        ("org.simonsobservatory.data_node.add", "single", [1]),
    ])
    hub, _ = make_hub(router)
    _result(hub._recover())
    assert sorted(n["name"] for n in hub.get_data_node()) == ["alone", "rand", "shared"]
    assert hub.registry.sessions("shared") == [11, 12, 13] and hub.registry.policy("shared") == RR
    assert hub.registry.sessions("rand") == [31, 32] and hub.registry.policy("rand") == "random"
    assert hub.registry.sessions("alone") == [21] and hub.registry.policy("alone") is None
    assert len(added(router, "shared")) == 1
    # The servers' own announcements after hub.started fill in descriptions.
    assert _result(hub.add("shared", "Shared", 12, shared=RR)) is True
    assert hub.registry.entry("shared") == {"name": "shared", "description": "Shared"}
    # Every callee was known: the node stays until the last of them leaves.
    hub._on_session_leave(11)
    hub._on_session_leave(12)
    assert "shared" in {n["name"] for n in hub.get_data_node()}
    hub._on_session_leave(13)
    assert "shared" not in {n["name"] for n in hub.get_data_node()}
    assert len(subtracted(router, "shared")) == 1
