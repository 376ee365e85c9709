"""``/influxdb``: the InfluxDB 1.x query API on the bridge's own port.

Grafana's InfluxDB datasource (InfluxQL) appends ``/query`` and ``/ping``
to the URL it is given, so ``http://<bridge>:<PORT>/influxdb`` makes
dashboards written for the OCS InfluxDB publisher read from sisock. Only
reading is served: there is nothing to write to.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from . import answer, parser
from .executor import execute

#: The InfluxDB release whose behaviour the answers follow (Debian's).
VERSION = "1.6.7"
BUILD = "sisock"


def _respond(payload: bytes, status: int = 200) -> Response:
    response = Response(payload, status=status, mimetype="application/json")
    response.headers["X-Influxdb-Version"] = VERSION
    response.headers["X-Influxdb-Build"] = BUILD
    return response


def create_influxdb(datasource, max_answer_points: int) -> Blueprint:
    bp = Blueprint("influxdb", __name__, url_prefix="/influxdb")

    @bp.route("/ping", methods=["GET", "HEAD"])
    def ping():
        if request.args.get("verbose", "").lower() == "true":
            return _respond(b'{"version":"%s"}' % VERSION.encode())
        return _respond(b"", 204)

    @bp.route("/query", methods=["GET", "POST"])
    def query():
        text = (request.values.get("q") or "").strip()
        if not text:
            return _respond(answer.error('missing required parameter "q"'), 400)
        try:
            statements = parser.parse(text)
        except parser.ParseError as exc:
            return _respond(answer.error(f"error parsing query: {exc}"), 400)
        results = execute(statements, datasource, request.values.get("db") or None,
                          request.values.get("rp") or None, max_answer_points)
        return _respond(answer.body(results, request.values.get("epoch")))

    @bp.route("/write", methods=["POST"])
    def write():
        return _respond(answer.error("this InfluxDB API is read-only: sisock serves data, it does not store it"),
                        405)

    return bp
