"""The ``sisock`` command.

Only parsing and dispatch live here; each subcommand's work is in its own
module, imported when that subcommand runs, so an optional dependency one
subcommand needs (crossbar, cryptography) never breaks the others.
To add a subcommand, write its ``arguments(parser)`` and add a line to
:data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from typing import NamedTuple


class Subcommand(NamedTuple):
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    #: ``"module:function"``, called with the parsed arguments; returns the
    #: exit code.
    run: str


def _tls_arguments(p):
    p.add_argument("--dir", default=".crossbar",
                   help="where to write server_cert.pem and server_key.pem (default: .crossbar)")
    p.add_argument("--host", action="append", default=[], metavar="NAME",
                   help="another host name or address clients use to reach the router (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing pair (every client must then be given the new certificate)")


def run_tls(args) -> int:
    """Reports whether the pair is new: a kept certificate silently ignoring
    ``--host`` would otherwise look like success."""
    from .tls import CERT_NAME, KEY_NAME, make_certificate

    existed = all(os.path.exists(os.path.join(args.dir, n)) for n in (CERT_NAME, KEY_NAME))
    cert, key = make_certificate(args.dir, args.host, args.force)
    if existed and not args.force:
        print(f"kept the existing certificate {cert} and key {key} (--force replaces them)")
    else:
        print(f"wrote certificate {cert} and key {key}")
    print(f"clients trust it with SISOCK_CERT={os.path.abspath(cert)}")
    return 0


def _up_arguments(p):
    from .stack import DEFAULT_SERVERS, DEFAULT_STATE_DIR, NONE, ROUTER_CONSOLE, SERVERS

    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR",
                   help=f"router configuration and certificate (default: {DEFAULT_STATE_DIR})")
    p.add_argument("--servers", default=DEFAULT_SERVERS, metavar="LIST",
                   help=f"comma-separated DataNodeServers to run: {', '.join(SERVERS)}; "
                        f"'{NONE}' runs only router, hub and HTTP bridge (default: {DEFAULT_SERVERS})")
    p.add_argument("--archives-demo", action="store_true",
                   help="also run the APEX weather and UCSC radiometer servers on example archives")
    p.add_argument("--ocs-demo", action="store_true",
                   help="also run an OCS FakeDataAgent and a data-feed server for its feed (needs sisock[ocs])")
    p.add_argument("--router-console", choices=ROUTER_CONSOLE, default=ROUTER_CONSOLE[0],
                   help="what of the router's log is shown here: its warnings and errors, or everything; "
                        "all of it is in DIR/crossbar/router.log either way (default: warnings)")


def _dashboard_arguments(p):
    from .dashboard import DATASOURCES, DEFAULT_DATASOURCE_UID, DEFAULT_URL, INFLUXDB_DATASOURCE_UID, uid_argument

    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"the HTTP bridge to ask for fields (default: {DEFAULT_URL})")
    p.add_argument("--node", action="append", default=[], metavar="NAME",
                   help="only this data node's fields (repeatable; default: every node)")
    p.add_argument("--match", action="append", default=[], metavar="GLOB",
                   help="only fields whose node::field matches, e.g. 'apex_*::*temp*' (repeatable)")
    p.add_argument("--datasource", choices=list(DATASOURCES), default="infinity",
                   help="the Grafana datasource plugin the panels query (default: infinity)")
    p.add_argument("--datasource-uid", metavar="UID",
                   help=f"uid of that datasource in Grafana (default: {DEFAULT_DATASOURCE_UID}, "
                        f"{INFLUXDB_DATASOURCE_UID} for influxdb)")
    p.add_argument("--grafana-url", metavar="URL",
                   help="the bridge's URL as Grafana reaches it, for Infinity queries (default: --url)")
    p.add_argument("--group-by", choices=["node", "unit"], default="node",
                   help="one panel per data node, or per unit across nodes (default: node)")
    p.add_argument("--title", help="dashboard title (default: 'sisock' and the --node names)")
    p.add_argument("--uid", type=uid_argument, help="dashboard uid (default: derived from the title)")
    p.add_argument("--refresh", default="30s", help="auto-refresh interval (default: 30s)")
    p.add_argument("--time-from", default="now-6h", metavar="RANGE",
                   help="start of the default time range (default: now-6h)")
    p.add_argument("--timezone", default="utc",
                   help="'utc', 'browser' or an IANA zone; UTC matches logs read from other sites (default: utc)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")


SUBCOMMANDS: dict[str, Subcommand] = {
    "up": Subcommand("run router, hub, HTTP bridge and DataNodeServers on this machine",
                     _up_arguments, "sisock.components.stack:run"),
    "tls": Subcommand("create the router's self-signed certificate and key",
                      _tls_arguments, "sisock.components.cli:run_tls"),
    "dashboard": Subcommand("write a Grafana dashboard (JSON) for fields a running bridge serves",
                            _dashboard_arguments, "sisock.components.dashboard:run"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that subcommand gets its options.

    Options come from the subcommand's module (``up``'s from the stack,
    which imports Twisted), so ``sisock --help`` and ``sisock tls`` would
    otherwise pay for every module of every subcommand.
    """
    parser = argparse.ArgumentParser(prog="sisock", description="Housekeeping data for Grafana over WAMP.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if only is None or name == only:
            command.arguments(p)
    return parser


def _command(argv) -> str:
    """The subcommand ``argv`` names ("" if none): the top level has no
    option taking a value, so it is the first word not starting with "-"."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(only=_command(argv)).parse_args(argv)
    module, function = SUBCOMMANDS[args.command].run.split(":")
    return getattr(importlib.import_module(module), function)(args)


if __name__ == "__main__":
    sys.exit(main())
