"""OCS site configuration for agents run next to sisock.

``ocs-agent-cli`` needs a site file to map an instance-id to its agent class
and to find the router. Agents join on the router's open OCS port, where the
anonymous role may use ``observatory.`` only, so ``address_root`` is fixed.
Used by ``sisock up --ocs-demo`` and by the tests that run real agents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

ADDRESS_ROOT = "observatory"
SITE_HOST = "sisock-local"


@dataclass
class AgentSpec:
    instance_id: str
    agent_class: str
    arguments: list[str] = field(default_factory=list)

    def as_site_entry(self) -> dict:
        # ocs's ArgContainer wants one word per list item.
        return {"agent-class": self.agent_class, "instance-id": self.instance_id,
                "arguments": [str(a) for a in self.arguments]}


def write_site_config(directory, ocs_port: int, agents: list[AgentSpec], host: str = SITE_HOST,
                      realm: str = "test_realm", wamp_http: str | None = None, router_host: str = "127.0.0.1") -> str:
    """Write ``site.yaml`` in ``directory``; return its path.

    The host block has a fixed name, so ``--site-host`` picks it whatever
    the machine is called. ``wamp_http`` is only needed by control clients."""
    import yaml

    os.makedirs(directory, exist_ok=True)
    hub = {"wamp_server": f"ws://{router_host}:{ocs_port}/ws", "wamp_realm": realm, "address_root": ADDRESS_ROOT}
    if wamp_http:
        hub["wamp_http"] = wamp_http
    site = {"hub": hub, "hosts": {host: {"agent-instances": [a.as_site_entry() for a in agents]}}}
    path = os.path.join(str(directory), "site.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(site, f, sort_keys=False)
    return path


def agent_argv(agent_cli: str, site_file: str, instance_id: str, *extra: str, host: str = SITE_HOST) -> list[str]:
    return [agent_cli, "--site-file", site_file, "--site-host", host, "--instance-id", instance_id, *extra]
