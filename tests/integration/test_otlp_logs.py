"""OTLP/HTTP logs (``source.otlp``) with the real OpenTelemetry SDK and its OTLP/HTTP exporter, against live
writers on SeaweedFS with the DynamoDB lease; the tables read back with deltalake and polars."""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable
from google.rpc import status_pb2
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from deltaingest.otlp_layout import LOG_RECORD_COLUMNS
from tests.helpers import WriterProcess, settings_file, start_writers, wait_for

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
OTLP = {"otlp": {"columns": [{"attribute": "service.name", "column": "service_name"},
                             {"attribute": "order", "column": "order", "scope": "record"}]}}  # fmt: skip


def _config(tmp_path: Path, lock_table: str, **writer: Any) -> Path:
    return settings_file(
        tmp_path,
        schema=[],
        source=OTLP,
        writer=writer,
        locking={"kind": "dynamodb", "tableName": lock_table},
    )


def _provider(url: str, *, batch: bool = True, timeout: float = 30) -> LoggerProvider:
    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout", "region": "eu"}))
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip, timeout=timeout)
    processor = BatchLogRecordProcessor(exporter) if batch else SimpleLogRecordProcessor(exporter)
    provider.add_log_record_processor(processor)
    return provider


def _emit(provider: LoggerProvider, numbers: range) -> None:
    logger = provider.get_logger("shop.payments", "2.1")
    for i in numbers:
        logger.emit(
            LogRecord(
                timestamp=1_717_236_000_000_000_000 + i * 1000,
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                body=f"payment {i} declined",
                attributes={"order": i, "amount": 9.5, "retry": False, "tags": ["a", "b"]},
            )
        )


def _rows(uri: str, env: dict[str, str]) -> pl.DataFrame:
    return pl.read_delta(uri, storage_options=env)


def _orders(uri: str, env: dict[str, str]) -> list[int]:
    return sorted(int(o) for o in _rows(uri, env)["order"].to_list())


