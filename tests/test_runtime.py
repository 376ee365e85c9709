"""sisock.runtime: the one way a DataNodeServer's process starts.

In this process with the connection replaced (the order of the steps, each
kind of setting, what a refusal looks like), then for real: the counter of
tests/servers/runtime_counter.py started through its entry point, as its
console script would start it, against the test router.
"""

from __future__ import annotations

import os
import sys
import time

import pytest
from autobahn.wamp.types import ComponentConfig

from sisock import config, connect, runtime
from sisock.base import DataNodeServer
from sisock.runtime import Setting

from conftest import node_names
from procs import Proc, wait_for

TEST_SERVERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers")


@pytest.fixture
def counter(monkeypatch):
    monkeypatch.syspath_prepend(TEST_SERVERS)
    import runtime_counter

    return runtime_counter


@pytest.fixture
def steps(monkeypatch):
    """What the runtime did, in order, with the connection replaced."""
    done = []
    monkeypatch.setattr(connect, "load_trust", lambda settings: done.append("trust"))
    monkeypatch.setattr(connect, "start_logging", lambda settings: done.append("logging"))
    monkeypatch.setattr(connect, "run", lambda make: done.append(("run", make)) or 0)
    for name in ("NAME", "COUNTER_STEP", "COUNTER_OFFSET", "LOGLEVEL", "CROSSBAR_TLS_PORT"):
        monkeypatch.delenv(name, raising=False)
    return done


def session(make):
    return make(ComponentConfig("test_realm", {}))


def run(server, argv=()) -> int:
    with pytest.raises(SystemExit) as exited:
        runtime.run(server, list(argv))
    return exited.value.code


def one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


# -- settings ------------------------------------------------------------------------


def test_settings_reach_the_sessions_through_prepare(counter, steps, monkeypatch, capsys):
    monkeypatch.setenv("NAME", "counted")
    monkeypatch.setenv("COUNTER_STEP", "2.5")
    assert run(counter.CounterServer, ["--offset", "7"]) == 0
    (_, make), = steps
    a, b = session(make), session(make)
    assert (a.name, a.step, a.offset) == ("counted", 2.5, 7.0)
    assert a is not b, "a session per connection"
    assert capsys.readouterr().out == "sisock-counter-server: counting by 2.5 from 7 as counted\n"


def test_a_flag_wins_over_its_variable_and_the_variable_over_the_default(counter, steps, monkeypatch):
    assert run(counter.CounterServer) == 0
    assert session(steps[-1][1]).offset == 1.0
    monkeypatch.setenv("COUNTER_OFFSET", "3")
    assert run(counter.CounterServer) == 0
    assert session(steps[-1][1]).offset == 3.0
    assert run(counter.CounterServer, ["--offset", "4"]) == 0
    assert session(steps[-1][1]).offset == 4.0


@pytest.mark.parametrize(("variable", "value"), [("COUNTER_STEP", "-1"), ("COUNTER_OFFSET", "x"), ("NAME", "a.b"),
                                                 ("LOGLEVEL", "loud"), ("CROSSBAR_TLS_PORT", "eighty")])
def test_a_bad_setting_is_one_line_and_exit_2_before_anything_starts(counter, steps, monkeypatch, capsys,
                                                                     variable, value):
    monkeypatch.setenv(variable, value)
    assert run(counter.CounterServer) == 2
    line = one_line(capsys)
    assert line.startswith("sisock-counter-server: ") and variable in line
    assert steps == [], "neither prepare nor the connection may run"


