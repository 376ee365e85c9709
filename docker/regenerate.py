#!/usr/bin/env python3
"""Regenerate the generated files under docker/ from the code that makes them.

    .venv/bin/python docker/regenerate.py            # both
    .venv/bin/python docker/regenerate.py router     # docker/crossbar/config.json
    .venv/bin/python docker/regenerate.py dashboards # docker/grafana/dashboards/*.json

``router`` resolves docker-compose.yml with placeholder secrets (the secret
is never written into the router configuration) and writes the
configuration ``sisock-crossbar`` generates for the ``sisock-crossbar``
service's command and environment. It needs ``docker compose`` or
``docker-compose`` (no engine).

``dashboards`` starts a local stack (``sisock up --servers weather`` on free
ports, in a temporary folder), runs ``sisock dashboard`` with the arguments in
:data:`DASHBOARDS` against its bridge, then stops the stack.

tests/test_compose.py checks that the committed files equal what this
produces, so a change to the code that generates them fails until they are
regenerated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COMPOSE_FILE = os.path.join(ROOT, "docker-compose.yml")
ENV_EXAMPLE = os.path.join(HERE, "env.example")
ROUTER_CONFIG = os.path.join(HERE, "crossbar", "config.json")
DASHBOARD_DIR = os.path.join(HERE, "grafana", "dashboards")
ROUTER_SERVICE = "sisock-crossbar"
#: The bridge as Grafana reaches it inside the compose stack.
GRAFANA_BRIDGE_URL = "http://sisock-http:5000"

#: File name -> the ``sisock dashboard`` arguments (besides --url and -o).
DASHBOARDS: dict[str, list[str]] = {
    "apex-weather.json": [
        "--grafana-url", GRAFANA_BRIDGE_URL, "--node", "apex_archive", "--title", "APEX weather",
    ],
}
#: The ``sisock up`` servers whose data nodes the dashboards show.
STACK_SERVERS = "weather"
#: Data nodes that must be listed by the bridge before dashboards are made.
STACK_NODES = ("apex_archive",)


# -- compose ---------------------------------------------------------------


def compose_command() -> list[str]:
    """``docker-compose`` (v1) or ``docker compose`` (v2), whichever exists."""
    if shutil.which("docker-compose"):
        return [shutil.which("docker-compose")]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    raise SystemExit("regenerate: neither docker-compose nor `docker compose` is installed")


def env_file_with_placeholders(path: str) -> None:
    """docker/env.example with every empty (required) value filled in."""
    with open(ENV_EXAMPLE, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(path, "w", encoding="utf-8") as out:
        for line in lines:
            match = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=", line)
            out.write((f"{match.group(1)}=placeholder-{match.group(1).lower()}" if match else line) + "\n")


def resolved_compose(env_file: str, command: list[str] | None = None) -> dict:
    """docker-compose.yml as compose resolves it with ``env_file``. The
    environment is reduced to PATH and HOME so that variables of the caller
    cannot leak into the result."""
    import yaml

    argv = [*(command or compose_command()), "--env-file", env_file, "-f", COMPOSE_FILE, "config"]
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return yaml.safe_load(result.stdout)


def router_config_text(compose: dict) -> str:
    """The configuration the router service writes, as file text."""
    from sisock.components import crossbar, router_config

    service = compose["services"][ROUTER_SERVICE]
    script, *argv = service["command"]
    if script != "sisock-crossbar":
        raise ValueError(f"the {ROUTER_SERVICE} service runs {script}, not sisock-crossbar")
    env = {k: "" if v is None else str(v) for k, v in (service.get("environment") or {}).items()}
    return router_config.to_json(crossbar.planned_config(argv, env))


def regenerate_router() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env_file = os.path.join(tmp, "env")
        env_file_with_placeholders(env_file)
        text = router_config_text(resolved_compose(env_file))
    os.makedirs(os.path.dirname(ROUTER_CONFIG), exist_ok=True)
    with open(ROUTER_CONFIG, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(ROUTER_CONFIG, ROOT)}")


# -- dashboards ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _script(name: str) -> str:
    """A console script of the environment running this file."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else (shutil.which(name) or name)


def _nodes_listed(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/nodes", timeout=2) as response:
            listed = {n["node"] for n in json.load(response)}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return set(STACK_NODES) <= listed


def dashboard_command(name: str, url: str, output: str) -> list[str]:
    return [_script("sisock"), "dashboard", "--url", url, *DASHBOARDS[name], "-o", output]


def regenerate_dashboards(timeout: float = 120.0) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PORT=str(port), CROSSBAR_TLS_PORT=str(_free_port()),
               CROSSBAR_OCS_PORT=str(_free_port()), BIND_HOST="127.0.0.1", CROSSBAR_HOST="127.0.0.1")
    env.pop("SISOCK_CERT", None)
    with tempfile.TemporaryDirectory() as state:
        up = [_script("sisock"), "up", "--servers", STACK_SERVERS, "--state-dir", state]
        print("starting:", " ".join(up), f"(bridge on {url})")
        stack = subprocess.Popen(up, env=env, cwd=state, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while not _nodes_listed(url):
                if stack.poll() is not None:
                    raise SystemExit(f"regenerate: sisock up exited with status {stack.returncode}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"regenerate: {', '.join(STACK_NODES)} not listed at {url} "
                                     f"after {timeout:g} s")
                time.sleep(0.5)
            for name in DASHBOARDS:
                command = dashboard_command(name, url, os.path.join(DASHBOARD_DIR, name))
                print("running:", " ".join(command))
                subprocess.run(command, check=True)
        finally:
            _stop(stack)


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C, as a user would; then the whole process group if needed."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["router", "dashboards", "all"], default="all")
    args = parser.parse_args(argv)
    if args.what in ("router", "all"):
        regenerate_router()
    if args.what in ("dashboards", "all"):
        regenerate_dashboards()
    return 0


if __name__ == "__main__":
    sys.exit(main())
