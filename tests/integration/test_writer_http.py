"""The writer over real HTTP, committing to SeaweedFS with the DynamoDB lock (and to a local path)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import decimal
import io
import json
import socket
import urllib.request
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from deltaingest.locking.dynamodb import DynamoDBLock, dynamodb_client
from tests.helpers import (
    WriterProcess,
    event,
    get,
    ndjson,
    post,
    run_cli,
    settings_file,
    start_writers,
    wait_for,
)

pytestmark = pytest.mark.integration

ROWS = [
    {
        "id": 1,
        "ts": "2024-05-01T10:00:00Z",
        "day": "2024-05-01",
        "user": "ann",
        "score": 0.5,
        "count": 3,
        "price": 19.99,
        "ok": True,
        "tags": ["a", "b"],
        "geo": {"lat": 52.5, "lon": 13.4},
    },
    {"id": 2, "ts": "2024-05-01T10:00:01.123456Z"},
]
EXPECTED = [
    {
        "id": 1,
        "ts": dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC),
        "day": dt.date(2024, 5, 1),
        "user": "ann",
        "score": 0.5,
        "count": 3,
        "price": decimal.Decimal("19.99"),
        "ok": True,
        "tags": ["a", "b"],
        "geo": {"lat": 52.5, "lon": 13.4},
    },
    {
        "id": 2,
        "ts": dt.datetime(2024, 5, 1, 10, 0, 1, 123456, tzinfo=dt.UTC),
        "day": None,
        "user": None,
        "score": None,
        "count": None,
        "price": None,
        "ok": None,
        "tags": None,
        "geo": None,
    },
]


def _arrow_body(rows: list[dict[str, object]]) -> bytes:
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.int32()),  # widened to long by the writer
            "ts": pa.array(
                [dt.datetime.fromisoformat(str(r["ts"])) for r in rows], pa.timestamp("us", tz="UTC")
            ),
            "day": pa.array([dt.date.fromisoformat(str(r["day"])) if r.get("day") else None for r in rows]),
            "user": pa.array([r.get("user") for r in rows], pa.string()),
            "score": pa.array([r.get("score") for r in rows], pa.float32()),
            "count": pa.array([r.get("count") for r in rows], pa.int32()),
            "price": pa.array(
                [decimal.Decimal(str(r["price"])) if r.get("price") else None for r in rows],
                pa.decimal128(10, 2),
            ),
            "ok": pa.array([r.get("ok") for r in rows], pa.bool_()),
            "tags": pa.array([r.get("tags") for r in rows], pa.list_(pa.string())),
            "geo": pa.array(
                [r.get("geo") for r in rows], pa.struct([("lat", pa.float64()), ("lon", pa.float64())])
            ),
        }
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return sink.getvalue()


BODIES = {
    "ndjson": lambda: (ndjson(ROWS), "application/x-ndjson", False),
    "json-array": lambda: (json.dumps(ROWS).encode(), "application/json", False),
    "ndjson-gzip": lambda: (ndjson(ROWS), "application/x-ndjson", True),
    "arrow-stream": lambda: (_arrow_body(ROWS), "application/vnd.apache.arrow.stream", False),
}


@pytest.fixture
def s3_writer(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> WriterProcess:
    config = settings_file(tmp_path, locking={"kind": "dynamodb", "tableName": lock_table})
    (writer,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    return writer


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_each_content_type_round_trips_exactly(
    kind: str, s3_writer: WriterProcess, s3_uri: str, cloud_env: dict[str, str]
) -> None:
    body, content_type, gzipped = BODIES[kind]()
    response = post(s3_writer.ingest_url, body, content_type=content_type, gzip_body=gzipped)
    assert response.status == 200, response.body
    assert response.body == {"version": 1, "rows": 2}

    table = DeltaTable(s3_uri, storage_options=cloud_env)
    assert table.version() == 1
    assert sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: r["id"]) == EXPECTED
    frame = pl.read_delta(s3_uri, storage_options=cloud_env).sort("id")
    assert frame.schema["id"] == pl.Int64
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    assert frame.schema["price"] == pl.Decimal(10, 2)
    assert frame.schema["geo"] == pl.Struct({"lat": pl.Float64, "lon": pl.Float64})
    assert frame.to_dicts()[0]["tags"] == ["a", "b"]


def test_commit_info_carries_fencing_token_and_writer(
    s3_writer: WriterProcess, s3_uri: str, cloud_env: dict[str, str]
) -> None:
    for i in range(3):
        assert post(s3_writer.ingest_url, ndjson([event(i)])).status == 200
    history = DeltaTable(s3_uri, storage_options=cloud_env).history()
    writes = sorted((h for h in history if h["operation"] == "WRITE"), key=lambda h: h["version"])
    tokens = [int(h["deltaingest.fencingToken"]) for h in writes]
    # A lone writer keeps its lease across commits: one holding, one token, stamped on every commit
    # (tokens rise across holders: tests/integration/test_commit_lease.py).
    assert len(tokens) == 3 and len(set(tokens)) == 1
    assert all(h["deltaingest.writer"] for h in writes)


BAD_REQUESTS = [
    ("not-json", b"{oops\n", "application/x-ndjson", {}, 400),
    ("wrong-type", ndjson([event(1), event(2, id="two")]), "application/x-ndjson", {}, 422),
    ("unknown-field", ndjson([event(1, color="red")]), "application/x-ndjson", {}, 422),
    ("missing-required", ndjson([{"id": 1}]), "application/x-ndjson", {}, 422),
    ("null-required", ndjson([event(1, ts=None)]), "application/x-ndjson", {}, 422),
    ("empty", b"", "application/x-ndjson", {}, 400),
    ("media-type", b"id\n1\n", "text/csv", {}, 415),
    ("not-arrow", b"garbage", "application/vnd.apache.arrow.stream", {}, 400),
    ("sequence-without-producer", ndjson([event(1)]), "application/x-ndjson", {"X-Sequence": "1"}, 400),
    (
        "bad-sequence",
        ndjson([event(1)]),
        "application/x-ndjson",
        {"X-Producer-Id": "p", "X-Sequence": "x"},
        400,
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "content_type", "headers", "status"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_input_is_refused_and_writes_nothing(
    name: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    status: int,
    s3_writer: WriterProcess,
    s3_uri: str,
    cloud_env: dict[str, str],
) -> None:
    response = post(s3_writer.ingest_url, body, content_type=content_type, headers=headers)
    assert response.status == status, response.body
    assert response.body["error"]
    assert DeltaTable(s3_uri, storage_options=cloud_env).version() == 0


def test_wrong_type_error_names_row_and_field(s3_writer: WriterProcess) -> None:
    response = post(s3_writer.ingest_url, ndjson([event(1), event(2, count="many")]))
    assert response.status == 422
    assert response.body["row"] == 2 and response.body["field"] == "count"
    assert "row 2, field 'count'" in response.body["error"]


def test_oversized_body_gets_413(
    s3_uri: str, cloud_env: dict[str, str], tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(tmp_path, writer={"maxRequestBytes": 4096})
    (writer,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    big = ndjson([event(i) for i in range(200)])
    assert post(writer.ingest_url, big).status == 413
    assert post(writer.ingest_url, big, gzip_body=True).status == 413  # small on the wire, too big inflated
    assert DeltaTable(s3_uri, storage_options=cloud_env).version() == 0


def test_over_inflight_budget_gets_429_with_retry_after(
    s3_uri: str, cloud_env: dict[str, str], tmp_path: Path, writers: list[WriterProcess]
) -> None:
    # A long linger keeps the first request in flight while the second arrives.
    config = settings_file(tmp_path, writer={"maxInflightBytes": 2048, "batching": {"maxDelayMs": 3000}})
    (writer,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    body = ndjson([event(i) for i in range(30)])
    assert len(body) > 2048
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, writer.ingest_url, body)
        wait_for(lambda: "ingest_inflight_bytes 0.0" not in writer.metrics(), "the first request in flight")
        second = post(writer.ingest_url, body)
        assert second.status == 429
        assert second.headers.get("Retry-After") == "1"
        assert first.result().status == 200
    assert DeltaTable(s3_uri, storage_options=cloud_env).version() == 1


def test_slow_body_gets_408_and_frees_its_budget(tmp_path: Path, writers: list[WriterProcess]) -> None:
    config = settings_file(tmp_path, writer={"bodyTimeoutSeconds": 1})
    (writer,) = start_writers(1, str(tmp_path / "t"), config, {}, tmp_path, writers)
    with socket.create_connection(("127.0.0.1", writer.port), timeout=30) as conn:
        conn.sendall(
            b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: 100000\r\n\r\n" + ndjson([event(1)])
        )  # and then nothing more
        reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"did not arrive within 1 s" in reply
    assert "ingest_inflight_bytes 0.0" in writer.metrics()
    assert post(writer.ingest_url, ndjson([event(2)])).status == 200


def test_producer_retry_after_timeout_creates_no_duplicate(
    s3_uri: str, cloud_env: dict[str, str], tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(tmp_path, writer={"batching": {"maxDelayMs": 1500}})
    (writer,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    headers = {"X-Producer-Id": "sensor-7", "X-Sequence": "1"}
    body = ndjson([event(i) for i in range(10)])
    with pytest.raises(TimeoutError):
        post(writer.ingest_url, body, headers=headers, timeout=0.3)  # the client gives up before the ack
    retry = post(writer.ingest_url, body, headers=headers)
    assert retry.status == 200
    again = post(writer.ingest_url, body, headers=headers)  # and once more, long after the commit
    assert again.status == 200 and again.body["duplicate"] is True
    table = DeltaTable(s3_uri, storage_options=cloud_env)
    assert table.to_pyarrow_table().num_rows == 10
    assert table.transaction_version("sensor-7") == 1
    assert (
        post(writer.ingest_url, body, headers={"X-Producer-Id": "sensor-7", "X-Sequence": "2"}).status == 200
    )
    assert DeltaTable(s3_uri, storage_options=cloud_env).to_pyarrow_table().num_rows == 20


def test_retry_on_another_replica_is_deduplicated(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(tmp_path, locking={"kind": "dynamodb", "tableName": lock_table})
    a, b = start_writers(2, s3_uri, config, cloud_env, tmp_path, writers)
    headers = {"X-Producer-Id": "p", "X-Sequence": "41"}
    assert post(a.ingest_url, ndjson([event(1)]), headers=headers).body.get("duplicate") is None
    assert post(b.ingest_url, ndjson([event(1)]), headers=headers).body["duplicate"] is True
    assert DeltaTable(s3_uri, storage_options=cloud_env).to_pyarrow_table().num_rows == 1


def test_health_readiness_table_info_and_metrics(s3_writer: WriterProcess) -> None:
    assert get(f"{s3_writer.url}/healthz").status == 200
    assert get(f"{s3_writer.url}/readyz").status == 200
    assert post(s3_writer.ingest_url, ndjson([event(1)])).status == 200
    assert post(s3_writer.ingest_url, b"{bad\n").status == 400
    info = get(f"{s3_writer.url}/v1/table").body
    assert info["version"] == 1 and info["schema"][0] == {"name": "id", "type": "long", "nullable": False}
    text = s3_writer.metrics()
    for line in (
        "ingest_rows_total 1.0",
        'ingest_requests_total{code="200"} 1.0',
        'ingest_requests_total{code="400"} 1.0',
        "commit_duration_seconds_count 1.0",
        "batch_rows_count 1.0",
        "commit_retries_total 0.0",
        "lock_wait_seconds_count 1.0",
        "table_version 1.0",
    ):
        assert line in text, line


def test_sigterm_flushes_and_exits_zero(
    s3_uri: str, cloud_env: dict[str, str], tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(tmp_path, writer={"batching": {"maxDelayMs": 1000}})
    (writer,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pending = [pool.submit(post, writer.ingest_url, ndjson([event(i)])) for i in range(4)]
        wait_for(lambda: "ingest_inflight_bytes 0.0" not in writer.metrics(), "requests in flight")
        assert writer.terminate() == 0
        statuses = [p.result().status for p in pending]
    acked = statuses.count(200)
    assert acked >= 1
    assert DeltaTable(s3_uri, storage_options=cloud_env).to_pyarrow_table().num_rows == acked


def test_local_table_with_auth_token(tmp_path: Path, writers: list[WriterProcess]) -> None:
    uri = str(tmp_path / "local-table")
    config = settings_file(tmp_path, writer={"authTokenEnv": "INGEST_TOKEN"})
    (writer,) = start_writers(1, uri, config, {"INGEST_TOKEN": "s3cret"}, tmp_path, writers)
    assert post(writer.ingest_url, ndjson([event(1)])).status == 401
    ok = post(writer.ingest_url, ndjson([event(1)]), headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 200
    assert pl.read_delta(uri)["id"].to_list() == [1]
    assert (Path(uri) / "_deltaingest" / "commit.lock").exists()
    for path in ("/v1/table", "/v1/producers/p"):  # what names the table and its producers needs it too
        assert get(f"{writer.url}{path}").status == 401
        request = urllib.request.Request(f"{writer.url}{path}", headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    assert get(f"{writer.url}/v1/openapi.json").status == 200  # the document itself is public


def test_missing_table_without_schema_exits_with_clear_error(
    s3_uri: str, cloud_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "empty.yaml"
    config.write_text("writer: {}\n")
    result = run_cli("writer", "--table", s3_uri, "--config", str(config), "--port", "0", env=cloud_env)
    assert result.returncode == 2
    assert b"does not exist and the settings give no schema" in result.stderr


def test_missing_lock_table_without_create_fails_at_start(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path
) -> None:
    config = settings_file(tmp_path)
    result = run_cli("writer", "--table", s3_uri, "--config", str(config), "--lock", "dynamodb",
                     "--lock-table", lock_table, "--no-create-lock-table", env=cloud_env)  # fmt: skip
    assert result.returncode == 1
    assert b"does not exist and creating it is turned off" in result.stderr
    assert not DeltaTable.is_deltatable(s3_uri, storage_options=cloud_env)  # a failed start writes nothing


def test_write_command_validates_everything_first(
    s3_uri: str, cloud_env: dict[str, str], tmp_path: Path
) -> None:
    config = settings_file(tmp_path)
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(ndjson([event(i) for i in range(25)] + [event(25, id="x")]))
    result = run_cli("write", "--table", s3_uri, "--config", str(config), "--input", str(bad),
                     "--batch-rows", "10", env=cloud_env)  # fmt: skip
    assert result.returncode == 2
    assert b"line 26, field 'id'" in result.stderr
    assert DeltaTable(s3_uri, storage_options=cloud_env).version() == 0

    good = tmp_path / "good.ndjson"
    good.write_bytes(ndjson([event(i) for i in range(25)]))
    args = ("write", "--table", s3_uri, "--config", str(config), "--input", str(good), "--batch-rows", "10",
            "--producer-id", "nightly-2024-05-01")  # fmt: skip
    first = run_cli(*args, env=cloud_env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) | {"table": None} == {
        "table": None,
        "version": 3,
        "rows": 25,
        "skippedRows": 0,
        "commits": 3,
    }
    rerun = json.loads(run_cli(*args, env=cloud_env).stdout)  # same producer id: nothing written twice
    assert rerun["rows"] == 0 and rerun["skippedRows"] == 25
    assert DeltaTable(s3_uri, storage_options=cloud_env).to_pyarrow_table().num_rows == 25

    piped = run_cli("write", "--table", s3_uri, "--config", str(config), "--input", "-", env=cloud_env,
                    stdin=ndjson([event(i) for i in range(100, 104)]))  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["rows"] == 4
    assert DeltaTable(s3_uri, storage_options=cloud_env).to_pyarrow_table().num_rows == 29


def test_group_that_cannot_commit_gets_503_and_writes_nothing(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(
        tmp_path, locking={"kind": "dynamodb", "tableName": lock_table, "acquireTimeoutSeconds": 1}
    )
    (writer,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    squatter = DynamoDBLock(
        dynamodb_client(endpoint=cloud_env["AWS_ENDPOINT_URL_DYNAMODB"], region="us-east-1"),
        table_name=lock_table, lock_id=f"{s3_uri}#commit", holder="squatter", lease_seconds=60,
    )  # fmt: skip
    lease = squatter.acquire()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda i: post(writer.ingest_url, ndjson([event(i)])), range(3)))
    assert [r.status for r in responses] == [503, 503, 503]
    assert all("held by squatter" in r.body["error"] for r in responses)
    assert responses[0].headers.get("Retry-After") == "1"
    assert DeltaTable(s3_uri, storage_options=cloud_env).version() == 0
    squatter.release(lease)
    squatter.close()
    assert post(writer.ingest_url, ndjson([event(9)])).status == 200
    assert 'commits_total{result="failure"}' in writer.metrics()


def test_storage_option_flag_and_secrets_never_logged(
    s3_uri: str, cloud_env: dict[str, str], tmp_path: Path, writers: list[WriterProcess]
) -> None:
    env = {k: v for k, v in cloud_env.items() if k != "AWS_ENDPOINT_URL"}
    config = settings_file(tmp_path)
    endpoint_flag = ("--storage-option", f"AWS_ENDPOINT_URL={cloud_env['AWS_ENDPOINT_URL']}")
    (writer,) = start_writers(
        1, s3_uri, config, {**env, "AWS_ENDPOINT_URL": ""}, tmp_path, writers, endpoint_flag
    )
    assert post(writer.ingest_url, ndjson([event(1)])).status == 200
    writer.terminate()
    log = writer.log_path.read_text()
    assert cloud_env["AWS_ENDPOINT_URL"] in log  # the options are logged ...
    assert cloud_env["AWS_SECRET_ACCESS_KEY"] not in log  # ... but never the credentials
    assert cloud_env["AWS_ACCESS_KEY_ID"] + "'" not in log


def test_write_command_evolves_the_schema_and_refuses_disagreeing_batches_before_writing(
    s3_uri: str, cloud_env: dict[str, str], tmp_path: Path
) -> None:
    config = settings_file(tmp_path, writer={"schemaEvolution": "addColumns"})
    disagreeing = tmp_path / "disagreeing.ndjson"
    disagreeing.write_bytes(ndjson([event(1, size=3), event(2, size="big")]))
    args = ("write", "--table", s3_uri, "--config", str(config), "--batch-rows", "1")
    refused = run_cli(*args, "--input", str(disagreeing), env=cloud_env)
    assert refused.returncode == 2 and b"line 2, field 'size'" in refused.stderr
    assert DeltaTable(s3_uri, storage_options=cloud_env).version() == 0  # nothing written

    good = tmp_path / "good.ndjson"
    good.write_bytes(ndjson([event(1, size=3), event(2), event(3, size=4, colour="red")]))
    assert run_cli(*args, "--input", str(good), env=cloud_env).returncode == 0
    table = DeltaTable(s3_uri, storage_options=cloud_env)
    rows = sorted(
        table.to_pyarrow_table().select(["id", "size", "colour"]).to_pylist(), key=lambda r: r["id"]
    )
    assert rows == [
        {"id": 1, "size": 3, "colour": None},
        {"id": 2, "size": None, "colour": None},
        {"id": 3, "size": 4, "colour": "red"},
    ]
