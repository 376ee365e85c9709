"""``sisock-crossbar``: the router (with the hub) as one command.

Creates the certificate on first start, writes the configuration from the
environment and hands the process over to crossbar, so a container or a
supervisor sees crossbar itself (signals, exit codes) and nothing in between.

With ``--tls-dir`` the certificate and key already in that folder are used
where they are (a read-only mount in a container, a pair shared with other
tools): they are checked, referenced by absolute path, and never created or
copied, so only ``--cbdir`` needs to be writable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from sisock.config import ConfigError, Settings

from . import router_config
from .tls import CERT_NAME, KEY_NAME, check_pair, make_certificate, pair_paths


def crossbar_executable() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "crossbar")
    found = beside if os.access(beside, os.X_OK) else shutil.which("crossbar")
    if not found:
        raise ConfigError("crossbar is not installed: pip install 'sisock[router]'")
    return found


def certificate_paths(tls_dir: str | None) -> tuple[str, str]:
    """What the configuration names: the pair in the router's folder
    (relative names), or the absolute paths of the pair in ``tls_dir``."""
    return (CERT_NAME, KEY_NAME) if tls_dir is None else pair_paths(tls_dir)


def prepare(cbdir: str, settings: Settings, with_hub: bool = True, tls_dir: str | None = None) -> list[str]:
    """Write the config (and, without ``tls_dir``, the certificate) into
    ``cbdir``; the crossbar command line."""
    if tls_dir is None:
        make_certificate(cbdir)
    else:
        check_pair(tls_dir)
    certificate, key = certificate_paths(tls_dir)
    router_config.write(cbdir, settings, with_hub=with_hub, certificate=certificate, key=key)
    level = {"warn": "warn", "trace": "trace"}.get(settings.loglevel, settings.loglevel)
    return [crossbar_executable(), "start", "--cbdir", os.path.abspath(cbdir), "--loglevel", level]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sisock-crossbar", description=__doc__.splitlines()[0])
    parser.add_argument("--cbdir", default=".crossbar", help="router state folder (default: .crossbar)")
    parser.add_argument("--no-hub", action="store_true", help="run the router only (hub started separately)")
    parser.add_argument("--tls-dir", metavar="DIR",
                        help="use the server_cert.pem and server_key.pem already in DIR (may be read-only) "
                             "instead of creating a pair in --cbdir")
    return parser


def planned_config(argv, env) -> dict:
    """The configuration ``sisock-crossbar argv`` writes in environment
    ``env``, without touching any file: what a deployment can commit and
    review (the compose file's router configuration is checked this way)."""
    args = build_parser().parse_args(argv)
    certificate, key = certificate_paths(args.tls_dir)
    return router_config.build(Settings.from_env(env), with_hub=not args.no_hub, certificate=certificate, key=key)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        settings.check_router_secret()
        command = prepare(args.cbdir, settings, with_hub=not args.no_hub, tls_dir=args.tls_dir)
    except ConfigError as exc:
        print(f"sisock-crossbar: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    warning = settings.secret_warning(settings.bind_host)
    if warning:
        print(f"sisock-crossbar: WARNING: {warning}", file=sys.stderr)
    env = dict(os.environ, WAMP_SECRET=settings.wamp_secret)
    os.execve(command[0], command, env)
