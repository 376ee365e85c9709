"""The running bridge against its own OpenAPI description.

Requests are generated from each operation's documented parameters (valid
values, real targets and plain garbage mixed), sent to the real stack, and
every answer must carry a documented status and a body that validates
against the documented schema. The document itself must be valid OpenAPI.
"""

import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from sisock.components.http.openapi import SPEC

REAL_TARGETS = ["apex_archive::apex_temperature", "apex_archive::*", "apex_archive::apex_?ressure",
                "apex_archive::nothing", "nobody::x", "*::*"]
OPERATIONS = [(path, method) for path, item in SPEC["paths"].items() for method in item]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


def _times():
    now_ms = int(time.time() * 1000)
    return st.one_of(st.integers(now_ms - 30 * 86400_000, now_ms + 3600_000), TEXT)


def _parameter(param):
    """Mostly sensible values (so the working path is exercised too), with
    garbage mixed in: each branch of ``one_of`` is equally likely."""
    name, schema = param["name"], param["schema"]
    if name == "target":
        real = st.lists(st.sampled_from(REAL_TARGETS), min_size=1, max_size=3)
        mixed = st.lists(st.one_of(st.sampled_from(REAL_TARGETS), TEXT), min_size=1, max_size=4)
        return st.one_of(real, real, real, mixed, st.none())
    if name in ("from", "to"):
        return st.one_of(st.none(), st.none(), _times(), from_schema(schema))
    return st.one_of(st.none(), st.none(), st.none(), from_schema(schema), TEXT)


def _query(params):
    return st.fixed_dictionaries({p["name"]: _parameter(p) for p in params})


def _encode(query: dict) -> list[tuple[str, str]]:
    out = []
    for name, value in query.items():
        values = value if isinstance(value, list) else [value]
        out.extend((name, str(v).lower() if isinstance(v, bool) else str(v)) for v in values if v is not None)
    return out


def _validator(schema) -> Draft202012Validator:
    """``$ref``s point into the document's components, so they travel along."""
    return Draft202012Validator({**schema, "components": SPEC["components"]})


def test_document_is_valid_openapi():
    validate(SPEC)


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_server_conforms(stack, bridge, path, method):
    operation = SPEC["paths"][path][method]
    bodies = {status: _validator(answer["content"]["application/json"]["schema"])
              for status, answer in operation["responses"].items()}
    seen: dict[str, int] = {}

    @settings(max_examples=300 if path.endswith("/data") else 60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(_query(operation.get("parameters", [])))
    def check(query):
        r = requests.request(method.upper(), stack.http + path, params=_encode(query), timeout=30)
        status = str(r.status_code)
        seen[status] = seen.get(status, 0) + 1
        assert status in bodies, f"{status} is not documented for {method.upper()} {path}: {r.text[:200]}"
        assert r.headers["Content-Type"].startswith("application/json")
        errors = sorted(bodies[status].iter_errors(r.json()), key=str)
        assert not errors, f"{method.upper()} {path} {query}: {errors[0].message}"

    check()
    print(f"{method.upper()} {path}: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")
    assert "200" in seen  # the generator reached the working path, not only errors
