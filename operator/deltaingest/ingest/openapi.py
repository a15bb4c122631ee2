"""The writer's HTTP API as an OpenAPI 3.1 document, built for one table. Pure: no I/O.

The row schema comes from the table's Arrow schema, so tools (and the schemathesis test) see the columns,
their types and which are required. NDJSON and Arrow IPC bodies are not JSON: OpenAPI 3.1 can only call
them strings (a stream of rows, a binary stream), and their rules are in the descriptions.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from deltaingest.config import WriterPolicy
from deltaingest.protocol import (
    ARROW_STREAM_TYPE,
    INGEST_PATH,
    JSON_TYPE,
    MAX_PRODUCER_ID,
    MAX_SEQUENCE,
    NDJSON_TYPE,
    OTLP_LOGS_PATH,
    PRODUCER_HEADER,
    PRODUCER_ID_PATTERN,
    PRODUCERS_PATH,
    PROTOBUF_TYPE,
    REQUEST_ID_HEADER,
    SEQUENCE_HEADER,
)

OPENAPI_PATH = "/v1/openapi.json"
_API = (
    "Append rows to one Delta table. A request is acknowledged only after its rows are committed; with a "
    "producer id and sequence, retries are exactly-once."
)
_PRODUCER_ID = f"Exactly-once producer id; sent with {SEQUENCE_HEADER} or not at all. Not 'deltaingest-*'."
_SEQUENCE = (
    "The batch's sequence, rising per producer. At or below the committed one, the request is a retry: "
    "acknowledged with `duplicate`, not written."
)
# Content-Encoding is HTTP's, not a parameter: a generated "gzip" on a plain body would be a lie.
_BODY = (
    "Rows as JSON (one object or an array), NDJSON or an Arrow IPC stream; any of them may be sent with "
    "`Content-Encoding: gzip`. All rows are committed together or none; with `writer.invalidRows: "
    "deadLetter`, the rows that cannot be written go to the dead-letter table, in the same answer."
)
_PRODUCER_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_PRODUCER_ID,
    "pattern": PRODUCER_ID_PATTERN,
}
_INT_BOUNDS = {8: 2**7, 16: 2**15, 32: 2**31, 64: 2**63}
# What each status means for ingest; every error body is an Error.
_INGEST_ERRORS = {
    400: "Malformed: not JSON, NDJSON or an Arrow stream; bad gzip; nesting too deep; bad or half the "
    f"{PRODUCER_HEADER}/{SEQUENCE_HEADER} pair (both or neither). Nothing was written.",
    401: "Missing or wrong bearer token.",
    408: "The body did not arrive within writer.bodyTimeoutSeconds.",
    413: "The body, or its gzip-inflated size, exceeds writer.maxRequestBytes.",
    415: "Unsupported Content-Type or Content-Encoding.",
    422: "Well-formed, but a row does not fit the table schema; `row` and `field` say where. Nothing was "
    "written.",
    429: "Over the in-flight byte budget (writer.maxInflightBytes): retry after Retry-After, with the same "
    "sequence.",
    500: "A bug in the writer (never an answer to input); logged with the request id.",
    503: "The commit failed (storage or lock unavailable); nothing from the request is visible. Retry with "
    "the same sequence, here or on another replica.",
}


def column_schema(dtype: pa.DataType) -> dict[str, Any]:
    """JSON Schema of one column's values as the JSON decoding accepts them (nulls aside)."""
    t = pa.types
    if t.is_boolean(dtype):
        return {"type": "boolean"}
    if t.is_integer(dtype):
        bound = _INT_BOUNDS[dtype.bit_width]
        low, high = (0, 2 * bound - 1) if t.is_unsigned_integer(dtype) else (-bound, bound - 1)
        return {"type": "integer", "minimum": low, "maximum": high}
    if t.is_floating(dtype):
        return {"type": "number"}
    if t.is_string(dtype) or t.is_large_string(dtype):
        return {"type": "string"}
    if t.is_binary(dtype) or t.is_large_binary(dtype):
        return {"type": "string", "contentEncoding": "base64"}
    if t.is_date(dtype):
        return {"type": "string", "format": "date"}
    if t.is_timestamp(dtype):
        return {"type": "string", "format": "date-time"}
    if t.is_decimal(dtype):
        digits = dtype.precision - dtype.scale
        fraction = rf"(\.\d{{1,{dtype.scale}}})?" if dtype.scale else ""
        return {
            "type": ["string", "number"],
            "pattern": rf"^-?\d{{1,{max(digits, 1)}}}{fraction}$",  # JSON Schema applies it to strings only
            "exclusiveMinimum": -(10**digits),
            "exclusiveMaximum": 10**digits,
            "description": f"decimal({dtype.precision},{dtype.scale}): a string or a JSON number",
        }
    if t.is_list(dtype) or t.is_large_list(dtype):
        return {"type": "array", "items": field_schema(dtype.value_field)}
    if t.is_struct(dtype):
        return object_schema(list(dtype), additional=False)
    if t.is_map(dtype):
        return {"type": "object", "additionalProperties": field_schema(dtype.item_field)}
    return {"description": f"values of Arrow type {dtype}"}


