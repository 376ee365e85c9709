"""Optional HTTP authentication of the bridge (HTTP_AUTH_USER/HTTP_AUTH_PASSWORD,
HTTP_AUTH_TOKEN), against bridge processes of their own on the test router."""

from __future__ import annotations

import base64
import os
import secrets
import time

import pytest
import requests
from jsonschema import Draft202012Validator

from sisock.components.http import auth as http_auth
from sisock.components.http.openapi import SPEC
from sisock.config import ConfigError, HttpAuth

from procs import free_port, refused_at_start, wait_for

USER = "grafana"
PASSWORD = "pa:ss wörd-" + secrets.token_hex(8)  # a colon, a space and non-ASCII: all legal in a password
TOKEN = secrets.token_urlsafe(24)
NODE = "apex_archive"
POST_ENDPOINTS = ["/", "/search", "/query", "/annotations", "/tag-keys", "/tag-values", "/metrics",
                  "/metric-payload-options", "/variable"]
GET_ENDPOINTS = ["/api/v1/nodes", "/api/v1/fields", "/api/v1/data", "/api/v1/openapi.json"]
TIMEOUT = 20


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GOOD_BASIC = {"Authorization": _basic(USER, PASSWORD)}
GOOD_BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _start_bridge(stack, name, env):
    port = free_port()
    proc = stack.proc(name, "sisock-http", env={"PORT": str(port), "LOGLEVEL": "debug", **env}).start()
    url = f"http://127.0.0.1:{port}"
    headers = GOOD_BEARER if env.get("HTTP_AUTH_TOKEN") else GOOD_BASIC

    def ready():
        r = requests.post(url + "/search", json={"target": NODE}, headers=headers, timeout=2)
        return r.status_code == 200 and r.json()

    wait_for(ready, 30, f"{name} to list {NODE}")
    return proc, url


@pytest.fixture(scope="module")
def authed(stack, client, weather):
    proc, url = _start_bridge(stack, "http-auth", {"HTTP_AUTH_USER": USER, "HTTP_AUTH_PASSWORD": PASSWORD,
                                                   "HTTP_AUTH_TOKEN": TOKEN})
    yield url, proc
    proc.stop()


@pytest.fixture(scope="module")
def token_only(stack, client, weather):
    proc, url = _start_bridge(stack, "http-auth-token", {"HTTP_AUTH_TOKEN": TOKEN})
    yield url, proc
    proc.stop()


def _requests(url):
    """One request per endpoint (and a few that match no route), as Grafana sends them."""
    now = time.time()
    query = {"range": {"from": (now - 3600) * 1000, "to": now * 1000}, "maxDataPoints": 100,
             "targets": [{"target": f"{NODE}::apex_pressure", "refId": "A"}]}
    out = [("POST", url + path, {"json": query if path == "/query" else {}}) for path in POST_ENDPOINTS]
    out += [("GET", url + path, {"params": {"target": f"{NODE}::apex_pressure"}}) for path in GET_ENDPOINTS]
    out += [("GET", url + "/nope", {}), ("PUT", url + "/", {}), ("DELETE", url + "/query", {}),
            ("GET", url + "/static/../../etc/passwd", {}), ("OPTIONS", url + "/api/v1/data", {})]
    return out


