"""Where the router finds its certificate and key.

``sisock-crossbar`` either creates the pair in its own folder (``--cbdir``,
the default, unchanged) or, with ``--tls-dir``, uses a pair made elsewhere
and mounted read-only, as containers do: checked, referenced by absolute
path, never written. The last test runs a real router that way and joins it
over TLS.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from sisock.base import uri
from sisock.components import crossbar, router_config, tls
from sisock.config import Settings

from procs import BIN, Proc, free_port, port_open, wait_for

SECRET = "a-router-files-test-secret"


@pytest.fixture
def pair(tmp_path):
    """A pair made the documented way (``sisock tls``) in its own folder."""
    directory = tmp_path / "certs"
    tls.make_certificate(str(directory), hosts=["sisock-crossbar"])
    return directory


def snapshot(directory) -> dict[str, str]:
    """Every file under ``directory`` with a hash of its bytes."""
    out = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def tls_endpoint(config: dict) -> dict:
    (router,) = config["workers"]
    return router["transports"][0]["endpoint"]["tls"]


# ---------------------------------------------------------------- the config


def test_no_socket_unless_one_is_configured():
    (router,) = router_config.build(Settings())["workers"]
    assert [t["endpoint"]["type"] for t in router["transports"]] == ["tcp", "tcp"]


def test_socket_transport_admits_only_the_server_principal(tmp_path):
    path = str(tmp_path / "router.sock")
    settings = Settings.from_env({"SISOCK_ROUTER_SOCKET": path, "WAMP_USER": "node"})
    (router,) = router_config.build(settings)["workers"]
    tls_port, _ocs, unix = router["transports"]
    assert unix["endpoint"] == {"type": "unix", "path": path}
    assert unix["paths"]["ws"]["auth"] == tls_port["paths"]["ws"]["auth"]
    assert list(unix["paths"]["ws"]["auth"]) == ["wampcra"]
    assert unix["paths"]["ws"]["auth"]["wampcra"]["users"] == {"node": {"secret": "${WAMP_SECRET}", "role": "server"}}


def test_socket_path_is_absolute_and_short_enough(tmp_path, monkeypatch):
    from sisock.config import ConfigError

    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({"SISOCK_ROUTER_SOCKET": "r.sock"}).router_socket == str(tmp_path / "r.sock")
    assert Settings.from_env({"SISOCK_ROUTER_SOCKET": "r.sock"}).router_address == f"unix:{tmp_path / 'r.sock'}"
    with pytest.raises(ConfigError, match="SISOCK_ROUTER_SOCKET .* longer than the 107 bytes"):
        Settings.from_env({"SISOCK_ROUTER_SOCKET": "/" + "d" * 110})


def test_prepare_makes_the_socket_folder(tmp_path):
    path = tmp_path / "run" / "sisock" / "router.sock"
    crossbar.prepare(str(tmp_path / "cb"), Settings.from_env({"SISOCK_ROUTER_SOCKET": str(path)}))
    assert path.parent.is_dir() and not path.exists()


def test_the_stack_shares_a_socket_in_the_router_folder_when_its_path_fits(tmp_path):
    from sisock.components.stack import default_socket

    assert default_socket(str(tmp_path / "crossbar")) == str(tmp_path / "crossbar" / "router.sock")
    assert default_socket("/" + "d" * 100) == ""  # too long to bind: TLS only


def test_default_config_names_the_pair_in_the_router_folder():
    config = router_config.build(Settings())
    assert tls_endpoint(config) == {"certificate": tls.CERT_NAME, "key": tls.KEY_NAME}


def test_config_can_name_a_pair_elsewhere_by_absolute_path():
    config = router_config.build(Settings(), certificate="/certs/server_cert.pem", key="/certs/server_key.pem")
    assert tls_endpoint(config) == {"certificate": "/certs/server_cert.pem", "key": "/certs/server_key.pem"}
    # Only the TLS file names differ from the default configuration.
    default = router_config.build(Settings())
    tls_endpoint(config).update(tls_endpoint(default))
    assert config == default


def test_written_file_is_the_stable_text(tmp_path):
    settings = Settings.from_env({"WAMP_SECRET": SECRET, "BIND_HOST": "0.0.0.0"})
    path = router_config.write(str(tmp_path), settings, certificate="/c.pem", key="/k.pem")
    text = open(path, encoding="utf-8").read()
    assert text == router_config.to_json(router_config.build(settings, certificate="/c.pem", key="/k.pem"))
    assert SECRET not in text


def test_pair_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cert, key = tls.pair_paths("certs")
    assert cert == str(tmp_path / "certs" / tls.CERT_NAME)
    assert key == str(tmp_path / "certs" / tls.KEY_NAME)


# ------------------------------------------------------------ prepare / check


def test_prepare_without_tls_dir_creates_the_pair_in_cbdir(tmp_path, monkeypatch):
    monkeypatch.setattr(crossbar, "crossbar_executable", lambda: "/bin/crossbar")
    cbdir = tmp_path / "cb"
    command = crossbar.prepare(str(cbdir), Settings())
    assert command[:4] == ["/bin/crossbar", "start", "--cbdir", str(cbdir)]
    assert (cbdir / tls.CERT_NAME).is_file() and (cbdir / tls.KEY_NAME).is_file()
    config = json.loads((cbdir / "config.json").read_text())
    assert tls_endpoint(config) == {"certificate": tls.CERT_NAME, "key": tls.KEY_NAME}


def test_prepare_with_tls_dir_uses_the_pair_where_it_is_and_writes_nothing_there(tmp_path, pair, monkeypatch):
    monkeypatch.setattr(crossbar, "crossbar_executable", lambda: "/bin/crossbar")
    before = snapshot(pair)
    cbdir = tmp_path / "cb"
    crossbar.prepare(str(cbdir), Settings(), tls_dir=str(pair))
    assert snapshot(pair) == before
    assert sorted(os.listdir(cbdir)) == ["config.json"], "no certificate may be created when one is given"
    config = json.loads((cbdir / "config.json").read_text())
    assert tls_endpoint(config) == {"certificate": str(pair / tls.CERT_NAME), "key": str(pair / tls.KEY_NAME)}


def test_planned_config_is_what_prepare_writes(tmp_path, pair, monkeypatch):
    monkeypatch.setattr(crossbar, "crossbar_executable", lambda: "/bin/crossbar")
    env = {"WAMP_SECRET": SECRET, "BIND_HOST": "0.0.0.0", "CROSSBAR_TLS_PORT": "28443"}
    argv = ["--cbdir", str(tmp_path / "cb"), "--tls-dir", str(pair)]
    args = crossbar.build_parser().parse_args(argv)
    crossbar.prepare(args.cbdir, Settings.from_env(env), with_hub=not args.no_hub, tls_dir=args.tls_dir)
    written = json.loads((tmp_path / "cb" / "config.json").read_text())
    assert written == crossbar.planned_config(argv, env)
    assert crossbar.planned_config([*argv, "--no-hub"], env)["workers"][0]["components"] == []


def test_check_pair_names_the_missing_files_and_the_command_that_makes_them(tmp_path):
    with pytest.raises(tls.CertificateError) as err:
        tls.check_pair(str(tmp_path / "empty"))
    message = str(err.value)
    assert "\n" not in message
    assert tls.CERT_NAME in message and tls.KEY_NAME in message and "sisock tls --dir" in message


def test_check_pair_refuses_a_key_of_another_certificate(tmp_path, pair):
    other = tmp_path / "other"
    tls.make_certificate(str(other))
    shutil.copy(other / tls.KEY_NAME, pair / tls.KEY_NAME)
    with pytest.raises(tls.CertificateError, match="does not match"):
        tls.check_pair(str(pair))


def test_check_pair_refuses_files_that_are_not_pem(pair):
    (pair / tls.CERT_NAME).write_text("not a certificate\n")
    with pytest.raises(tls.CertificateError, match="cannot load"):
        tls.check_pair(str(pair))


def test_check_pair_says_which_file_this_user_cannot_read(pair, monkeypatch):
    # Simulated: the tests may run as root, who can read anything.
    key = str(pair / tls.KEY_NAME)
    real = os.access
    monkeypatch.setattr(tls.os, "access", lambda p, mode: p != key and real(p, mode))
    with pytest.raises(tls.CertificateError) as err:
        tls.check_pair(str(pair))
    assert key in str(err.value) and f"uid {os.getuid()}" in str(err.value)


def test_check_pair_returns_the_absolute_paths(pair):
    assert tls.check_pair(str(pair)) == tls.pair_paths(str(pair))


def test_main_refuses_a_missing_pair_in_one_line_before_writing_anything(tmp_path):
    cbdir = tmp_path / "cb"
    env = {**os.environ, "WAMP_SECRET": SECRET, "BIND_HOST": "127.0.0.1"}
    result = subprocess.run(
        [os.path.join(BIN, "sisock-crossbar"), "--cbdir", str(cbdir), "--tls-dir", str(tmp_path / "none")],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "sisock tls" in result.stderr
    assert not cbdir.exists()


# ------------------------------------------------------------ a real router


def test_router_serves_tls_with_a_read_only_pair(tmp_path, pair):
    """The container layout on one machine: the pair in a folder nobody
    writes to, the router's own folder elsewhere, a client that trusts only
    the certificate."""
    from sisock.client import Client

    os.chmod(pair / tls.KEY_NAME, 0o400)
    os.chmod(pair / tls.CERT_NAME, 0o444)
    os.chmod(pair, 0o555)
    before = snapshot(pair)
    tls_port, ocs_port = free_port(), free_port()
    env = {
        **os.environ, "WAMP_SECRET": SECRET, "BIND_HOST": "127.0.0.1", "CROSSBAR_HOST": "127.0.0.1",
        "CROSSBAR_TLS_PORT": str(tls_port), "CROSSBAR_OCS_PORT": str(ocs_port),
        "SISOCK_CERT": str(pair / tls.CERT_NAME), "PYTHONUNBUFFERED": "1",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    cbdir = tmp_path / "cb"
    router = Proc.script("router-tls-dir", "sisock-crossbar", "--cbdir", str(cbdir), "--tls-dir", str(pair),
                         env=env, cwd=str(tmp_path), logdir=str(logs)).start()
    try:
        wait_for(lambda: port_open(tls_port) and port_open(ocs_port), 60, "the router's ports")
        client = Client(Settings.from_env(env), timeout=30)
        try:
            # The hub, inside the router, answers over the TLS transport.
            wait_for(lambda: client.call(uri("consumer.get_data_node")) == [], 30, "the hub to answer")
        finally:
            client.close()
    finally:
        router.stop()
        os.chmod(pair, 0o755)
    assert snapshot(pair) == before
    assert not (cbdir / tls.CERT_NAME).exists() and not (cbdir / tls.KEY_NAME).exists()
