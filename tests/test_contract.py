"""The WAMP contract: its names, its node-name rule, and a server's answer as
a consumer receives it (one conversion to lists, a string ``field`` read as
one name), all without a router."""

import time

import numpy as np
import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig
from deferreds import result as _result
from twisted.internet import defer

from sisock import base, config, contract
from sisock.components.hub import Hub

T0 = 1_700_000_000.0


class Server(base.DataNodeServer):
    """Ten samples of two fields on one timeline, through contract.data_reply."""

    name = "unit"

    def __init__(self, config=None):
        super().__init__(config or ComponentConfig("test_realm", {}))
        self.asked = []

    def _timeline(self):
        t = T0 + np.arange(10.0)
        return contract.Timeline("tl", t, {"temp": t - T0, "load": np.ones(10)}, finalized_until=T0 + 9)

    def _get_data_blocking(self, field, start, end, min_stride=None):
        self.asked.append((field, start, end, min_stride))
        return contract.data_reply(field, [self._timeline()], start, end, min_stride)


class NumpyServer(Server):
    """Builds its reply by hand, with numpy arrays left in it."""

    def _get_data_blocking(self, field, start, end, min_stride=None):
        tl = self._timeline()
        return {"data": {name: tl.fields[name] for name in field if name in tl.fields},
                "timeline": {"tl": {"t": tl.t, "finalized_until": np.float64(T0 + 9)}}}


@pytest.fixture
def to_wire_calls(monkeypatch):
    calls = []
    real = contract.to_wire

    def counting(reply):
        calls.append(reply)
        return real(reply)

    monkeypatch.setattr(contract, "to_wire", counting)
    return calls


@pytest.fixture
def synchronous_threads(monkeypatch):
    """deferToThread run in place: the router's path without a reactor."""
    monkeypatch.setattr(base.threads, "deferToThread", lambda f, *a, **k: defer.maybeDeferred(f, *a, **k))


# -- names ------------------------------------------------------------------------------------


def test_uris_are_those_of_the_original_sisock():
    assert contract.uri("x") == "org.simonsobservatory.x"
    assert contract.DATA_NODE_ADD == "org.simonsobservatory.data_node.add"
    assert contract.DATA_NODE_SUBTRACT == "org.simonsobservatory.data_node.subtract"
    assert contract.GET_DATA_NODE == "org.simonsobservatory.consumer.get_data_node"
    assert contract.DATA_NODE_ADDED == "org.simonsobservatory.consumer.data_node_added"
    assert contract.DATA_NODE_SUBTRACTED == "org.simonsobservatory.consumer.data_node_subtracted"
    assert contract.HUB_STARTED == "org.simonsobservatory.hub.started"
    assert contract.ERROR_INVALID_NAME == "org.simonsobservatory.error.invalid_name"
    assert contract.get_fields_procedure("n") == "org.simonsobservatory.consumer.n.get_fields"
    assert contract.get_data_procedure("n") == "org.simonsobservatory.consumer.n.get_data"


def test_old_homes_of_the_names_are_the_contracts():
    assert base.uri is contract.uri and base.sisock_to_unix_time is contract.sisock_to_unix_time
    assert base.BASE_URI == config.BASE_URI == contract.BASE_URI
    assert base.REALM == config.REALM == contract.REALM
    assert base.HUB_STARTED == contract.HUB_STARTED


@pytest.mark.parametrize("name", ["apex_weather", "x", "g3-reader", "UCSC_radiometer", "ä", "n" * 200])
def test_valid_node_names(name):
    assert contract.valid_node_name(name) and contract.node_name_problem(name) is None
    assert contract.node_of_get_data(contract.get_data_procedure(name)) == name


@pytest.mark.parametrize("name", ["", "a.b", ".", "a#", "a b", "a\tb", "a\nb", "a\x00b", "a\x7fb", "n" * 201,
                                  None, 3, ["a"]])
def test_invalid_node_names(name):
    assert not contract.valid_node_name(name) and contract.node_name_problem(name)


def test_node_of_get_data_reads_only_get_data_procedures():
    assert contract.node_of_get_data(contract.get_fields_procedure("n")) is None
    assert contract.node_of_get_data(contract.GET_DATA_NODE) is None
    assert contract.node_of_get_data("org.simonsobservatory.consumer.a.b.get_data") is None
    assert contract.node_of_get_data("org.simonsobservatory.consumer..get_data") is None
    assert contract.node_of_get_data("org.simonsobservatory.consumer.get_data") is None
    assert contract.node_of_get_data("com.example.consumer.n.get_data") is None
    assert contract.node_of_get_data(None) is None


@pytest.mark.parametrize("name", ["a.b", "", "a b", None])
def test_hub_refuses_names_the_contract_forbids(name):
    hub = Hub(ComponentConfig("test_realm", {}))
    with pytest.raises(ApplicationError) as exc:
        _result(hub.add(name, "description", 1))
    assert exc.value.error == contract.ERROR_INVALID_NAME


def test_data_feed_refuses_names_the_contract_forbids():
    from sisock.servers.data_feed import settings_from_env

    env = {"TARGET": "t", "FEED": "f", "DESCRIPTION": "d"}
    with pytest.raises(ValueError, match="must not contain dots"):
        settings_from_env({**env, "NAME": "a.b"})
    with pytest.raises(ValueError, match="whitespace"):
        settings_from_env({**env, "NAME": "a b"})
    assert settings_from_env({**env, "NAME": "feed"})["NAME"] == "feed"


# -- arguments ------------------------------------------------------------------------------


def test_field_list_reads_a_string_as_one_name():
    assert contract.field_list("temp") == ["temp"]
    assert contract.field_list(["temp", "load"]) == ["temp", "load"]
    assert contract.field_list(("temp",)) == ["temp"]
    assert contract.field_list(name for name in ["a", "b"]) == ["a", "b"]
    assert contract.field_list([]) == []