def _assert_refused(r, challenges):
    assert r.status_code == 401, (r.request.method, r.url, r.status_code, r.text[:200])
    assert r.headers["Content-Type"].startswith("application/json")
    message = r.json()["message"]
    assert message and "\n" not in message
    assert r.headers.get("WWW-Authenticate") is not None
    got = [c.strip() for c in r.raw.headers.getlist("WWW-Authenticate")]
    assert [c.split()[0] for c in got] == challenges, got
    assert all('realm="sisock"' in c for c in got)
    for secret in (PASSWORD, TOKEN, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        assert secret not in r.text and secret not in str(r.headers)


def test_health_check_and_quicklook_page_stay_public(authed):
    url, _ = authed
    r = requests.get(url + "/", headers={"Accept": "application/json"}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert requests.head(url + "/", timeout=TIMEOUT).status_code == 200
    page = requests.get(url + "/", headers={"Accept": "text/html"}, timeout=TIMEOUT)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert requests.get(url + "/static/quicklook.js", timeout=TIMEOUT).status_code == 200
    # The container health probe needs no credentials either.
    from sisock.components.healthcheck import check_http

    assert check_http({"PORT": url.rsplit(":", 1)[1]}) is None


def test_everything_else_needs_credentials(authed):
    url, _ = authed
    statuses = {}
    for method, target, kwargs in _requests(url):
        r = requests.request(method, target, timeout=TIMEOUT, **kwargs)
        statuses[f"{method} {target.removeprefix(url)}"] = r.status_code
        _assert_refused(r, ["Basic", "Bearer"])
    print(f"\nwithout credentials: {statuses}")
    r = requests.get(url + "/api/v1/nodes", timeout=TIMEOUT)
    assert "authentication required" in r.json()["message"]


@pytest.mark.parametrize("headers", [GOOD_BASIC, GOOD_BEARER, {"Authorization": f"bearer {TOKEN}"},
                                     {"Authorization": f"BASIC {_basic(USER, PASSWORD).split()[1]}"},
                                     {"Authorization": f"Bearer   {TOKEN}"}],
                         ids=["basic", "bearer", "bearer-lowercase", "basic-uppercase", "spaces"])
def test_right_credentials_pass(authed, headers):
    url, _ = authed
    for method, target, kwargs in _requests(url)[: len(POST_ENDPOINTS) + len(GET_ENDPOINTS)]:
        r = requests.request(method, target, headers=headers, timeout=TIMEOUT, **kwargs)
        assert r.status_code == 200, (method, target, r.status_code, r.text[:200])
    (series,) = requests.post(url + "/query", json=_requests(url)[2][2]["json"], headers=headers,
                              timeout=TIMEOUT).json()
    assert len(series["datapoints"]) > 0
    # requests' own basic auth, as Grafana's "Basic auth" option sends it.
    assert requests.get(url + "/api/v1/nodes", auth=(USER, PASSWORD), timeout=TIMEOUT).status_code == 200


WRONG = {
    "wrong password": _basic(USER, PASSWORD + "x"),
    "password prefix": _basic(USER, PASSWORD[:-1]),
    "empty password": _basic(USER, ""),
    "wrong user": _basic("admin", PASSWORD),
    "user case": _basic(USER.upper(), PASSWORD),
    "no colon": "Basic " + base64.b64encode(f"{USER}{PASSWORD}".encode()).decode(),
    "not base64": "Basic !!!not-base64!!!",
    "base64 of garbage": "Basic " + base64.b64encode(os.urandom(40)).decode(),
    "bare scheme": "Basic",
    "empty": "",
    "token as basic": f"Basic {TOKEN}",
    "basic creds as bearer": f"Bearer {_basic(USER, PASSWORD).split()[1]}",
    "token prefix": f"Bearer {TOKEN[:-1]}",
    "token plus": f"Bearer {TOKEN}x",
    "token twice": f"Bearer {TOKEN} {TOKEN}",
    "other scheme": f"Digest username=\"{USER}\", response=\"{TOKEN}\"",
    "password as token": f"Bearer {PASSWORD}",
    "long": "Bearer " + "a" * 10_000,
    "latin-1 bytes": "Basic \xe9\xe9",
    "token without scheme": TOKEN,
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_credentials_refused(authed, name):
    url, _ = authed
    headers = {"Authorization": WRONG[name].encode("latin-1")}
    for method, target, kwargs in (_requests(url)[2], _requests(url)[len(POST_ENDPOINTS) + 2]):
        r = requests.request(method, target, headers=headers, timeout=TIMEOUT, **kwargs)
        _assert_refused(r, ["Basic", "Bearer"])
        if WRONG[name]:
            assert "wrong credentials" in r.json()["message"]


def test_token_only_bridge(token_only):
    url, _ = token_only
    r = requests.get(url + "/api/v1/nodes", timeout=TIMEOUT)
    _assert_refused(r, ["Bearer"])
    _assert_refused(requests.get(url + "/api/v1/nodes", headers=GOOD_BASIC, timeout=TIMEOUT), ["Bearer"])
    assert requests.get(url + "/api/v1/nodes", headers=GOOD_BEARER, timeout=TIMEOUT).status_code == 200
    assert requests.get(url + "/", timeout=TIMEOUT).status_code == 200


def test_refusal_matches_the_openapi_document(authed):
    url, _ = authed
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["basicAuth"] == {**schemes["basicAuth"], "type": "http", "scheme": "basic"}
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert {} in SPEC["security"]  # optional: a bridge without HTTP_AUTH_* takes anonymous requests
    for path, item in SPEC["paths"].items():
        answer = item["get"]["responses"]["401"]["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**answer, "components": SPEC["components"]})
        r = requests.get(url + path, timeout=TIMEOUT)
        assert r.status_code == 401
        assert not list(validator.iter_errors(r.json()))


def test_secrets_never_logged(authed, token_only):
    """After every request above (right and wrong credentials, at debug
    level), neither bridge's log holds a secret or an Authorization header."""
    for url, proc in (authed, token_only):
        requests.get(url + "/api/v1/nodes", headers={"Authorization": WRONG["wrong password"]}, timeout=TIMEOUT)
        requests.get(url + "/api/v1/nodes", headers=GOOD_BEARER, timeout=TIMEOUT)
        log = proc.output()
        assert "requests need" in log and "authentication" in log  # it does say auth is on
        for secret in (PASSWORD, TOKEN, TOKEN[:12], GOOD_BASIC["Authorization"].split()[1],
                       WRONG["wrong password"].split()[1]):
            assert secret not in log, f"a secret is in {proc.log_path}"


@pytest.mark.parametrize("env,words", [
    ({"HTTP_AUTH_USER": USER}, ["HTTP_AUTH_PASSWORD"]),
    ({"HTTP_AUTH_PASSWORD": PASSWORD}, ["HTTP_AUTH_USER"]),
    ({"HTTP_AUTH_USER": "a:b", "HTTP_AUTH_PASSWORD": PASSWORD}, ["HTTP_AUTH_USER", "':'"]),
    ({"HTTP_AUTH_TOKEN": TOKEN + " x"}, ["HTTP_AUTH_TOKEN", "spaces"]),
])
def test_bad_auth_settings_refused_at_start(stack, env, words):
    line = refused_at_start("sisock-http", {**stack.env, "PORT": str(free_port()), **env})
    assert all(w in line for w in words), line
    assert PASSWORD not in line and TOKEN not in line


# -- unit checks of the comparison ---------------------------------------------------------------

def test_settings_never_show_secrets():
    settings = HttpAuth.from_env({"HTTP_AUTH_USER": USER, "HTTP_AUTH_PASSWORD": PASSWORD, "HTTP_AUTH_TOKEN": TOKEN})
    assert settings.basic and settings.bearer and settings.enabled
    for text in (repr(settings), str(settings), repr(http_auth.Authenticator(settings))):
        assert PASSWORD not in text and TOKEN not in text and USER not in text
    assert not HttpAuth.from_env({}).enabled
    assert not HttpAuth.from_env({"HTTP_AUTH_USER": "", "HTTP_AUTH_PASSWORD": "", "HTTP_AUTH_TOKEN": ""}).enabled
    with pytest.raises(ConfigError) as exc:
        HttpAuth.from_env({"HTTP_AUTH_PASSWORD": PASSWORD})
    assert PASSWORD not in str(exc.value)


def test_comparisons_are_constant_time(monkeypatch):
    """Every check goes through hmac.compare_digest on fixed-length digests,
    and a wrong user still costs the password's comparison too."""
    calls = []
    real = http_auth.hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(http_auth.hmac, "compare_digest", spy)
    checker = http_auth.Authenticator(HttpAuth(USER, PASSWORD, TOKEN))
    counts = set()
    for header, ok in [(GOOD_BASIC["Authorization"], True), (_basic("x", PASSWORD), False),
                       (_basic(USER, "y"), False), (_basic("x", "y"), False), (_basic("x" * 5000, "y"), False)]:
        calls.clear()
        assert checker.accepts(header) is ok
        assert calls and all(c == (32, 32) for c in calls), header
        counts.add(len(calls))
    assert len(counts) == 1  # as many comparisons whichever part is wrong
    for header, ok in [(GOOD_BEARER["Authorization"], True), ("Bearer x", False), ("Bearer " + "x" * 5000, False)]:
        calls.clear()
        assert checker.accepts(header) is ok
        assert calls == [(32, 32)]


def test_without_settings_nothing_is_required():
    from flask import Flask

    app = Flask("t")
    assert http_auth.install(app, None) is None and http_auth.install(app, HttpAuth()) is None
    assert app.before_request_funcs == {}
