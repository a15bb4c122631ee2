"""writer.schemaEvolution: addColumns over real HTTP: two writer replicas on SeaweedFS with the DynamoDB
lease, read back with deltalake and polars."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import boto3
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from deltaingest.delta_types import type_name
from tests.helpers import Response, WriterProcess, event, get, ndjson, post, settings_file, start_writers

pytestmark = pytest.mark.integration


def _log_entry(uri: str, env: dict[str, str], version: int) -> list[dict[str, object]]:
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    body = client.get_object(Bucket=bucket, Key=f"{prefix}/_delta_log/{version:020d}.json")["Body"].read()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_two_replicas_add_columns_in_the_commit_of_their_rows_and_refuse_type_changes(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(
        tmp_path,
        writer={"schemaEvolution": "addColumns", "inferTimestamps": True, "batching": {"maxDelayMs": 400}},
        locking={"kind": "dynamodb", "tableName": lock_table},
    )
    a, b = start_writers(2, s3_uri, config, cloud_env, tmp_path, writers)
    before = DeltaTable(s3_uri, storage_options=cloud_env).version()
    first = post(a.ingest_url, ndjson([event(1, colour="red", size=3, seen="2024-05-01T10:00:00Z")]))
    assert first.status == 200, first.body
    assert first.body["version"] == before + 1  # one commit: the new columns and the rows
    actions = _log_entry(s3_uri, cloud_env, before + 1)
    assert {key for action in actions for key in action} >= {"metaData", "add", "commitInfo"}
    schema = pa.schema(DeltaTable(s3_uri, storage_options=cloud_env).schema().to_arrow())
    assert [(f.name, type_name(f.type), f.nullable) for f in schema][-3:] == [
        ("colour", "string", True),
        ("size", "long", True),
        ("seen", "timestamp", True),
    ]
    # B decoded against the schema it loaded at start: its idea of size (a string) meets the table's at
    # commit time and is refused; then B has caught up and takes size as the table has it.
    stale = post(b.ingest_url, ndjson([event(2, size="big")]))
    assert stale.status == 422 and stale.body["field"] == "size", stale.body
    assert "the table's column is long" in stale.body["error"]
    assert post(b.ingest_url, ndjson([event(3, size=5)])).status == 200
    columns = [c["name"] for c in get(f"{b.url}/v1/table").body["schema"]]
    assert columns[-3:] == ["colour", "size", "seen"]
    # An existing column's type never changes.
    changed = post(b.ingest_url, ndjson([event(4, user=5)]))
    assert changed.status == 422 and changed.body["field"] == "user"

    # Two requests of one group (maxDelayMs gathers them) that disagree on a new field: the later gets 422.
    answers: dict[str, Response] = {}

    def send(name: str, value: object, delay: float) -> None:
        time.sleep(delay)
        answers[name] = post(a.ingest_url, ndjson([event(10 if name == "earlier" else 11, weight=value)]))

    threads = [
        threading.Thread(target=send, args=("earlier", 70, 0.0)),
        threading.Thread(target=send, args=("later", "heavy", 0.15)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers["earlier"].status == 200, answers["earlier"].body
    assert answers["later"].status == 422 and answers["later"].body["field"] == "weight"
    assert "an earlier request of the same commit adds it as long" in answers["later"].body["error"]

    table = DeltaTable(s3_uri, storage_options=cloud_env)
    frame = pl.from_arrow(table.to_pyarrow_table()).sort("id")
    assert isinstance(frame, pl.DataFrame)
    assert frame["id"].to_list() == [1, 3, 10]
    assert frame["size"].to_list() == [3, 5, None]
    assert frame["colour"].to_list() == ["red", None, None]
    assert frame["weight"].to_list() == [None, None, 70]
    read = pl.read_delta(s3_uri, storage_options=cloud_env)
    assert read.schema["seen"] == pl.Datetime("us", "UTC") and read.height == 3