def test_the_sdk_exporter_delivers_every_record_once_with_its_attributes(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    (writer,) = start_writers(1, s3_uri, _config(tmp_path, lock_table), cloud_env, tmp_path, writers)
    provider = _provider(writer.url)
    _emit(provider, range(300))
    assert provider.force_flush()
    provider.shutdown()

    table = DeltaTable(s3_uri, storage_options=cloud_env)
    assert table.metadata().partition_columns == ["date"]
    assert [f.name for f in table.schema().fields] == [
        *(name for name, _, _ in LOG_RECORD_COLUMNS),
        "service_name",
        "order",
    ]
    rows = _rows(s3_uri, cloud_env).sort("time")
    assert _orders(s3_uri, cloud_env) == list(range(300))
    first = rows.row(0, named=True)
    assert first["service_name"] == "checkout" and first["order"] == "0"
    assert first["body"] == "payment 0 declined"
    assert (first["severity_number"], first["severity_text"]) == (13, "WARN")
    assert (first["scope_name"], first["scope_version"]) == ("shop.payments", "2.1")
    assert json.loads(first["attributes"]) == {"order": 0, "amount": 9.5, "retry": False, "tags": ["a", "b"]}
    resource = json.loads(first["resource_attributes"])
    assert resource["service.name"] == "checkout" and resource["region"] == "eu"
    assert str(first["time"]) == "2024-06-01 10:00:00+00:00" and str(first["date"]) == "2024-06-01"
    assert first["observed_time"] is not None and first["trace_id"] is None
    by_door = re.search(r'ingest_source_rows_total\{source="otlp"\} (\S+)', writer.metrics())
    assert by_door and float(by_door.group(1)) == 300


def test_otlp_json_with_hex_ids_and_gzip_is_answered_in_json(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    """OTLP's JSON encoding, as the specification's example has it: hex ids, enum numbers, camelCase,
    int64 as strings; unknown fields ignored."""
    (writer,) = start_writers(1, s3_uri, _config(tmp_path, lock_table), cloud_env, tmp_path, writers)
    record = {
        "timeUnixNano": "1717236000000000000",
        "severityNumber": 17,
        "severityText": "ERROR",
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "body": {"kvlistValue": {"values": [{"key": "msg", "value": {"stringValue": "disk full"}}]}},
        "attributes": [{"key": "order", "value": {"intValue": "7"}}],
        "aFieldFromTheFuture": True,
    }
    document = {
        "resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {"name": "s"}, "logRecords": [record]}]}]
    }
    status, headers, answer = _post(
        writer.url, gzip.compress(json.dumps(document).encode()), "application/json"
    )
    assert (status, headers["Content-Type"].split(";")[0], json.loads(answer)) == (
        200,
        "application/json",
        {},
    )
    row = _rows(s3_uri, cloud_env).row(0, named=True)
    assert (row["trace_id"], row["span_id"]) == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    assert json.loads(row["body"]) == {"msg": "disk full"} and row["order"] == "7"
    assert row["service_name"] is None

    status, headers, answer = _post(writer.url, b'{"resourceLogs": [{"scopeLogs": 5}]}', "application/json")
    assert status == 400 and "not an OTLP ExportLogsServiceRequest" in json.loads(answer)["message"]


def test_a_malformed_protobuf_body_gets_a_status_and_writes_nothing(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    (writer,) = start_writers(1, s3_uri, _config(tmp_path, lock_table), cloud_env, tmp_path, writers)
    version = DeltaTable(s3_uri, storage_options=cloud_env).version()
    valid = _request_bytes(range(3))
    for body in (b"\xff\xff\xff", valid[:-3], b"\x0a\x05\x12\x03\x1a\x01\xff"):
        status, headers, answer = _post(writer.url, body, "application/x-protobuf")
        assert status == 400 and headers["Content-Type"].startswith("application/x-protobuf")
        assert "not an OTLP ExportLogsServiceRequest" in status_pb2.Status.FromString(answer).message
    status, _, answer = _post(writer.url, valid, "text/plain")
    assert status == 415
    assert DeltaTable(s3_uri, storage_options=cloud_env).version() == version
    status, _, answer = _post(writer.url, valid, "application/x-protobuf")
    assert status == 200 and ExportLogsServiceResponse.FromString(answer) == ExportLogsServiceResponse()


def test_back_pressure_is_a_429_the_exporter_retries_without_loss(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    """A request held half-sent keeps the in-flight budget full: the exporter's export gets 429 with
    Retry-After, waits, and lands once the budget frees up."""
    config = _config(tmp_path, lock_table, maxInflightBytes=1024)
    (writer,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    with _HalfSent(writer.port, _request_bytes(range(1000, 1040))) as finish:
        provider = _provider(writer.url, batch=False)
        emitting = threading.Thread(target=_emit, args=(provider, range(5)))
        emitting.start()
        wait_for(lambda: 'ingest_requests_total{code="429"}' in writer.metrics(), "a 429 answer")
        finish()
    emitting.join(timeout=60)
    provider.shutdown()
    assert _orders(s3_uri, cloud_env) == [*range(5), *range(1000, 1040)]


def test_a_writer_restart_costs_the_exporter_retries_not_records(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = _config(tmp_path, lock_table)
    (first,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    provider = _provider(first.url)
    _emit(provider, range(100))
    assert provider.force_flush()
    assert first.terminate() == 0
    sending = threading.Thread(target=lambda: (_emit(provider, range(100, 200)), provider.force_flush()))
    sending.start()  # its exports are refused a connection until the writer is back, and retried
    writers.append(WriterProcess(s3_uri, config, cloud_env, tmp_path, port=first.port))
    sending.join(timeout=120)
    provider.shutdown()
    assert _orders(s3_uri, cloud_env) == list(range(200))  # graceful: every record once


def test_the_readme_example_runs_as_written(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    (writer,) = start_writers(1, s3_uri, _config(tmp_path, lock_table), cloud_env, tmp_path, writers)
    section = README.read_text().split("## OpenTelemetry logs (OTLP/HTTP)", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    script = tmp_path / "otlp_example.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DELTAINGEST_URL": writer.url},
        check=False,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    row = _rows(s3_uri, cloud_env).row(0, named=True)
    assert (row["body"], row["service_name"], row["severity_text"]) == (
        "payment declined",
        "checkout",
        "WARN",
    )
    assert json.loads(row["attributes"])["order_id"] == 42


def _request_bytes(numbers: range) -> bytes:
    """An export request made by the SDK's own encoder (what the exporter sends), for raw posts."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs  # noqa: PLC0415
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter  # noqa: PLC0415

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "raw"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    _emit(provider, numbers)
    request: ExportLogsServiceRequest = encode_logs(memory.get_finished_logs())
    return request.SerializeToString()


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": content_type}
    if body[:2] == b"\x1f\x8b":
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(f"{url}/v1/logs", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


class _HalfSent:
    """A /v1/logs request whose last byte is held back until ``finish()``: its declared size stays
    reserved against the in-flight budget meanwhile."""

    def __init__(self, port: int, body: bytes) -> None:
        self._body = body
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=60)

    def __enter__(self) -> Callable[[], None]:
        head = (
            f"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
            f"Content-Length: {len(self._body)}\r\nConnection: close\r\n\r\n"
        )
        self._socket.sendall(head.encode() + self._body[:-1])
        return self._finish

    def _finish(self) -> None:
        self._socket.sendall(self._body[-1:])
        answer = b""
        while chunk := self._socket.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]

    def __exit__(self, *exc: object) -> None:
        self._socket.close()
