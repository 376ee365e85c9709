"""What a failed request answers: a status and a one-line JSON ``message``
(which Grafana shows to the user), the same from Flask's routes and from
the query answered in the reactor, never a traceback."""

from __future__ import annotations

import orjson
from werkzeug.exceptions import HTTPException

from sisock.link import CallTimeout

from .api import NotFound
from .datasource import Unavailable
from .request import BadRequest

#: What a failure the bridge cannot explain says; the log has the traceback.
INTERNAL = "internal error; see the bridge's log"


def too_large_message(max_body: int) -> str:
    return f"request body is larger than {max_body} bytes (MAX_BODY_BYTES)"


def body(message) -> bytes:
    """``{"message": ...}``: one line of at most 300 characters."""
    return orjson.dumps({"message": " ".join(str(message).split())[:300]})


def status_of(exc: BaseException, max_body: int) -> tuple[int, str] | None:
    """``(status, message)`` of a failure a client can be told about; None
    for anything else (a bug: answered 500 with :data:`INTERNAL`)."""
    if isinstance(exc, BadRequest):
        return 400, str(exc)
    if isinstance(exc, NotFound):
        return 404, str(exc)
    if isinstance(exc, Unavailable):
        return 503, f"router unavailable: {exc}"
    if isinstance(exc, CallTimeout):
        return 504, str(exc)
    if isinstance(exc, HTTPException):
        if exc.code == 413:
            return 413, too_large_message(max_body)
        return exc.code or 500, exc.description or exc.name
    return None