def test_command_line_mistakes_are_argparse_s(counter, steps, capsys):
    assert run(counter.CounterServer, ["--offset", "many"]) == 2
    assert "sisock-counter-server: error: argument --offset" in capsys.readouterr().err
    assert run(counter.CounterServer, ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sisock-counter-server [-h] [--offset OFFSET]\n")
    assert "Serve a counter that steps every second, for the runtime's tests." in out
    assert "One setting of each kind" not in out, "only the docstring's first paragraph"
    assert steps == []


# -- the order of the steps ------------------------------------------------------------


class Waiting(DataNodeServer):
    """Serve nothing after a wait."""

    name = "waiting"
    script = "sisock-waiting-server"
    slow_start = True
    settings = (Setting("points", config.max_points),)
    log_of_steps: list = []

    @classmethod
    def prepare(cls, settings):
        cls.log_of_steps.append(("prepare", settings.points))
        if settings.points == 13:
            raise config.ConfigError("cannot use the index: unlucky")
        return {}


def test_a_slow_start_checks_the_certificate_and_logs_before_it_waits(steps, monkeypatch):
    Waiting.log_of_steps = steps
    monkeypatch.setenv("MAX_POINTS", "100")
    assert run(Waiting) == 0
    assert steps == ["trust", "logging", ("prepare", 100), ("run", Waiting)]


def test_nothing_waits_for_a_bad_setting(steps, monkeypatch, capsys):
    Waiting.log_of_steps = steps
    monkeypatch.setenv("MAX_POINTS", "1")
    assert run(Waiting) == 2
    assert one_line(capsys) == "sisock-waiting-server: MAX_POINTS must be at least 2, got 1"
    assert steps == []


def test_a_refusal_while_preparing_is_one_line_and_exit_2(steps, monkeypatch, capsys):
    Waiting.log_of_steps = steps
    monkeypatch.setenv("MAX_POINTS", "13")
    assert run(Waiting) == 2
    assert one_line(capsys) == "sisock-waiting-server: cannot use the index: unlucky"
    assert steps == ["trust", "logging", ("prepare", 13)]


def test_a_quick_start_leaves_the_certificate_and_logging_to_the_connection(counter, steps):
    run(counter.CounterServer)
    assert [step if isinstance(step, str) else step[0] for step in steps] == ["run"]


def test_without_prepare_the_settings_are_the_session_s_arguments(steps, monkeypatch):
    class Plain(DataNodeServer):
        name = "plain"
        settings = (Setting("points", config.max_points),)

        def __init__(self, config=None, points=None):
            super().__init__(config)
            self.points = points

    monkeypatch.setenv("MAX_POINTS", "50")
    assert run(Plain) == 0
    assert session(steps[-1][1]).points == 50


def test_a_class_without_declarations_and_a_plain_factory_run_as_they_are(steps, monkeypatch, capsys):
    class Bare(DataNodeServer):
        name = "bare"

    monkeypatch.setattr(sys, "argv", ["/somewhere/bare-server"])
    assert run(Bare) == 0 and steps[-1] == ("run", Bare)
    factory = lambda config: Bare(config)  # noqa: E731 - a factory that is not a class
    assert run(factory) == 0 and steps[-1] == ("run", factory)
    assert run(Bare, ["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: bare-server [-h]\n")


def test_a_server_s_switch_interval_is_the_process_s(steps):
    class Busy(DataNodeServer):
        name = "busy"
        switch_interval = 0.04

    class Idle(DataNodeServer):
        name = "idle"

    default = sys.getswitchinterval()
    try:
        assert run(Idle) == 0 and sys.getswitchinterval() == default
        assert run(Busy) == 0 and sys.getswitchinterval() == pytest.approx(0.04)
    finally:
        sys.setswitchinterval(default)


def test_a_description_is_never_inherited(counter):
    class Child(counter.CounterServer):
        pass

    assert runtime.description(Child) is None
    assert runtime.description(counter.CounterServer).startswith("Serve a counter")


def test_a_setting_needs_a_source():
    with pytest.raises(TypeError):
        Setting("nothing")


# -- for real, against the test router ----------------------------------------------------


def counter_process(stack, name, *args, env=None) -> Proc:
    """The counter started the way its console script would start it: its
    entry point called in a fresh interpreter."""
    module, function = "runtime_counter", "main"
    code = f"import sys; sys.argv[0] = 'sisock-counter-server'; from {module} import {function}; {function}()"
    p = Proc(name, [sys.executable, "-c", code, *args],
             env={**stack.env, "PYTHONPATH": TEST_SERVERS, **(env or {})}, cwd=stack.root, logdir=stack.logdir)
    stack.procs.append(p)
    return p


def test_a_runtime_server_joins_and_serves_what_its_settings_say(stack, client):
    p = counter_process(stack, "runtime-counter", "--offset", "5",
                        env={"NAME": "runtime_counter", "COUNTER_STEP": "2"}).start()
    try:
        wait_for(lambda: "runtime_counter" in node_names(client), 30, "the counter to register")
        entry = next(n for n in client.data_nodes() if n["name"] == "runtime_counter")
        assert entry == {"name": "runtime_counter", "description": "A counter run by sisock.runtime"}
        series = client.data("runtime_counter", ["count"], -30, 0)["count"]
        assert len(series.t) >= 20
        assert list(series.values) == [5.0 + 2.0 * (t % 100) for t in series.t]
        assert "sisock-counter-server: counting by 2 from 5 as runtime_counter" in p.output()
    finally:
        p.stop()
    assert p.popen.returncode == 0, p.output()


def test_a_runtime_server_refuses_a_bad_setting_without_touching_the_router(stack, client):
    p = counter_process(stack, "runtime-counter-bad", env={"NAME": "runtime_bad", "COUNTER_STEP": "soon"}).start()
    assert p.popen.wait(60) == 2
    lines = [line for line in p.output().splitlines() if line.strip()]
    assert lines == ["sisock-counter-server: COUNTER_STEP must be a positive number, got 'soon'"]
    time.sleep(0.5)
    assert "runtime_bad" not in node_names(client)
