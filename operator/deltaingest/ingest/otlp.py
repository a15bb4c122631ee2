"""OTLP/HTTP logs: an ``ExportLogsServiceRequest`` (protobuf or OTLP's JSON) into rows of the log layout
(``otlp_layout``), and the answers the OpenTelemetry exporters expect. Decoding is the maintained generated
classes' (``opentelemetry-proto``); what is ours is the mapping to columns.

The OTLP specification's rules followed here: JSON carries ``traceId``/``spanId`` as hex, not base64;
unknown JSON fields are ignored; a success is an ``ExportLogsServiceResponse`` (with ``partial_success``
when records were rejected), an error a ``google.rpc.Status``, each in the request's encoding."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pyarrow as pa
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from deltaingest.config import OtlpColumn, OtlpLogsSpec, log_columns
from deltaingest.ingest.decode import MAX_JSON_DEPTH, Decoded, DecodeOptions, conform, decompress, json_depth
from deltaingest.ingest.errors import BadRequest, IngestError, UnsupportedMediaType
from deltaingest.otlp_layout import LOG_RECORD_COLUMNS
from deltaingest.protocol import JSON_TYPE, PROTOBUF_TYPE
from deltaingest.table.schema import arrow_schema

_MICROS_PER_DAY = 86_400_000_000
# google.rpc.Code for each status the writer answers with (OTLP/HTTP carries both).
_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    404: code_pb2.NOT_FOUND,
    408: code_pb2.DEADLINE_EXCEEDED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    422: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def answer_type(content_type: str | None) -> str:
    """The encoding of the answer: JSON for a JSON request, else protobuf (OTLP's default)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return JSON_TYPE if media == JSON_TYPE else PROTOBUF_TYPE


def media_type(content_type: str | None) -> str:
    """The request's encoding, protobuf or JSON; anything else is refused."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in (PROTOBUF_TYPE, JSON_TYPE):
        raise UnsupportedMediaType(
            f"unsupported Content-Type {content_type!r} for OTLP; use {PROTOBUF_TYPE} or {JSON_TYPE}"
        )
    return media


def decode_logs(
    body: bytes,
    *,
    media: str,
    content_encoding: str | None,
    spec: OtlpLogsSpec,
    schema: pa.Schema,
    options: DecodeOptions,
    received: dt.datetime,
) -> Decoded:
    """The log records of one export request as rows of the table (``schema``: the layout and whatever
    else the table has), through the same checks as an Arrow stream; ``BadRequest`` for a malformed body."""
    data = decompress(body, content_encoding, limit=options.max_bytes)
    request = parse_request(data, media)
    rows = log_rows(request, spec, received)
    # The layout is the table's: unknownFields and schemaEvolution are for the writer's own API.
    return conform(rows, schema, replace(options, unknown_fields="reject", schema_evolution="none"))


def parse_request(data: bytes, media: str) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    if media == PROTOBUF_TYPE:
        try:
            request.ParseFromString(data)
        except (DecodeError, RecursionError, ValueError) as err:
            raise BadRequest(f"not an OTLP ExportLogsServiceRequest in protobuf: {err}") from None
        return request
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(f"body is not UTF-8: {err}") from None
    if (depth := json_depth(text)) > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted")
    try:
        document = json.loads(text)
        if not isinstance(document, dict):  # ParseDict takes a list as an empty message (schemathesis)
            raise ValueError(f"the body is a JSON {type(document).__name__}, not an object")
        json_format.ParseDict(_ids_to_base64(document), request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as err:
        raise BadRequest(f"not an OTLP ExportLogsServiceRequest in JSON: {err}") from None
    return request


def _ids_to_base64(document: Any) -> Any:
    """OTLP's JSON has trace and span ids in hex where protobuf's JSON mapping has base64 (the spec's one
    departure from it): rewritten in place before parsing."""
    for record in _json_records(document):
        for key in ("traceId", "trace_id", "spanId", "span_id"):
            value = record.get(key)
            if isinstance(value, str):
                try:
                    record[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise ValueError(f"{key} {value[:40]!r} is not hex") from None
    return document


def _json_records(document: Any) -> Iterator[dict[str, Any]]:
    for resource in _items(document, "resourceLogs", "resource_logs"):
        for scope in _items(resource, "scopeLogs", "scope_logs"):
            yield from _items(scope, "logRecords", "log_records")


def _items(parent: Any, *keys: str) -> list[dict[str, Any]]:
    """The objects of a JSON list field under either of its names (anything else ParseDict refuses)."""
    if not isinstance(parent, dict):
        return []
    for key in keys:
        if isinstance(found := parent.get(key), list):
            return [item for item in found if isinstance(item, dict)]
    return []


def log_rows(request: ExportLogsServiceRequest, spec: OtlpLogsSpec, received: dt.datetime) -> pa.Table:
    """One row per log record: the layout's columns, then the promoted attributes."""
    arrival = int(received.timestamp() * 1_000_000)
    columns: dict[str, list[Any]] = {name: [] for name, _, _ in LOG_RECORD_COLUMNS}
    promoted: dict[str, list[str | None]] = {c.column: [] for c in spec.columns}
    for resource_logs in request.resource_logs:
        resource = resource_logs.resource.attributes
        resource_json = _attributes_json(resource)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_json = _attributes_json(scope.attributes)
            for record in scope_logs.log_records:
                _add_record(columns, record, arrival)
                columns["resource_attributes"].append(resource_json)
                columns["scope_name"].append(scope.name or None)
                columns["scope_version"].append(scope.version or None)
                columns["scope_attributes"].append(scope_json)
                owners = {"resource": resource, "scope": scope.attributes, "record": record.attributes}
                for column in spec.columns:
                    promoted[column.column].append(_attribute_text(owners[column.scope], column))
    return pa.Table.from_pydict({**columns, **promoted}, schema=arrow_schema(log_columns(spec)))


def _add_record(columns: dict[str, list[Any]], record: LogRecord, arrival: int) -> None:
    time_us = record.time_unix_nano // 1000 or None
    observed_us = record.observed_time_unix_nano // 1000 or None
    day = (time_us or observed_us or arrival) // _MICROS_PER_DAY
    columns["time"].append(time_us)
    columns["observed_time"].append(observed_us)
    columns["date"].append(dt.date(1970, 1, 1) + dt.timedelta(days=day))
    columns["severity_number"].append(record.severity_number)
    columns["severity_text"].append(record.severity_text or None)
    columns["body"].append(_body(record))
    columns["attributes"].append(_attributes_json(record.attributes))
    columns["trace_id"].append(record.trace_id.hex() or None)
    columns["span_id"].append(record.span_id.hex() or None)
    columns["flags"].append(record.flags)
    columns["event_name"].append(record.event_name or None)
    columns["dropped_attributes_count"].append(record.dropped_attributes_count)


def _body(record: LogRecord) -> str | None:
    if not record.HasField("body"):
        return None
    value = _value(record.body)
    return value if isinstance(value, str) else _json(value)


def _attribute_text(attributes: Any, column: OtlpColumn) -> str | None:
    """The promoted attribute's value as text (a string as it is, any other value as JSON); the last
    one wins when the key repeats, as in the JSON object."""
    found: str | None = None
    for pair in attributes:
        if pair.key == column.attribute:
            value = _value(pair.value)
            found = value if isinstance(value, str) or value is None else _json(value)
    return found


def _attributes_json(attributes: Any) -> str | None:
    pairs: list[KeyValue] = list(attributes)
    return _json({pair.key: _value(pair.value) for pair in pairs}) if pairs else None


def _value(value: AnyValue) -> Any:
    """An ``AnyValue`` as JSON-ready Python: bytes as base64, non-finite doubles as their names (JSON has
    no NaN), an unset value as None."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {pair.key: _value(pair.value) for pair in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "double_value" and not math.isfinite(value.double_value):
        return str(value.double_value)
    return None if kind is None else getattr(value, kind)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def success_body(rejected: int, media: str, message: str = "") -> bytes:
    """An ``ExportLogsServiceResponse``; ``partial_success`` only when records were rejected."""
    response = ExportLogsServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        )
    return _encode(response, media)


def error_body(err: IngestError, media: str) -> bytes:
    """A ``google.rpc.Status`` for an error answer, as OTLP/HTTP specifies."""
    status = status_pb2.Status(code=_CODES.get(err.status, code_pb2.INTERNAL), message=err.message)
    return _encode(status, media)


def _encode(message: Any, media: str) -> bytes:
    if media == JSON_TYPE:
        return json_format.MessageToJson(message, indent=None).encode()
    data: bytes = message.SerializeToString()
    return data