def field_schema(field: pa.Field) -> dict[str, Any]:
    schema = column_schema(field.type)
    if field.nullable and "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return {**schema, "type": [*types, "null"]}
    return schema


def object_schema(fields: list[pa.Field], *, additional: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.name: field_schema(f) for f in fields},
        "required": [f.name for f in fields if not f.nullable],
        "additionalProperties": additional,
    }


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    headers: dict[str, Any] = {REQUEST_ID_HEADER: {"$ref": "#/components/headers/RequestId"}}
    if retry_after:
        headers["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
    return {
        "description": description,
        "headers": headers,
        "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {REQUEST_ID_HEADER: {"$ref": "#/components/headers/RequestId"}},
        "content": {JSON_TYPE: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_OTLP_ANSWERS = {
    400: "Not an ExportLogsServiceRequest (or a bad header); nothing written.",
    401: "Missing or wrong bearer token.",
    408: "The body did not arrive in time.",
    413: "The body, or its gzip content, is over `maxRequestBytes`.",
    415: "Neither `application/x-protobuf` nor `application/json`, or a compression other than gzip.",
    429: "Over the in-flight byte budget: the exporter retries after `Retry-After`.",
    503: "The commit failed, the table is unreachable, or the writer is shutting down: retried.",
    500: "A bug in the writer.",
}


def _otlp(schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OTLP answer: the protobuf message (binary) or its OTLP JSON, whichever the request was."""
    return {
        "description": description,
        "headers": headers or {REQUEST_ID_HEADER: {"$ref": "#/components/headers/RequestId"}},
        "content": {
            PROTOBUF_TYPE: {"schema": {"type": "string", "contentMediaType": PROTOBUF_TYPE}},
            JSON_TYPE: {"schema": {"type": "object", "description": f"`{schema}` in OTLP's JSON encoding"}},
        },
    }


def _otlp_logs(auth: bool) -> dict[str, Any]:
    """``POST /v1/logs``, as the OTLP specification defines it (the messages are opentelemetry-proto's)."""
    retry = {
        REQUEST_ID_HEADER: {"$ref": "#/components/headers/RequestId"},
        "Retry-After": {"$ref": "#/components/headers/RetryAfter"},
    }
    errors = {
        str(status): _otlp("google.rpc.Status", text, retry if status in (429, 503) else None)
        for status, text in _OTLP_ANSWERS.items()
        if auth or status != 401
    }
    return {
        "operationId": "exportLogs",
        "summary": "OpenTelemetry logs (OTLP/HTTP), with source.otlp",
        "description": "An `ExportLogsServiceRequest` in protobuf or OTLP's JSON (hex trace and span ids), "
        "gzip or not, as OpenTelemetry exporters send it. Answered once its records are committed; "
        "at least once: a retried export whose answer was lost is written again.",
        "requestBody": {
            "required": True,
            "content": {
                PROTOBUF_TYPE: {"schema": {"type": "string", "contentMediaType": PROTOBUF_TYPE}},
                JSON_TYPE: {"schema": {"type": "object"}},
            },
        },
        "responses": {
            "200": _otlp(
                "ExportLogsServiceResponse",
                "Committed; `partial_success.rejected_log_records` counts those in the dead-letter table.",
            ),
            **errors,
        },
    }


def openapi_document(
    schema: pa.Schema, *, policy: WriterPolicy, auth: bool, version: str, otlp: bool = False
) -> dict[str, Any]:
    """The document for a writer of a table with ``schema`` that follows ``policy`` (``otlp``: and takes
    OTLP logs, with ``source.otlp``)."""
    open_rows = policy.unknown_fields != "reject" or policy.schema_evolution == "addColumns"
    row = object_schema(list(schema), additional=open_rows)
    dead_lettering = policy.invalid_rows == "deadLetter"
    committed = (
        "Committed: the rows that fit are in table version `version`, the others (`deadLettered`) in the "
        "dead-letter table."
        if dead_lettering
        else "Committed: every row is in table version `version`."
    )
    security: list[dict[str, list[str]]] = [{"bearer": []}] if auth else []
    ingest_responses = {
        "200": _ok(committed, "Ack"),
        **{
            str(s): _error(d, retry_after=s in (429, 503))
            for s, d in _INGEST_ERRORS.items()
            if auth or s != 401
        },
    }
    bug = {"500": _error(_INGEST_ERRORS[500])}
    unauthorized = {"401": _error(_INGEST_ERRORS[401])} if auth else {}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deltaingest writer",
            "version": version,
            "description": _API,
        },
        "security": security,
        "paths": {
            INGEST_PATH: {
                "post": {
                    "operationId": "ingest",
                    "summary": "Append rows",
                    "parameters": [
                        {"$ref": "#/components/parameters/ProducerId"},
                        {"$ref": "#/components/parameters/Sequence"},
                    ],
                    "requestBody": {
                        "required": True,
                        "description": _BODY,
                        "content": {
                            JSON_TYPE: {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Row"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Row"},
                                            "minItems": 1,
                                        },
                                    ]
                                }
                            },
                            NDJSON_TYPE: {
                                "schema": {
                                    "type": "string",
                                    "description": "One JSON object per line, each a Row.",
                                }
                            },
                            ARROW_STREAM_TYPE: {
                                "schema": {
                                    "type": "string",
                                    "contentMediaType": ARROW_STREAM_TYPE,
                                    "description": "An Arrow IPC stream whose columns are cast safely to the "
                                    "table's.",
                                }
                            },
                        },
                    },
                    "responses": ingest_responses,
                }
            },
            **({OTLP_LOGS_PATH: {"post": _otlp_logs(auth)}} if otlp else {}),
            f"{PRODUCERS_PATH}/{{producerId}}": {
                "get": {
                    "operationId": "getProducer",
                    "summary": "A producer's last committed sequence, from the table's latest version",
                    "parameters": [
                        {
                            "name": "producerId",
                            "in": "path",
                            "required": True,
                            "schema": _PRODUCER_ID_SCHEMA,
                        }
                    ],
                    "responses": {
                        "200": _ok("Where the producer resumes: after `sequence`.", "Producer"),
                        "400": _error("Not a valid producer id."),
                        "503": _error("The table could not be read; retry.", retry_after=True),
                        **unauthorized,
                        **bug,
                    },
                }
            },
            "/v1/table": {
                "get": {
                    "operationId": "getTable",
                    "summary": "The table's URI, the version this writer last saw, and its columns",
                    "responses": {"200": _ok("The table.", "Table"), **unauthorized, **bug},
                }
            },
            OPENAPI_PATH: {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {"description": "The OpenAPI document.", "content": {JSON_TYPE: {}}}
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {"200": _ok("The process is alive.", "Status")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "security": [],
                    "responses": {
                        "200": _ok("Ready for requests.", "Status"),
                        "503": _ok("Starting or shutting down.", "Status"),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {
                "ProducerId": {
                    "name": PRODUCER_HEADER,
                    "in": "header",
                    "description": _PRODUCER_ID,
                    "schema": _PRODUCER_ID_SCHEMA,
                },
                "Sequence": {
                    "name": SEQUENCE_HEADER,
                    "in": "header",
                    "description": _SEQUENCE,
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEQUENCE},
                },
            },
            "headers": {
                "RequestId": {
                    "description": "The request's id: the client's X-Request-Id when valid, else generated.",
                    "schema": {"type": "string"},
                },
                "RetryAfter": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "string"},
                },
            },
            "schemas": {
                "Row": row,
                "Ack": {
                    "type": "object",
                    "required": ["version", "rows", *(["deadLettered"] if dead_lettering else [])],
                    "properties": {
                        "version": {"type": "integer", "minimum": 0},
                        "rows": {"type": "integer", "minimum": 0},
                        "duplicate": {"type": "boolean", "description": "A retry of a committed sequence."},
                        **(
                            {
                                "deadLettered": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "description": "Rows of the request committed to the dead-letter table.",
                                }
                            }
                            if dead_lettering
                            else {}
                        ),
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "row": {"type": "integer", "description": "1-based row of the body at fault"},
                        "field": {"type": "string", "description": "The column at fault"},
                        "requestId": {"type": "string"},
                    },
                },
                "Producer": {
                    "type": "object",
                    "required": ["producerId", "sequence", "version"],
                    "properties": {
                        "producerId": {"type": "string"},
                        "sequence": {"type": ["integer", "null"], "description": "null: nothing committed"},
                        "version": {"type": "integer", "minimum": 0},
                    },
                },
                "Table": {
                    "type": "object",
                    "required": ["uri", "version", "schema"],
                    "properties": {
                        "uri": {"type": "string"},
                        "version": {"type": "integer"},
                        "schema": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "type", "nullable"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "type": {"type": "string"},
                                    "nullable": {"type": "boolean"},
                                },
                            },
                        },
                    },
                },
                "Status": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string"}},
                },
            },
        },
    }
