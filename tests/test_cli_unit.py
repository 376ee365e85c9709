"""``sisock tls``, the generated router config and ``sisock up``'s refusals.

None of this needs a router: the point is that a misconfiguration is caught
before anything starts, with a message that says what to change.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import socket
import stat
import sys

import pytest
from cryptography import x509

from sisock.components import cli, router_config, stack
from sisock.config import Settings

SECRET = "not-the-default-s3cret"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("WAMP_", "CROSSBAR_", "SISOCK_")) or name in ("PORT", "BIND_HOST", "LOGLEVEL"):
            monkeypatch.delenv(name)


def free_port(exclude=()) -> int:
    """A free port in the range these tests may use (28000-29000)."""
    candidates = [p for p in range(28600, 29000) if p not in exclude]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 28600-28999")


@contextlib.contextmanager
def occupied_port():
    s = socket.socket()
    for port in random.sample(range(28600, 29000), 400):
        try:
            s.bind(("127.0.0.1", port))
            break
        except OSError:
            continue
    s.listen(1)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def read_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


# ------------------------------------------------------------------ sisock tls


def test_tls_writes_private_key_and_certificate_for_loopback(tmp_path, capsys):
    d = tmp_path / "cb"
    assert cli.main(["tls", "--dir", str(d), "--host", "example.test"]) == 0
    key, cert = d / "server_key.pem", d / "server_cert.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    san = read_cert(cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "example.test" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    out = capsys.readouterr().out
    assert str(cert) in out and str(key) in out


def test_tls_keeps_existing_pair_unless_forced(tmp_path, capsys):
    d = str(tmp_path)
    cli.main(["tls", "--dir", d])
    capsys.readouterr()
    cert_path = os.path.join(d, "server_cert.pem")
    first = open(cert_path, "rb").read()

    assert cli.main(["tls", "--dir", d]) == 0
    assert open(cert_path, "rb").read() == first
    assert "kept" in capsys.readouterr().out

    assert cli.main(["tls", "--dir", d, "--force"]) == 0
    assert open(cert_path, "rb").read() != first
    assert "kept" not in capsys.readouterr().out


# ------------------------------------------------------------- router config


def test_router_config_follows_settings_and_never_holds_the_secret(tmp_path):
    settings = Settings.from_env({
        "WAMP_USER": "alice", "WAMP_SECRET": SECRET,
        "CROSSBAR_TLS_PORT": "28443", "CROSSBAR_OCS_PORT": "28444",
    })
    path = router_config.write(str(tmp_path), settings)
    text = open(path, encoding="utf-8").read()
    assert SECRET not in text
    config = json.loads(text)
    assert config == router_config.build(settings)

    (router,) = config["workers"]
    tls, ocs = router["transports"]
    assert tls["endpoint"]["port"] == 28443 and "tls" in tls["endpoint"]
    assert ocs["endpoint"]["port"] == 28444 and "tls" not in ocs["endpoint"]
    users = tls["paths"]["ws"]["auth"]["wampcra"]["users"]
    # Crossbar substitutes only the braced form (``^\$\{(.+)\}$``); a bare
    # ``$WAMP_SECRET`` would become the literal secret.
    assert users == {"alice": {"secret": "${WAMP_SECRET}", "role": "server"}}
    assert ocs["paths"]["ws"]["auth"] == {"anonymous": {"type": "static", "role": "anonymous"}}

    (realm,) = router["realms"]
    anonymous = next(r for r in realm["roles"] if r["name"] == "anonymous")
    assert [p["uri"] for p in anonymous["permissions"]] == ["observatory."]
    assert all(p["match"] == "prefix" for p in anonymous["permissions"])


# ----------------------------------------------------------------- sisock up


def test_up_rejects_unknown_server_and_names_the_valid_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SISOCK_ROUTER_SOCKET", raising=False)
    code = cli.main(["up", "--state-dir", str(tmp_path / "s"), "--servers", "weather,bogus"])
    assert code == 2
    # The stack's socket goes to its children only: a later stack started
    # by this process must not inherit this one's (gone) folder.
    assert "SISOCK_ROUTER_SOCKET" not in os.environ
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bogus" in err
    for name in stack.SERVERS:
        assert name in err
    assert not (tmp_path / "s").exists()


def test_up_names_a_missing_console_script(tmp_path, capsys, monkeypatch):
    real = stack.find_script
    monkeypatch.setattr(stack, "find_script", lambda s: None if s == "sisock-sensors-server" else real(s))
    assert cli.main(["up", "--state-dir", str(tmp_path), "--servers", "sensors"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sisock-sensors-server" in err and "sensors" in err


@pytest.mark.parametrize("variable", ["PORT", "CROSSBAR_TLS_PORT"])
def test_up_refuses_a_port_in_use(tmp_path, capsys, monkeypatch, variable):
    with occupied_port() as busy:
        others = [free_port(exclude={busy})]
        others.append(free_port(exclude={busy, *others}))
        ports = dict(zip(["PORT", "CROSSBAR_TLS_PORT", "CROSSBAR_OCS_PORT"], [busy, *others], strict=True))
        if variable != "PORT":
            ports["PORT"], ports[variable] = ports[variable], busy
        for name, port in ports.items():
            monkeypatch.setenv(name, str(port))
        code = cli.main(["up", "--state-dir", str(tmp_path / "s"), "--servers", "none"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(busy) in err and variable in err and "in use" in err
    assert not (tmp_path / "s").exists(), "nothing may be created before the checks pass"


def test_up_refuses_two_roles_on_one_port(tmp_path, capsys, monkeypatch):
    port = free_port()
    monkeypatch.setenv("PORT", str(port))
    monkeypatch.setenv("CROSSBAR_TLS_PORT", str(port))
    assert cli.main(["up", "--state-dir", str(tmp_path), "--servers", "none"]) == 2
    assert str(port) in capsys.readouterr().err


def test_server_list_parsing():
    assert stack.parse_servers("none") == []
    assert stack.parse_servers("weather, sensors,weather") == ["weather", "sensors"]
    with pytest.raises(stack.StackError):
        stack.parse_servers("")


def test_children_inherit_the_environment_and_get_the_stack_certificate(tmp_path):
    env = stack.child_environment(str(tmp_path), {"WAMP_SECRET": SECRET, "CROSSBAR_TLS_PORT": "28443"})
    assert env["WAMP_SECRET"] == SECRET and env["CROSSBAR_TLS_PORT"] == "28443"
    assert env["SISOCK_CERT"] == os.path.join(str(tmp_path), "server_cert.pem")
    kept = stack.child_environment(str(tmp_path), {"SISOCK_CERT": "/elsewhere.pem"})
    assert kept["SISOCK_CERT"] == "/elsewhere.pem"


def test_plan_starts_router_first_and_the_scanner_with_the_g3_reader(monkeypatch):
    monkeypatch.setattr(stack, "find_script", lambda s: "/bin/" + s)
    children = stack.plan(["g3-reader", "weather"], "/state/crossbar")
    assert [name for name, _ in children] == ["crossbar", "http", "g3-file-scanner", "g3-reader", "weather"]
    assert children[0][1] == ["/bin/sisock-crossbar", "--cbdir", "/state/crossbar"]
    assert children[-1][1] == ["/bin/sisock-weather-server", "--replay"]


def test_router_console_reaches_sisock_crossbar(monkeypatch):
    monkeypatch.setattr(stack, "find_script", lambda s: "/bin/" + s)
    args = cli.build_parser().parse_args(["up", "--router-console", "all"])
    children = stack.plan([], "/state/crossbar", args.router_console)
    assert children[0][1] == ["/bin/sisock-crossbar", "--cbdir", "/state/crossbar", "--console", "all"]
    assert cli.build_parser().parse_args(["up"]).router_console == "warnings"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["up", "--router-console", "loud"])


def test_children_run_through_the_launcher_which_execs_them(tmp_path):
    """The launcher gives the child a session of its own and execs the
    command itself, so the process ProcessMonitor watches is the child."""
    import subprocess

    out = tmp_path / "out"
    script = ("import os, sys; open(sys.argv[1], 'w').write("
              "f'{os.getpid()} {os.getsid(0)} {os.getpgrp()} {os.getppid()}')")
    argv = stack.launched([sys.executable, "-c", script, str(out)])
    child = subprocess.Popen(argv)
    assert child.wait(30) == 0
    pid, sid, pgrp, ppid = map(int, out.read_text().split())
    assert pid == sid == pgrp == child.pid and ppid == os.getpid()


def test_launcher_refuses_to_start_an_orphan(tmp_path):
    """Started for a ``sisock up`` that is already gone: nothing runs."""
    import subprocess

    out = tmp_path / "out"
    argv = stack.launched([sys.executable, "-c", "open(__import__('sys').argv[1], 'w')", str(out)])
    argv[argv.index(str(os.getpid()))] = "1"  # not our parent
    assert subprocess.run(argv, timeout=30).returncode == 1
    assert not out.exists()


@pytest.mark.parametrize(("env", "refused"), [
    ({}, False),                                                         # loopback: the default is fine
    ({"BIND_HOST": "0.0.0.0"}, True),                                    # reachable: refused
    ({"BIND_HOST": "0.0.0.0", "WAMP_SECRET": "a-real-one"}, False),
    ({"BIND_HOST": "0.0.0.0", "SISOCK_ALLOW_DEFAULT_SECRET": "1"}, False),  # explicitly allowed
    ({"BIND_HOST": "::1"}, False),
])
def test_router_refuses_the_default_secret_off_loopback(env, refused):
    from sisock.config import ConfigError

    settings = Settings.from_env(env)
    if refused:
        with pytest.raises(ConfigError, match="SISOCK_ALLOW_DEFAULT_SECRET"):
            settings.check_router_secret()
    else:
        settings.check_router_secret()