def test_a_string_field_is_one_field_through_the_public_path():
    server = Server()
    assert server.answer_get_data("temp", T0, T0 + 9) == server.answer_get_data(["temp"], T0, T0 + 9)
    reply = server.answer_get_data("temp", T0, T0 + 9)
    assert reply["data"] == {"temp": list(np.arange(10.0))} and list(reply["timeline"]) == ["tl"]
    assert server.asked[0][0] == ["temp"]


def test_a_string_field_is_one_field_through_the_router_path(synchronous_threads):
    reply = _result(Server().get_data("temp", T0, T0 + 9))
    assert list(reply["data"]) == ["temp"] and len(reply["data"]["temp"]) == 10


def test_relative_times_are_read_before_the_server_sees_them():
    server = Server()
    before = time.time()
    server.answer_get_data(["temp"], -60, 0)
    _, start, end, _ = server.asked[0]
    assert before - 60 <= start <= time.time() - 60 and before <= end <= time.time()
    server.answer_get_data(["temp"], T0, T0 + 5, 2.0)
    assert server.asked[1][1:] == (T0, T0 + 5, 2.0)


def test_get_fields_answer_reads_relative_times(synchronous_threads):
    seen = []

    class Fields(Server):
        def _get_fields_blocking(self, start, end):
            seen.append((start, end))
            return contract.fields_reply({"temp": contract.field_info("tl")})

    server = Fields()
    assert server.answer_get_fields(T0, T0 + 1) == ({"temp": contract.field_info("tl")},
                                                    {"tl": {"interval": None, "field": ["temp"]}})
    assert _result(server.get_fields(-10, 0)) == server.answer_get_fields(T0, T0 + 1)
    assert seen[0] == (T0, T0 + 1) and seen[1][0] > T0


# -- the reply ------------------------------------------------------------------------------


@pytest.mark.parametrize("server_type", [Server, NumpyServer])
def test_to_wire_runs_once_per_reply(to_wire_calls, server_type):
    reply = server_type().answer_get_data(["temp", "load"], T0, T0 + 9)
    assert len(to_wire_calls) == 1
    assert type(reply["data"]["temp"]) is list and type(reply["timeline"]["tl"]["t"]) is list
    assert type(reply["timeline"]["tl"]["finalized_until"]) is float
    assert reply["data"]["load"] == [1.0] * 10


def test_to_wire_runs_once_per_reply_through_the_router_path(to_wire_calls, synchronous_threads):
    reply = _result(Server().get_data(["temp"], T0, T0 + 9, 3.0))
    assert len(to_wire_calls) == 1 and reply["data"]["temp"]


def test_a_reply_of_lists_is_sent_as_it_was_built(to_wire_calls):
    class Lists(Server):
        def _get_data_blocking(self, field, start, end, min_stride=None):
            return {"data": {"temp": [1.0]}, "timeline": {"tl": {"t": [T0], "finalized_until": None}}}

    assert Lists().answer_get_data(["temp"], T0, T0 + 1) == {
        "data": {"temp": [1.0]}, "timeline": {"tl": {"t": [T0], "finalized_until": None}}}
    assert len(to_wire_calls) == 1


def test_too_large_a_reply_is_refused(monkeypatch):
    monkeypatch.setattr(contract, "MAX_REPLY_VALUES", 19)
    assert Server().answer_get_data(["temp"], T0, T0 + 9) is False  # 10 times + 10 values
    monkeypatch.setattr(contract, "MAX_REPLY_VALUES", 20)
    assert Server().answer_get_data(["temp"], T0, T0 + 9)


def test_the_name_early_versions_used_still_answers():
    class Early(Server):
        def get_data_blocking(self, field, start, end, min_stride=None):
            return {"data": {name: [0.0] for name in field}, "timeline": {"tl": {"t": [start]}}}

    reply = Early().answer_get_data("temp", T0, T0 + 1)
    assert reply == {"data": {"temp": [0.0]}, "timeline": {"tl": {"t": [T0], "finalized_until": None}}}


def test_unknown_fields_and_empty_ranges_keep_their_shape():
    server = Server()
    assert server.answer_get_data(["nope"], T0, T0 + 9) == {"data": {"nope": []}, "timeline": {}}
    assert server.answer_get_data(["temp"], T0 - 10, T0 - 1) == {"data": {"temp": []}, "timeline": {}}


def test_packed_replies_carry_numbers_as_bytes_and_strings_as_lists():
    import msgpack
    import numpy as np

    reply = {"data": {"x": np.array([1.5, np.nan, -2.0]), "n": np.array([3, -4], dtype=np.int64),
                      "ok": np.array([True, False]), "s": np.array(["a", "b"], dtype=object)},
             "timeline": {"x": {"t": np.array([1.0, 2.0, 3.0]), "finalized_until": None}}}
    packed = msgpack.unpackb(msgpack.packb(contract.to_packed(reply)))
    assert isinstance(packed["data"]["x"]["data"], bytes) and packed["data"]["s"] == ["a", "b"]
    for name in ("x", "n", "ok"):
        got = contract.unpack(packed["data"][name])
        assert got.dtype == reply["data"][name].dtype
        assert np.array_equal(got, reply["data"][name], equal_nan=name == "x")
    assert contract.unpack(packed["timeline"]["x"]["t"]).tolist() == [1.0, 2.0, 3.0]
    assert contract.unpack([1, 2]) == [1, 2] and contract.to_packed(False) is False
    with pytest.raises(ValueError):
        contract.unpack({"dtype": "<U3", "data": b"abc"})

