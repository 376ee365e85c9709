"""Optional HTTP authentication of the bridge: basic auth, a bearer token, or both.

Grafana's datasources send either (basic auth with the datasource's user and
password, or an ``Authorization: Bearer`` header), so the bridge accepts
whichever :class:`~sisock.config.HttpAuth` configures. When nothing is
configured every request passes.

InfluxDB clients (Grafana's InfluxDB datasource among them) may send the
basic-auth user and password as the ``u`` and ``p`` URL parameters instead;
the ``/influxdb`` routes take them so.

What stays public: ``GET /`` (the health check Grafana's "Save & Test", the
container probe and load balancers use, and the quicklook page a browser
gets there), the page's static files and ``/influxdb/ping`` (InfluxDB's own
health check, open there too). None carries data. Everything
else, including the quicklook page's own calls to ``/api/v1``, needs the
credentials; with basic auth the browser asks for them once.

Secrets are compared as SHA-256 digests with :func:`hmac.compare_digest`, so
the time taken says nothing about how much of a guess was right or how long
the secret is, and no secret or ``Authorization`` header is ever logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from flask import Response, request

from sisock.config import HttpAuth

REALM = "sisock"
#: Endpoints (Flask endpoint names) open without credentials, by method.
PUBLIC = {"ping": {"GET", "HEAD"}, "static": {"GET", "HEAD"}, "influxdb.ping": {"GET", "HEAD"}}
#: Endpoints taking InfluxDB's ``u``/``p`` query parameters as basic auth
#: (Grafana's InfluxDB datasource sends its user and password that way).
URL_CREDENTIALS = "influxdb."


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _same(given: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(_digest(given), _digest(expected))


def _encodings(text: str) -> tuple[bytes, ...]:
    """The bytes clients may send for ``text`` in basic auth: UTF-8 (RFC
    7617, browsers, Grafana) or latin-1 (Python's requests, older clients)."""
    out = [text.encode("utf-8")]
    try:
        latin = text.encode("latin-1")
    except UnicodeEncodeError:
        latin = None
    if latin is not None and latin not in out:
        out.append(latin)
    return tuple(out)


def _matches(given: bytes, expected: tuple[bytes, ...]) -> bool:
    return any([_same(given, candidate) for candidate in expected])  # a list: every candidate is compared


class Authenticator:
    """Checks one request's ``Authorization`` header against the settings."""

    def __init__(self, settings: HttpAuth):
        self.settings = settings
        self._user = _encodings(settings.user) if settings.basic else None
        self._password = _encodings(settings.password) if settings.basic else None
        self._token = settings.token.encode("utf-8") if settings.bearer else None
        challenges = []
        if settings.basic:
            challenges.append(f'Basic realm="{REALM}", charset="UTF-8"')
        if settings.bearer:
            challenges.append(f'Bearer realm="{REALM}"')
        self.challenges = challenges

    def __repr__(self) -> str:
        return f"Authenticator({self.settings!r})"

    def accepts(self, header: str | None) -> bool:
        """True if ``header`` (the raw ``Authorization`` value) carries valid credentials."""
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        # WSGI hands headers over as latin-1 strings: these are the bytes sent.
        raw = credentials.encode("latin-1", "replace")
        if scheme == "bearer" and self._token is not None:
            return _same(raw, self._token)
        if scheme == "basic" and self._user is not None:
            try:
                decoded = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            # Both compared every time: a right user with a wrong password
            # takes as long as a wrong user.
            user_ok = _matches(user, self._user)
            password_ok = _matches(password, self._password)
            return bool(sep) and user_ok and password_ok
        return False

    def accepts_parameters(self, args) -> bool:
        """InfluxDB's ``u`` and ``p`` parameters, checked as basic auth is."""
        user, password = args.get("u"), args.get("p")
        if self._user is None or not user or not password:
            return False
        user_ok = _matches(user.encode("utf-8"), self._user)
        password_ok = _matches(password.encode("utf-8"), self._password)
        return user_ok and password_ok

    def refusal(self, message: str) -> Response:
        response = Response(refusal_body(message), status=401, mimetype="application/json")
        for challenge in self.challenges:
            response.headers.add("WWW-Authenticate", challenge)
        return response

    def verdict(self, header: str | None, tried_url: bool = False) -> str | None:
        """None for a request ``header`` lets through, else why it is
        refused (``tried_url``: it sent ``u``/``p`` parameters, refused)."""
        if self.accepts(header):
            return None
        if header or tried_url:
            return "authentication failed: wrong credentials"
        return "authentication required: send the bridge's credentials (basic auth or a bearer token)"

    def check(self):
        """A Flask ``before_request`` hook: None lets the request through."""
        if request.method in PUBLIC.get(request.endpoint or "", ()):
            return None
        header = request.headers.get("Authorization")
        by_url = (request.endpoint or "").startswith(URL_CREDENTIALS) and "u" in request.args
        if by_url and not self.accepts(header) and self.accepts_parameters(request.args):
            return None
        why = self.verdict(header, by_url)
        return None if why is None else self.refusal(why)


def refusal_body(message: str) -> bytes:
    """The 401's body, from Flask and from the query answered in the reactor alike."""
    return b'{"message": "%s"}' % message.encode("ascii")


def install(app, settings: HttpAuth | None) -> Authenticator | None:
    """Require ``settings``' credentials on ``app``; nothing when none are set."""
    if settings is None or not settings.enabled:
        return None
    auth = Authenticator(settings)
    app.before_request(auth.check)
    return auth
