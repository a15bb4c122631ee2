"""OTLP logs to rows: the mapping (every AnyValue kind, ids, times, promoted attributes), OTLP's JSON, the
answers; and properties: any request, whole or damaged, in either encoding, gives rows of the layout or a
client error, never anything else."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from typing import Any

import pyarrow as pa
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from deltaingest.config import OtlpLogsSpec, Settings, SourceSpec, TableSpec, effective_table
from deltaingest.ingest import otlp
from deltaingest.ingest.decode import DecodeOptions
from deltaingest.ingest.errors import BadRequest, IngestError, Overloaded, UnsupportedMediaType
from deltaingest.table.schema import arrow_schema
from tests.mutations import mutate
from tests.properties import budget

SPEC = OtlpLogsSpec.model_validate(
    {"columns": [{"attribute": "service.name", "column": "service_name"},
                 {"attribute": "k", "column": "k_record", "scope": "record"},
                 {"attribute": "lib", "column": "lib", "scope": "scope"}]}
)  # fmt: skip
SCHEMA = arrow_schema(effective_table(TableSpec(), SourceSpec(otlp=SPEC)).columns)
OPTIONS = DecodeOptions(max_bytes=4 * 1024 * 1024)
ARRIVAL = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
PROTOBUF, JSON = "application/x-protobuf", "application/json"


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _request(
    *records: LogRecord, resource: list[KeyValue] = (), scope: list[KeyValue] = ()
) -> ExportLogsServiceRequest:  # type: ignore[assignment]
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(resource)
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name, scope_logs.scope.version = "lib.x", "1.2"
    scope_logs.scope.attributes.extend(scope)
    scope_logs.log_records.extend(records)
    return request


def _decode(body: bytes, media: str = PROTOBUF, encoding: str | None = None, **options: Any) -> pa.Table:
    decoded = otlp.decode_logs(
        body,
        media=media,
        content_encoding=encoding,
        spec=SPEC,
        schema=SCHEMA,
        options=DecodeOptions(max_bytes=4 * 1024 * 1024, **options),
        received=ARRIVAL,
    )
    return decoded.table


def _otlp_json(request: ExportLogsServiceRequest) -> bytes:
    """OTLP's JSON: protobuf's JSON mapping with hex ids (what exporters and collectors send)."""
    document = json_format.MessageToDict(request)
    for resource in document.get("resourceLogs", []):
        for scope in resource.get("scopeLogs", []):
            for record in scope.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex()
    return json.dumps(document).encode()


def test_every_field_of_a_record_lands_in_its_column() -> None:
    record = LogRecord(
        time_unix_nano=1_717_236_000_123_456_789,
        observed_time_unix_nano=1_717_236_001_000_000_000,
        severity_number=17,
        severity_text="ERROR",
        body=AnyValue(string_value="disk full"),
        attributes=[_kv("k", AnyValue(int_value=7)), _kv("pi", AnyValue(double_value=3.5))],
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        flags=1,
        event_name="disk.alert",
        dropped_attributes_count=2,
    )
    request = _request(
        record,
        resource=[_kv("service.name", AnyValue(string_value="api"))],
        scope=[_kv("lib", AnyValue(bool_value=True))],
    )
    (row,) = _decode(request.SerializeToString()).to_pylist()
    assert row == {
        "time": dt.datetime(2024, 6, 1, 10, 0, 0, 123456, tzinfo=dt.UTC),  # nanoseconds truncated
        "observed_time": dt.datetime(2024, 6, 1, 10, 0, 1, tzinfo=dt.UTC),
        "date": dt.date(2024, 6, 1),
        "severity_number": 17,
        "severity_text": "ERROR",
        "body": "disk full",
        "attributes": '{"k":7,"pi":3.5}',
        "resource_attributes": '{"service.name":"api"}',
        "scope_name": "lib.x",
        "scope_version": "1.2",
        "scope_attributes": '{"lib":true}',
        "trace_id": "000102030405060708090a0b0c0d0e0f",
        "span_id": "0001020304050607",
        "flags": 1,
        "event_name": "disk.alert",
        "dropped_attributes_count": 2,
        "service_name": "api",
        "k_record": "7",
        "lib": "true",
    }


def test_every_any_value_kind_becomes_json() -> None:
    nested = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                _kv("list", AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue()]))),
                _kv("raw", AnyValue(bytes_value=b"\x00\xff")),
                _kv("nan", AnyValue(double_value=float("nan"))),
                _kv("inf", AnyValue(double_value=float("-inf"))),
                _kv("s", AnyValue(string_value="é\u2028")),
            ]
        )
    )
    (row,) = _decode(_request(LogRecord(body=nested)).SerializeToString()).to_pylist()
    assert json.loads(row["body"]) == {
        "list": [1, None],
        "raw": "AP8=",
        "nan": "nan",
        "inf": "-inf",
        "s": "é\u2028",
    }


def test_unknown_times_ids_and_texts_are_null_and_the_date_falls_back() -> None:
    observed = LogRecord(observed_time_unix_nano=86_400 * 10**9 * 3)  # 1970-01-04
    bare = LogRecord()
    rows = _decode(_request(observed, bare).SerializeToString()).to_pylist()
    assert [r["date"] for r in rows] == [dt.date(1970, 1, 4), ARRIVAL.date()]
    assert all(
        r[c] is None for r in rows for c in ("time", "body", "attributes", "trace_id", "severity_text")
    )
    assert rows[1]["observed_time"] is None and rows[1]["service_name"] is None


def test_a_repeated_attribute_key_keeps_its_last_value_in_both_places() -> None:
    record = LogRecord(
        attributes=[_kv("k", AnyValue(string_value="a")), _kv("k", AnyValue(string_value="b"))]
    )
    (row,) = _decode(_request(record).SerializeToString()).to_pylist()
    assert (row["attributes"], row["k_record"]) == ('{"k":"b"}', "b")


def test_otlp_json_gives_the_same_rows_as_protobuf_and_ignores_unknown_fields() -> None:
    record = LogRecord(
        time_unix_nano=1_717_236_000_000_000_000, trace_id=b"\xab" * 16, span_id=b"\xcd" * 8,
        body=AnyValue(int_value=2**62), attributes=[_kv("k", AnyValue(string_value="v"))],
    )  # fmt: skip
    request = _request(record)
    document = json.loads(_otlp_json(request))
    document["resourceLogs"][0]["somethingNew"] = {"x": 1}
    as_json = _decode(json.dumps(document).encode(), JSON)
    assert as_json.to_pylist() == _decode(request.SerializeToString()).to_pylist()
    assert as_json.column("trace_id").to_pylist() == ["ab" * 16]
    assert _decode(gzip.compress(_otlp_json(request)), JSON, "gzip").equals(as_json)


@pytest.mark.parametrize(
    ("body", "media", "message"),
    [
        (b"\x0a\x02\x12", PROTOBUF, "not an OTLP ExportLogsServiceRequest in protobuf"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}', JSON, "is not hex"),
        (b'{"resourceLogs": 3}', JSON, "not an OTLP ExportLogsServiceRequest in JSON"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityText": 5}]}]}]}', JSON, "in JSON"),
        (b"[" * 100 + b"]" * 100, JSON, "nested 100 levels deep"),
        (b"\xff{}", JSON, "not UTF-8"),
        (b"[]", JSON, "a JSON list, not an object"),  # schemathesis: was a 200 that wrote nothing
    ],
)
def test_a_malformed_request_is_a_bad_request(body: bytes, media: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        _decode(body, media)


def test_only_protobuf_and_json_are_taken() -> None:
    assert otlp.media_type("application/x-protobuf; charset=x") == PROTOBUF
    assert [otlp.answer_type(t) for t in (None, "text/plain", "Application/JSON")] == [
        PROTOBUF,
        PROTOBUF,
        JSON,
    ]
    with pytest.raises(UnsupportedMediaType, match="for OTLP"):
        otlp.media_type("application/x-ndjson")


def test_the_answers_are_otlp_messages_in_the_requests_encoding() -> None:
    assert ExportLogsServiceResponse.FromString(otlp.success_body(0, PROTOBUF)) == ExportLogsServiceResponse()
    assert json.loads(otlp.success_body(0, JSON)) == {}
    partial = ExportLogsServiceResponse.FromString(otlp.success_body(3, PROTOBUF, "three dead"))
    assert (partial.partial_success.rejected_log_records, partial.partial_success.error_message) == (
        3,
        "three dead",
    )
    assert json.loads(otlp.success_body(3, JSON, "x")) == {
        "partialSuccess": {"rejectedLogRecords": "3", "errorMessage": "x"}
    }
    status = status_pb2.Status.FromString(otlp.error_body(Overloaded("busy"), PROTOBUF))
    assert (status.code, status.message) == (8, "busy")  # RESOURCE_EXHAUSTED
    assert json.loads(otlp.error_body(BadRequest("bad"), JSON)) == {"code": 3, "message": "bad"}


def test_a_log_table_takes_no_schema_of_its_own() -> None:
    with pytest.raises(ValueError, match=r"source\.otlp generates table\.schema"):
        Settings.model_validate({"source": {"otlp": {}}, "table": {"partitionBy": ["day"]}})
    with pytest.raises(ValueError, match="repeat a column"):
        OtlpLogsSpec.model_validate({"columns": [{"attribute": "a", "column": "time"}]})
    table = effective_table(TableSpec(), SourceSpec(otlp=OtlpLogsSpec(partition_by_date=False)))
    assert table.partition_by == [] and table.columns[-1].name == "service_name"


# -- properties -----------------------------------------------------------------------------------------

_TEXT = st.text(max_size=12)
_SCALARS = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), _TEXT),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats()),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=8)),
    st.just(AnyValue()),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(inner, max_size=3)),
        st.builds(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[_kv(k, v) for k, v in kvs])),
            st.lists(st.tuples(_TEXT, inner), max_size=3),
        ),
    ),
    max_leaves=8,
)
_ATTRIBUTES = st.lists(
    st.builds(_kv, st.sampled_from(["k", "service.name", "lib", "x"]) | _TEXT, _VALUES), max_size=4
)
_RECORDS = st.builds(
    LogRecord,
    time_unix_nano=st.integers(0, 2**64 - 1),
    observed_time_unix_nano=st.integers(0, 2**64 - 1),
    severity_number=st.integers(0, 24),
    severity_text=_TEXT,
    body=_VALUES,
    attributes=_ATTRIBUTES,
    trace_id=st.binary(max_size=17),
    span_id=st.binary(max_size=9),
    flags=st.integers(0, 2**32 - 1),
    event_name=_TEXT,
    dropped_attributes_count=st.integers(0, 2**32 - 1),
)


@st.composite
def requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        resource_logs = ResourceLogs()
        resource_logs.resource.attributes.extend(draw(_ATTRIBUTES))
        for _ in range(draw(st.integers(0, 2))):
            scope_logs = ScopeLogs()
            scope_logs.scope.name = draw(_TEXT)
            scope_logs.scope.attributes.extend(draw(_ATTRIBUTES))
            scope_logs.log_records.extend(draw(st.lists(_RECORDS, max_size=3)))
            resource_logs.scope_logs.append(scope_logs)
        request.resource_logs.append(resource_logs)
    return request


def _records(request: ExportLogsServiceRequest) -> int:
    return sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)


@budget(300)
@given(request=requests(), media=st.sampled_from([PROTOBUF, JSON]))
def test_every_whole_request_gives_one_row_per_record_in_either_encoding(
    request: ExportLogsServiceRequest, media: str
) -> None:
    body = request.SerializeToString() if media == PROTOBUF else _otlp_json(request)
    table = _decode(body, media)
    assert table.schema == SCHEMA and table.num_rows == _records(request)
    table.validate(full=True)
    if media == JSON:
        assert repr(table.to_pylist()) == repr(_decode(request.SerializeToString()).to_pylist())


@budget(400)
@given(request=requests(), media=st.sampled_from([PROTOBUF, JSON]), data=st.data())
@example(request=_request(LogRecord(body=AnyValue(string_value="x"))), media=PROTOBUF, data=None).via(
    "a flip"
)
def test_every_damaged_request_gives_rows_of_the_layout_or_a_client_error(
    request: ExportLogsServiceRequest, media: str, data: st.DataObject | None
) -> None:
    body = request.SerializeToString() if media == PROTOBUF else _otlp_json(request)
    damaged = data.draw(mutate(body)) if data is not None else b"\x0a\x01" + body
    try:
        table = _decode(damaged, media)
    except IngestError as err:
        assert err.status in (400, 413, 415) and err.message
        return
    assert table.schema == SCHEMA
    table.validate(full=True)
