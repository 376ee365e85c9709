"""The OpenAPI description of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written by hand next to the routes it describes so that a change to one is
seen in review with the other; the test suite checks the running server
against it (every documented parameter and status, generated requests).
"""

from __future__ import annotations

VERSION = "1.0.0"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


def _param(name: str, description: str, schema: dict, required: bool = False, **extra) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema, **extra}


_NULLABLE_STRING = {"type": ["string", "null"]}
_TIME = {"oneOf": [{"type": "number"}, {"type": "string"}]}
_VALUE = {"type": ["number", "string", "boolean", "null"]}
_UNAVAILABLE = _error("The bridge is not connected to the WAMP router.")
_UNAUTHORIZED = _error("The bridge requires authentication (`HTTP_AUTH_*` is set) and the request "
                       "carried no valid credentials.")
_TEXT = _param("q", "Only entries whose `node::field` name contains this text (case-insensitive).",
               {"type": "string"})

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["message"],
        "properties": {"message": {"type": "string", "description": "One line saying what went wrong."}},
    },
    "Node": {
        "type": "object", "required": ["node", "fields"],
        "properties": {"node": {"type": "string"}, "fields": {"type": "integer", "minimum": 0}},
    },
    "Field": {
        "type": "object", "required": ["target", "node", "field", "units", "type", "description"],
        "properties": {
            "target": {"type": "string", "description": "`node::field`, the name to query."},
            "node": {"type": "string"},
            "field": {"type": "string"},
            "units": _NULLABLE_STRING,
            "type": {"type": "string", "enum": ["number", "string", "bool"]},
            "integer": {"type": "boolean", "description": "A number field whose samples are integers."},
            "description": _NULLABLE_STRING,
            "influxdb": {
                "type": "object", "required": ["measurement", "tags", "field"],
                "description": "The field as `/influxdb` (InfluxQL) shows it.",
                "properties": {"measurement": {"type": "string"}, "field": {"type": "string"},
                               "tags": {"type": "object", "additionalProperties": {"type": "string"}}},
            },
        },
    },
    "Row": {
        "type": "object", "required": ["time", "value"],
        "properties": {
            "time": {"type": "number", "description": "Epoch milliseconds."},
            "value": _VALUE,
            "series": {"type": "string", "description": "The target, present when the answer has several."},
        },
    },
    "Series": {
        "type": "object", "required": ["target", "node", "field", "units", "time", "value"],
        "properties": {
            "target": {"type": "string"}, "node": {"type": "string"}, "field": {"type": "string"},
            "units": _NULLABLE_STRING,
            "time": {"type": "array", "items": {"type": "number"}, "description": "Epoch milliseconds."},
            "value": {"type": "array", "items": _VALUE},
        },
    },
}

SPEC = {
    "openapi": "3.1.0",
    "info": {
        "title": "sisock HTTP bridge",
        "version": VERSION,
        "description": "Housekeeping data served by sisock's data nodes, for Grafana's Infinity "
                       "datasource and scripts. Times are epoch milliseconds or ISO 8601.",
    },
    "paths": {
        "/api/v1/nodes": {"get": {
            "summary": "Data nodes and their field counts",
            "operationId": "nodes",
            "parameters": [_TEXT],
            "responses": {"200": _json({"type": "array", "items": _ref("Node")}, "The data nodes, by name."),
                          "401": _UNAUTHORIZED, "503": _UNAVAILABLE},
        }},
        "/api/v1/fields": {"get": {
            "summary": "Fields with units and type",
            "operationId": "fields",
            "parameters": [_param("node", "Only this data node's fields.", {"type": "string"}), _TEXT],
            "responses": {"200": _json({"type": "array", "items": _ref("Field")}, "The fields, by target."),
                          "401": _UNAUTHORIZED,
                          "404": _error("No data node has that name."),
                          "503": _UNAVAILABLE},
        }},
        "/api/v1/data": {"get": {
            "summary": "Samples of one or more fields",
            "operationId": "data",
            "parameters": [
                _param("target", "`node::field`; repeat for several; `*`, `?` and `[...]` match several fields.",
                       {"type": "array", "items": {"type": "string"}, "minItems": 1}, required=True,
                       style="form", explode=True),
                _param("from", "Start: epoch ms or ISO 8601 (default: six hours before `to`).", _TIME),
                _param("to", "End: epoch ms or ISO 8601 (default: now).", _TIME),
                _param("maxDataPoints", "Most points per target; each bucket keeps its minimum and maximum.",
                       {"type": "integer", "minimum": 1}),
                _param("intervalMs", "Grafana's interval: points are about this far apart.",
                       {"type": "number", "exclusiveMinimum": 0}),
                _param("format", "`rows` (for Infinity) or `columns` (one object of arrays per target).",
                       {"type": "string", "enum": ["rows", "columns"], "default": "rows"}),
            ],
            "responses": {
                "200": _json({"oneOf": [
                    {"type": "array", "items": _ref("Row")},
                    {"type": "object", "required": ["series"],
                     "properties": {"series": {"type": "array", "items": _ref("Series")}}},
                ]}, "Rows sorted by time (`format=rows`), or one object per target (`format=columns`)."),
                "400": _error("A parameter is missing or malformed, or the answer would be too large."),
                "401": _UNAUTHORIZED,
                "404": _error("A target names a data node that does not exist."),
                "503": _UNAVAILABLE,
                "504": _error("A data node did not answer in time."),
            },
        }},
        "/api/v1/openapi.json": {"get": {
            "summary": "This description",
            "operationId": "openapi",
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document."), "401": _UNAUTHORIZED},
        }},
    },
    # Authentication is optional: a bridge without HTTP_AUTH_* set accepts
    # anonymous requests (the empty requirement), one with it set requires
    # basic auth or a bearer token, whichever it was given.
    "security": [{}, {"basicAuth": []}, {"bearerAuth": []}],
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "basicAuth": {"type": "http", "scheme": "basic",
                          "description": "`HTTP_AUTH_USER` and `HTTP_AUTH_PASSWORD` of the bridge."},
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "`HTTP_AUTH_TOKEN` of the bridge."},
        },
    },
}
