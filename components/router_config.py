"""The crossbar configuration, generated from the environment.

Never edited by hand: ports, the WAMP-CRA principal and the permissions all
follow from :class:`sisock.config.Settings`. The secret itself is not written
into the file; crossbar reads it from ``${WAMP_SECRET}`` when it starts.

The TLS certificate and key are named relative to the router's folder (the
pair ``sisock-crossbar`` creates there) unless absolute paths are given, for
a pair kept elsewhere such as a read-only mount in a container.
"""

from __future__ import annotations

import json
import os

from sisock.config import BASE_URI, Settings

from .tls import CERT_NAME, KEY_NAME

ALL = {"call": True, "register": True, "publish": True, "subscribe": True}
NONE = {"call": False, "register": False, "publish": False, "subscribe": False}
HUB_CLASS = "sisock.components.hub.Hub"


def _perm(uri, match="prefix", **allow):
    return {
        "uri": uri,
        "match": match,
        "allow": {**NONE, **allow},
        "disclose": {"caller": False, "publisher": False},
        # Matching a static permission is cheaper than crossbar's cache
        # lookup, which pretty-prints the cached entry for a debug line on
        # every call, logged or not.
        "cache": False,
    }


def roles() -> list[dict]:
    """``server``: all of sisock, read-only OCS feeds, the meta API the hub
    needs. ``anonymous`` (the open OCS port): OCS traffic only."""
    return [
        {
            "name": "server",
            "permissions": [
                _perm(BASE_URI + ".", **ALL),
                _perm("observatory.", subscribe=True),
                _perm("wamp.session.on_leave", match="exact", subscribe=True),
                _perm("wamp.session.get", match="exact", call=True),
                _perm("wamp.registration.", call=True),
            ],
        },
        {
            "name": "anonymous",
            "permissions": [_perm("observatory.", **ALL)],
        },
    ]


def build(settings: Settings, with_hub: bool = True, certificate: str = CERT_NAME, key: str = KEY_NAME) -> dict:
    websocket = {
        "type": "websocket",
        "serializers": ["msgpack", "json", "cbor"],
        # The largest crossbar allows; servers keep replies below it
        # (sisock.contract.MAX_REPLY_VALUES) and refuse rather than exceed it.
        "options": {"max_message_size": 64 * 1024 * 1024},
    }
    server_auth = {
        "wampcra": {
            "type": "static",
            "users": {settings.wamp_user: {"secret": "${WAMP_SECRET}", "role": "server"}},
        }
    }
    router = {
        "type": "router",
        "realms": [{"name": settings.realm, "roles": roles()}],
        "transports": [
            {
                "type": "web",
                "endpoint": {
                    "type": "tcp",
                    "port": settings.tls_port,
                    "interface": settings.bind_host,
                    "tls": {"key": key, "certificate": certificate},
                },
                "paths": {"ws": {**websocket, "auth": server_auth}},
            },
            {
                "type": "web",
                "endpoint": {"type": "tcp", "port": settings.ocs_port, "interface": settings.bind_host},
                "paths": {
                    "ws": {**websocket, "auth": {"anonymous": {"type": "static", "role": "anonymous"}}},
                },
            },
        ],
        "components": [],
    }
    if settings.router_socket:
        # Same WebSocket and WAMP-CRA as the TLS port, for processes on this
        # host: nothing anonymous joins here.
        router["transports"].append({
            "type": "web",
            "endpoint": {"type": "unix", "path": settings.router_socket},
            "paths": {"ws": {**websocket, "auth": server_auth}},
        })
    if with_hub:
        router["components"].append(
            {"type": "class", "classname": HUB_CLASS, "realm": settings.realm, "role": "server"}
        )
    return {"version": 2, "controller": {}, "workers": [router]}


def to_json(config: dict) -> str:
    """The file's exact text: stable, so a committed copy can be compared."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def write(cbdir: str, settings: Settings, with_hub: bool = True, certificate: str = CERT_NAME,
          key: str = KEY_NAME) -> str:
    os.makedirs(cbdir, exist_ok=True)
    path = os.path.join(cbdir, "config.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_json(build(settings, with_hub, certificate, key)))
    return path
