"""The WAMP session every sisock process starts from.

Hub, HTTP bridge, Python client and DataNodeServers all join the router the
same way (WAMP-CRA as ``WAMP_USER`` signed with ``WAMP_SECRET``) and all want
the same behaviour when the router refuses them: say why, once, and stop
instead of retrying a login that cannot succeed.
"""

from __future__ import annotations

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp import auth

from sisock.config import Settings

#: Reasons with which a router ends a session it will never accept.
AUTH_FAILURES = frozenset(
    {
        "wamp.error.not_authorized",
        "wamp.error.authentication_failed",
        "wamp.error.authorization_failed",
        "wamp.error.no_such_realm",
        "wamp.error.no_such_role",
        "wamp.error.no_auth_method",
    }
)


class AuthFailure(RuntimeError):
    """The router refused to let this session join."""


class AuthenticatedSession(ApplicationSession):
    """An ApplicationSession that logs in with WAMP-CRA.

    Settings come from ``config.extra["settings"]`` when the runner put them
    there, otherwise from the environment, so sessions built by third-party
    runners (``ApplicationRunner``, crossbar containers) behave the same.
    """

    def __init__(self, config=None):
        super().__init__(config)
        extra = self.config.extra if isinstance(self.config.extra, dict) else {}
        self.settings = extra.get("settings") or Settings.from_env()

    def __call__(self, config=None):
        # Old scripts hand ApplicationRunner.run() an instance rather than a
        # class; the runner calls what it is given to make each session.
        return self

    def onConnect(self):
        self.log.debug("connected to the router, joining as {user}", user=self.settings.wamp_user)
        self.join(self.config.realm, ["wampcra"], self.settings.wamp_user)

    def onChallenge(self, challenge):
        if challenge.method != "wampcra":
            raise AuthFailure(f"router asked for unsupported auth method {challenge.method!r}")
        secret = self.settings.wamp_secret
        extra = challenge.extra
        if "salt" in extra:
            secret = auth.derive_key(secret, extra["salt"], extra.get("iterations"), extra.get("keylen"))
        return auth.compute_wcs(secret, extra["challenge"])

    def onLeave(self, details):
        if details.reason in AUTH_FAILURES:
            self.log.error(
                "router refused the session ({reason}): check WAMP_USER and WAMP_SECRET",
                reason=details.reason,
            )
            on_auth_failure = getattr(self.config.runner, "on_auth_failure", None)
            if on_auth_failure is not None:
                on_auth_failure(details.reason)
        super().onLeave(details)
