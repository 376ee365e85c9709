"""The bridge's Flask application: SimpleJson, JSON-datasource, REST and InfluxDB routes.

Handlers only translate between HTTP and :class:`DataSource`; every failure
becomes a status code with a one-line JSON ``message`` (which Grafana shows
to the user), never a traceback.
"""

from __future__ import annotations

import os

import txaio
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from sisock.config import HttpAuth
from sisock.link import CallTimeout

from . import auth, errors, series
from .api import NotFound, create_api
from .datasource import Unavailable
from .influxql.blueprint import create_influxdb
from .request import DEFAULT_MAX_ANSWER_POINTS, SEPARATOR, BadRequest, json_body, parse_query, search_text

DEFAULT_MAX_BODY = 1024 * 1024
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
QUICKLOOK = "quicklook.html"

log = txaio.make_logger()


def _json(obj, status: int = 200) -> Response:
    return Response(series.dumps(obj), status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return Response(errors.body(message), status=status, mimetype="application/json")


def _body(allow_empty: bool = False):
    return json_body(request.get_data(cache=False), allow_empty)


def _wants_html() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def create_app(datasource, max_body: int = DEFAULT_MAX_BODY, http_auth: HttpAuth | None = None,
               max_answer_points: int = DEFAULT_MAX_ANSWER_POINTS) -> Flask:
    """The application. ``http_auth`` (default: none) is required of every
    request but the health check; ``max_answer_points`` bounds the points
    (all targets together) one ``/query`` or ``/api/v1/data`` answer may hold."""
    app = Flask("sisock.http", static_folder=STATIC, static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = max_body
    auth.install(app, http_auth)
    app.register_blueprint(create_api(datasource, _json, max_answer_points))
    app.register_blueprint(create_influxdb(datasource, max_answer_points))

    @app.route("/", methods=["GET", "POST"])
    def ping():
        """Grafana's connection test, or the quicklook page for a browser
        (which, unlike Grafana, prefers HTML to JSON)."""
        if request.method == "GET" and _wants_html():
            return app.send_static_file(QUICKLOOK)
        if not datasource.link.connected:
            return _error(503, "not connected to the WAMP router")
        return _json({"status": "ok", "message": "sisock HTTP bridge: connected to the router"})

    @app.post("/search")
    def search():
        return _json(datasource.metrics(search_text(_body(allow_empty=True))))

    @app.post("/query")
    def query():
        return _json(datasource.query(parse_query(_body()), max_answer_points))

    # -- the JSON datasource dialect (simpod-json-datasource) --------------

    @app.post("/metrics")
    def metrics():
        """The metric picker: ``{label, value}`` pairs, filtered by the text typed."""
        body = _body(allow_empty=True) or {}
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        text = body.get("metric") or ""
        if not isinstance(text, str):
            raise BadRequest("metric must be a string")
        return _json([{"label": m, "value": m} for m in datasource.metrics(text)])

    @app.post("/metric-payload-options")
    def metric_payload_options():
        _body(allow_empty=True)
        return _json([])  # metrics take no payload

    @app.post("/variable")
    def variable():
        """Template variables: ``""``/``"*"`` lists data nodes; ``"<node>::"``
        (optionally followed by text) lists that node's fields; other text
        lists the metrics containing it."""
        body = _body(allow_empty=True) or {}
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        payload = body.get("payload") or {}
        target = payload.get("target", "") if isinstance(payload, dict) else payload
        if target is None:
            target = ""
        if not isinstance(target, str):
            raise BadRequest("payload.target must be a string")
        node, sep, text = target.partition(SEPARATOR)
        if sep:
            values = datasource.fields_of(node, text)
        elif target.strip() in ("", "*"):
            values = datasource.nodes()
        else:
            values = datasource.metrics(target)
        return _json([{"__text": v, "__value": v} for v in values])

    @app.post("/annotations")
    def annotations():
        _body(allow_empty=True)
        return _json([])

    @app.post("/tag-keys")
    @app.post("/tag-values")
    def tags():
        _body(allow_empty=True)
        return _json([])

    def expected(exc):
        return _error(*errors.status_of(exc, max_body))

    for known in (BadRequest, NotFound, Unavailable, CallTimeout, HTTPException):
        app.register_error_handler(known, expected)

    @app.errorhandler(Exception)
    def internal(exc):
        log.failure("unexpected error answering {path}", path=request.path)
        return _error(500, errors.INTERNAL)

    return app
