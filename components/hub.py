"""The hub: the registry of live DataNodeServers.

It runs inside the router process (``sisock-crossbar``) or alone
(``sisock-hub``). Its state is soft: on every (re)join it rebuilds the
registry from what the router knows (which sessions registered
``consumer.<name>.get_data``) and asks servers to announce themselves again,
so neither a hub restart nor a router restart needs any server restarted.
"""

from __future__ import annotations

from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import inlineCallbacks

from sisock import contract
from sisock.session import AuthenticatedSession


class Registry:
    """Names of live data nodes and the session serving each."""

    def __init__(self):
        self._nodes: dict[str, dict] = {}

    def add(self, name: str, description, session) -> tuple[bool, bool]:
        """Returns (accepted, is_new)."""
        current = self._nodes.get(name)
        if current is not None and current["session"] != session:
            return False, False
        self._nodes[name] = {"name": name, "description": description, "session": session}
        return True, current is None

    def remove(self, name: str, session=None) -> dict | None:
        node = self._nodes.get(name)
        if node is None or (session is not None and node["session"] != session):
            return None
        return self._nodes.pop(name)

    def remove_session(self, session) -> list[dict]:
        gone = [n for n in self._nodes.values() if n["session"] == session]
        for node in gone:
            del self._nodes[node["name"]]
        return gone

    def owner(self, name: str):
        node = self._nodes.get(name)
        return None if node is None else node["session"]

    def public(self) -> list[dict]:
        return [{"name": n["name"], "description": n["description"]} for n in self._nodes.values()]


class Hub(AuthenticatedSession):
    @inlineCallbacks
    def onJoin(self, details):
        self.registry = Registry()
        yield self.subscribe(self._on_session_leave, "wamp.session.on_leave")
        yield self.register(self.add, contract.DATA_NODE_ADD)
        yield self.register(self.subtract, contract.DATA_NODE_SUBTRACT)
        yield self.register(self.get_data_node, contract.GET_DATA_NODE)
        yield self._recover()
        yield self.publish(contract.HUB_STARTED)
        self.log.info("hub ready with {n} data node(s)", n=len(self.registry.public()))

    @inlineCallbacks
    def _recover(self):
        """Rebuild the registry from the router's registrations."""
        listing = yield self.call("wamp.registration.list")
        for reg_id in listing.get("exact", []):
            reg = yield self.call("wamp.registration.get", reg_id)
            name = contract.node_of_get_data((reg or {}).get("uri"))
            if name is None:
                continue
            callees = yield self.call("wamp.registration.list_callees", reg_id)
            if callees:
                self._add(name, None, callees[0])

    def _add(self, name, description, session):
        accepted, is_new = self.registry.add(name, description, session)
        if accepted:
            node = {"name": name, "description": description}
            self.publish(contract.DATA_NODE_ADDED, node)
            if is_new:
                self.log.info("data node {name} added (session {s})", name=name, s=session)
        return accepted

    @inlineCallbacks
    def add(self, name, description, session_id):
        """``data_node.add``: False when ``name`` is served by another live session."""
        problem = contract.node_name_problem(name)
        if problem is not None:
            raise ApplicationError(contract.ERROR_INVALID_NAME, f"invalid data node name {name!r}: it {problem}")
        owner = self.registry.owner(name)
        if owner is not None and owner != session_id and not (yield self._alive(owner)):
            self._drop(self.registry.remove(name))
        accepted = self._add(name, description, session_id)
        if not accepted:
            self.log.warn("refused data node {name}: already served by session {s}", name=name, s=owner)
        return accepted

    @inlineCallbacks
    def _alive(self, session_id):
        try:
            yield self.call("wamp.session.get", session_id)
        except ApplicationError:
            return False
        return True

    def subtract(self, name, session_id=None):
        """``data_node.subtract``: True if the node was registered."""
        node = self.registry.remove(name, session_id)
        self._drop(node)
        return node is not None

    def get_data_node(self):
        return self.registry.public()

    def _on_session_leave(self, session_id, *args, **kwargs):
        for node in self.registry.remove_session(session_id):
            self._drop(node)

    def _drop(self, node):
        if node is not None:
            self.log.info("data node {name} removed", name=node["name"])
            self.publish(contract.DATA_NODE_SUBTRACTED, {"name": node["name"], "description": node["description"]})


def main():
    from sisock.connect import run

    raise SystemExit(run(Hub))
