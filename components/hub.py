"""The hub: the registry of live DataNodeServers.

It runs inside the router process (``sisock-crossbar``) or alone
(``sisock-hub``). Its state is soft: on every (re)join it rebuilds the
registry from what the router knows (which sessions registered
``consumer.<name>.get_data``, and with which invocation policy) and asks
servers to announce themselves again, so neither a hub restart nor a router
restart needs any server restarted.

A name is exclusive (one session serves it, a second one is refused) unless
its servers announce it as shared, with one of the router's invocation
policies for shared registrations: then every session announcing it with the
same policy joins it, and the name is listed once, from the first session's
arrival until the last one's departure.
"""

from __future__ import annotations

from typing import NamedTuple

from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import inlineCallbacks

from sisock import contract
from sisock.session import AuthenticatedSession


class Admission(NamedTuple):
    """What :meth:`Registry.add` made of an announcement."""

    accepted: bool
    #: The name was not listed before.
    is_new: bool
    #: A session serving the name already announced it again (a server whose
    #: fields changed does, to have consumers refresh them).
    again: bool = False
    #: Why it was refused, for the log; None when accepted.
    reason: str | None = None


def _mode(policy) -> str:
    return "exclusive" if policy is None else f"shared ({policy})"


class Registry:
    """Names of live data nodes and the sessions serving each.

    A node is exclusive (``policy`` None, one session) or shared with an
    invocation policy by any number of sessions, all of which announced it
    with that policy.
    """

    def __init__(self):
        self._nodes: dict[str, dict] = {}

    def add(self, name: str, description, session, policy: str | None = None) -> Admission:
        node = self._nodes.get(name)
        if node is None:
            self._nodes[name] = {"name": name, "description": description, "policy": policy,
                                 "sessions": {session: None}}
            return Admission(True, True)
        sessions = node["sessions"]
        if session in sessions and (policy == node["policy"] or len(sessions) == 1):
            # A sole session may change its mode: it re-registered with the router.
            node["policy"] = policy
            if description is not None:
                node["description"] = description
            return Admission(True, False, again=True)
        if node["policy"] is None or policy != node["policy"]:
            if node["policy"] is None and policy is None:
                reason = "the name is already taken"
            else:
                reason = (f"the node is {_mode(node['policy'])} and this server announced it "
                          f"{_mode(policy)}: every server of one name must be started with the same "
                          "SISOCK_SHARED")
            return Admission(False, False, reason=reason)
        sessions[session] = None
        if node["description"] is None:
            node["description"] = description
        return Admission(True, False)

    def remove(self, name: str, session=None) -> dict | None:
        """Take ``session`` off ``name`` (without one: the whole node).
        Returns the node once no session serves it any more, else None."""
        node = self._nodes.get(name)
        if node is None:
            return None
        if session is not None:
            if session not in node["sessions"]:
                return None
            del node["sessions"][session]
            if node["sessions"]:
                return None
        return self._nodes.pop(name)

    def remove_session(self, session) -> list[dict]:
        """Take ``session`` off every node; returns the nodes it was the last of."""
        gone = []
        for node in list(self._nodes.values()):
            if session in node["sessions"]:
                removed = self.remove(node["name"], session)
                if removed is not None:
                    gone.append(removed)
        return gone

    def names_of(self, session) -> list[str]:
        """The names ``session`` serves."""
        return [name for name, node in self._nodes.items() if session in node["sessions"]]

    def holds(self, name: str, session) -> bool:
        node = self._nodes.get(name)
        return node is not None and session in node["sessions"]

    def sessions(self, name: str) -> list:
        """The sessions serving ``name``, in the order they joined."""
        node = self._nodes.get(name)
        return [] if node is None else list(node["sessions"])

    def policy(self, name: str) -> str | None:
        node = self._nodes.get(name)
        return None if node is None else node["policy"]

    def entry(self, name: str) -> dict | None:
        """``{"name", "description"}`` of ``name``, or None."""
        node = self._nodes.get(name)
        return None if node is None else _public(node)

    def public(self) -> list[dict]:
        return [_public(n) for n in self._nodes.values()]


