"""writer.invalidRows: deadLetter over real HTTP: two writer replicas on SeaweedFS with the DynamoDB lease,
the dead-letter table read back with deltalake and polars, and S3 faults injected between the two commits by a
proxy in front of SeaweedFS (the writer's own S3 client sees them as it would see the store's)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from deltaingest.bench.s3trace import Fault, s3_trace
from deltaingest.client import Producer
from deltaingest.devservers import SeaweedFS
from tests.helpers import WriterProcess, event, get, post, settings_file, start_writers

pytestmark = pytest.mark.integration

BAD_ID = {"id": None, "ts": "2024-05-01T10:00:00+00:00"}  # a null non-nullable column
NO_TS = {"id": 90}  # a non-nullable column missing


def _config(tmp_path: Path, s3_uri: str, lock_table: str, **writer: Any) -> Path:
    return settings_file(
        tmp_path,
        writer={"invalidRows": "deadLetter", "deadLetter": {"uri": f"{s3_uri}-dead"}, **writer},
        locking={"kind": "dynamodb", "tableName": lock_table},
    )


def _body(*rows: dict[str, Any] | str) -> bytes:
    return b"".join((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in rows)


def _ids(uri: str, env: dict[str, str]) -> list[int]:
    return sorted(pl.read_delta(uri, storage_options=env)["id"].to_list())


def _dead(uri: str, env: dict[str, str]) -> pl.DataFrame:
    return pl.read_delta(f"{uri}-dead", storage_options=env).sort("producer_id", "sequence", "row_number")


def _headers(producer: str, sequence: int, request_id: str | None = None) -> dict[str, str]:
    ids = {"X-Request-Id": request_id} if request_id else {}
    return {"X-Producer-Id": producer, "X-Sequence": str(sequence), **ids}


def test_two_replicas_write_good_rows_to_the_table_and_the_rest_to_dead_letters_exactly_once(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    a, b = start_writers(2, s3_uri, _config(tmp_path, s3_uri, lock_table), cloud_env, tmp_path, writers)
    mixed = _body(event(1), BAD_ID, "{not json", event(2), NO_TS)
    first = post(a.ingest_url, mixed, headers=_headers("p", 1, "req-1"))
    assert first.status == 200 and first.body == {
        "version": first.body["version"],
        "rows": 2,
        "deadLettered": 3,
    }
    # The other replica: a request all dead letters is a 200 with no rows, its sequence recorded.
    all_bad = post(b.ingest_url, _body(BAD_ID, NO_TS), headers=_headers("p", 2))
    assert all_bad.status == 200 and all_bad.body["rows"] == 0 and all_bad.body["deadLettered"] == 2
    assert post(b.ingest_url, _body(event(3))).body["deadLettered"] == 0  # unsequenced, all good
    # Retries of both sequences, each on the replica that did not commit it: duplicates, nothing written.
    again = post(b.ingest_url, mixed, headers=_headers("p", 1))
    assert again.body["duplicate"] is True and again.body["deadLettered"] == 3
    assert post(a.ingest_url, _body(BAD_ID, NO_TS), headers=_headers("p", 2)).body["duplicate"] is True
    assert get(f"{a.url}/v1/producers/p").body["sequence"] == 2
    with Producer([b.url, a.url], "sdk") as producer:  # the client reports dead letters too
        ack = producer.send([event(4), {"id": 5}])
        assert (ack.rows, ack.dead_lettered, ack.duplicate) == (1, 1, False)

    assert _ids(s3_uri, cloud_env) == [1, 2, 3, 4]
    dead = DeltaTable(f"{s3_uri}-dead", storage_options=cloud_env)
    app = f"p@{DeltaTable(s3_uri, storage_options=cloud_env).metadata().id}"  # the producer at this table
    assert dead.transaction_version(app) == 2  # the same producer sequences as the table's
    frame = _dead(s3_uri, cloud_env).filter(pl.col("producer_id") == "p")
    assert frame.height == 5
    assert frame["sequence"].to_list() == [1, 1, 1, 2, 2]
    assert frame["row_number"].to_list() == [2, 3, 5, 1, 2]
    assert frame["field"].to_list() == ["id", None, "ts", "id", "ts"]
    assert frame["raw"].to_list()[:3] == [json.dumps(BAD_ID), "{not json", json.dumps(NO_TS)]
    assert frame["error"].to_list()[0] == "row 2, field 'id': missing or null, but the column is not nullable"
    assert frame["request_id"].to_list()[:3] == ["req-1"] * 3
    assert frame["received_at"].null_count() == 0 and frame["received_at"].dtype.time_zone == "UTC"  # type: ignore[attr-defined]


def test_a_failure_between_the_two_commits_then_a_retry_writes_neither_table_twice(
    seaweed: SeaweedFS,
    s3_uri: str,
    cloud_env: dict[str, str],
    lock_table: str,
    tmp_path: Path,
    writers: list[WriterProcess],
) -> None:
    table_prefix = s3_uri.split("/", 3)[3]
    config = _config(tmp_path, s3_uri, lock_table, commitAttempts=2)
    with s3_trace(seaweed.endpoint) as (endpoint, trace):
        (a,) = start_writers(
            1, s3_uri, config, {**cloud_env, "AWS_ENDPOINT_URL": endpoint}, tmp_path, writers
        )
        (b,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
        body = _body(event(1), BAD_ID, event(2))
        # The table's commit fails at A: nothing is written anywhere (the dead letters come second).
        table_log = Fault(
            "PUT", re.compile(rf"/{re.escape(table_prefix)}/_delta_log/\d{{20}}\.json$"), times=2
        )
        trace.faults.append(table_log)
        assert post(a.ingest_url, body, headers=_headers("p", 5)).status == 503 and table_log.hits == 2
        assert _ids(s3_uri, cloud_env) == [] and _dead(s3_uri, cloud_env).height == 0
        # Now the dead-letter commit fails at A, after the table's landed: the failure between the two.
        dead_log = Fault(
            "PUT", re.compile(rf"/{re.escape(table_prefix)}-dead/_delta_log/\d{{20}}\.json$"), times=2
        )
        trace.faults.append(dead_log)
        assert post(a.ingest_url, body, headers=_headers("p", 5)).status == 503 and dead_log.hits == 2
        assert _ids(s3_uri, cloud_env) == [1, 2] and _dead(s3_uri, cloud_env).height == 0
        # The producer retries the same sequence on the other replica: a duplicate in the table, and the
        # dead rows still missing are written; then on A, healthy again: nothing more anywhere.
        retried = post(b.ingest_url, body, headers=_headers("p", 5))
        assert retried.status == 200, retried.body
        assert (retried.body["rows"], retried.body["deadLettered"], retried.body["duplicate"]) == (2, 1, True)
        assert _dead(s3_uri, cloud_env)["row_number"].to_list() == [2]
        trace.faults.clear()
        assert post(a.ingest_url, body, headers=_headers("p", 5)).body["duplicate"] is True
    assert _ids(s3_uri, cloud_env) == [1, 2]
    assert _dead(s3_uri, cloud_env)["row_number"].to_list() == [2]


def test_a_dead_letter_commit_that_landed_although_the_writer_saw_it_fail_is_not_written_again(
    seaweed: SeaweedFS,
    s3_uri: str,
    cloud_env: dict[str, str],
    lock_table: str,
    tmp_path: Path,
    writers: list[WriterProcess],
) -> None:
    dead_prefix = s3_uri.split("/", 3)[3] + "-dead"
    config = _config(tmp_path, s3_uri, lock_table, commitAttempts=3)
    with s3_trace(seaweed.endpoint) as (endpoint, trace):
        (a,) = start_writers(
            1, s3_uri, config, {**cloud_env, "AWS_ENDPOINT_URL": endpoint}, tmp_path, writers
        )
        lost = Fault(
            "PUT", re.compile(rf"/{re.escape(dead_prefix)}/_delta_log/\d{{20}}\.json$"), forward=True
        )
        trace.faults.append(lost)
        # No producer sequence: only the writer's own commit id tells the retry that the first commit landed.
        answer = post(a.ingest_url, _body(BAD_ID, event(1), NO_TS))
        assert answer.status == 200 and answer.body["rows"] == 1 and answer.body["deadLettered"] == 2
        assert lost.hits == 1
    assert _ids(s3_uri, cloud_env) == [1]
    assert _dead(s3_uri, cloud_env)["row_number"].to_list() == [1, 3]
    assert "commit attempt 1 failed" in a.log()
