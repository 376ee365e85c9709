"""``sisock-crossbar``: the router (with the hub) as one command.

Creates the certificate on first start, writes the configuration from the
environment and hands the process over to crossbar, so a container or a
supervisor sees crossbar itself (signals, exit codes) and nothing in between.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from sisock.config import ConfigError, Settings

from . import router_config
from .tls import make_certificate


def crossbar_executable() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "crossbar")
    found = beside if os.access(beside, os.X_OK) else shutil.which("crossbar")
    if not found:
        raise ConfigError("crossbar is not installed: pip install 'sisock[router]'")
    return found


def prepare(cbdir: str, settings: Settings, with_hub: bool = True) -> list[str]:
    """Write certificate and config into ``cbdir``; the crossbar command line."""
    make_certificate(cbdir)
    router_config.write(cbdir, settings, with_hub=with_hub)
    level = {"warn": "warn", "trace": "trace"}.get(settings.loglevel, settings.loglevel)
    return [crossbar_executable(), "start", "--cbdir", os.path.abspath(cbdir), "--loglevel", level]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sisock-crossbar", description=__doc__.splitlines()[0])
    parser.add_argument("--cbdir", default=".crossbar", help="router state folder (default: .crossbar)")
    parser.add_argument("--no-hub", action="store_true", help="run the router only (hub started separately)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        settings.check_router_secret()
        command = prepare(args.cbdir, settings, with_hub=not args.no_hub)
    except ConfigError as exc:
        print(f"sisock-crossbar: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    warning = settings.secret_warning(settings.bind_host)
    if warning:
        print(f"sisock-crossbar: WARNING: {warning}", file=sys.stderr)
    env = dict(os.environ, WAMP_SECRET=settings.wamp_secret)
    os.execve(command[0], command, env)