def _public(node: dict) -> dict:
    return {"name": node["name"], "description": node["description"]}


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
        """Rebuild the registry from the router's registrations: every
        callee of a ``get_data``, shared with the registration's policy
        when it is not the router's ``single``."""
        listing = yield self.call("wamp.registration.list")
        for reg_id in listing.get("exact", []):
            reg = (yield self.call("wamp.registration.get", reg_id)) or {}
            name = contract.node_of_get_data(reg.get("uri"))
            if name is None:
                continue
            invoke = reg.get("invoke") or contract.INVOKE_SINGLE
            policy = None if invoke == contract.INVOKE_SINGLE else invoke
            callees = list((yield self.call("wamp.registration.list_callees", reg_id)) or [])
            if policy is None:
                callees = callees[:1]
            for session in callees:
                self._add(name, None, session, policy)

    def _add(self, name, description, session, policy=None) -> Admission:
        admission = self.registry.add(name, description, session, policy)
        if not admission.accepted:
            return admission
        # Consumers refresh a node's fields on this event: it is published
        # when a name appears and when a session of it announces itself
        # again, never when a further session joins a shared name.
        if admission.is_new or admission.again:
            self.publish(contract.DATA_NODE_ADDED, self.registry.entry(name))
        if admission.is_new:
            self.log.info("data node {name} added (session {s}, {m})", name=name, s=session, m=_mode(policy))
        elif not admission.again:
            self.log.info("session {s} joined shared data node {name} ({n} session(s))", s=session, name=name,
                          n=len(self.registry.sessions(name)))
        return admission

    @inlineCallbacks
    def add(self, name, description, session_id, shared=None):
        """``data_node.add``: False when ``name`` is served by another live
        session, or by live sessions sharing it with another policy (or not
        sharing it). ``shared``, an invocation policy, joins the sessions of
        a name shared with that policy; without it the node is exclusive."""
        problem = contract.node_name_problem(name)
        if problem is not None:
            raise ApplicationError(contract.ERROR_INVALID_NAME, f"invalid data node name {name!r}: it {problem}")
        try:
            policy = contract.shared_policy(shared)
        except ValueError as exc:
            raise ApplicationError(contract.ERROR_INVALID_SHARING,
                                   f"invalid sharing of data node {name!r}: {contract.SHARED_KEYWORD} {exc}") from None
        admission = self._add(name, description, session_id, policy)
        if not admission.accepted:
            # Sessions that ended without the hub hearing of it (it was away)
            # must not keep the name.
            others = [s for s in self.registry.sessions(name) if s != session_id]
            dead = []
            for other in others:
                if not (yield self._alive(other)):
                    dead.append(other)
            if dead:
                for other in dead:
                    self._drop(self.registry.remove(name, other))
                admission = self._add(name, description, session_id, policy)
        if not admission.accepted:
            holders = ", ".join(str(s) for s in self.registry.sessions(name))
            if policy is None and self.registry.policy(name) is None:
                self.log.warn("refused data node {name}: already served by session {s}", name=name, s=holders)
            else:
                self.log.warn("refused data node {name} from session {s}: {why} (served by session(s) {o})",
                              name=name, s=session_id, why=admission.reason, o=holders)
        return admission.accepted

    @inlineCallbacks
    def _alive(self, session_id):
        try:
            yield self.call("wamp.session.get", session_id)
        except ApplicationError:
            return False
        return True

    def subtract(self, name, session_id=None):
        """``data_node.subtract``: True if the node (or, given, that session
        of it) was registered. A shared node stays while other sessions
        serve it; without ``session_id`` the whole node goes."""
        if session_id is None:
            known = bool(self.registry.sessions(name))
        else:
            known = self.registry.holds(name, session_id)
        self._drop(self.registry.remove(name, session_id))
        return known

    def get_data_node(self):
        return self.registry.public()

    def _on_session_leave(self, session_id, *args, **kwargs):
        held = self.registry.names_of(session_id)
        gone = self.registry.remove_session(session_id)
        for node in gone:
            self._drop(node)
        for name in set(held) - {node["name"] for node in gone}:
            self.log.info("session {s} left shared data node {name} ({n} session(s) remain)", s=session_id,
                          name=name, n=len(self.registry.sessions(name)))

    def _drop(self, node):
        if node is not None:
            self.log.info("data node {name} removed", name=node["name"])
            self.publish(contract.DATA_NODE_SUBTRACTED, _public(node))


def main():
    from sisock.connect import run

    raise SystemExit(run(Hub))
