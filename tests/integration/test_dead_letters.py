"""writer.invalidRows: deadLetter over real HTTP: two writer replicas on SeaweedFS with the DynamoDB lease,
the dead-letter table read back with deltalake and polars, and S3 faults injected between the two commits by a
proxy in front of SeaweedFS (the writer's own S3 client sees them as it would see the store's)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from deltaingest.bench.s3trace import Fault, s3_trace
from deltaingest.client import Producer
from deltaingest.config import LockSpec
from deltaingest.devservers import SeaweedFS
from deltaingest.locking.factory import build_lock
from tests.helpers import WriterProcess, event, get, post, run_cli, settings_file, start_writers, wait_for

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


def _keys(seaweed: SeaweedFS, uri: str) -> set[str]:
    """The data files of a table in the bucket (outside its log and our lock folder)."""
    prefix = uri.removeprefix(f"s3://{seaweed.bucket}/") + "/"
    pages = (
        seaweed.s3_client().get_paginator("list_objects_v2").paginate(Bucket=seaweed.bucket, Prefix=prefix)
    )
    keys = {o["Key"].removeprefix(prefix) for page in pages for o in page.get("Contents", [])}
    return {k for k in keys if not k.startswith(("_delta_log/", "_deltaingest/"))}


def _active(uri: str, env: dict[str, str]) -> set[str]:
    return set(DeltaTable(uri, storage_options=env).file_uris())


def _maintain(command: str, config: Path, env: dict[str, str]) -> dict[str, Any]:
    result = run_cli(command, "--config", str(config), "--json", env=env)
    assert result.returncode == 0, result.stderr.decode()
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_compaction_and_vacuum_keep_the_dead_letter_table_under_its_own_lease_and_retention(
    seaweed: SeaweedFS,
    s3_uri: str,
    cloud_env: dict[str, str],
    lock_table: str,
    tmp_path: Path,
    writers: list[WriterProcess],
) -> None:
    window = 15.0  # the dead-letter table's retention (seconds), short enough to wait out once
    config = settings_file(
        tmp_path,
        table={"uri": s3_uri},
        writer={
            "invalidRows": "deadLetter",
            "deadLetter": {"uri": f"{s3_uri}-dead", "retainHours": window / 3600},
        },
        locking={"kind": "dynamodb", "tableName": lock_table},
        compaction={"minSmallFiles": 3, "minAgeSeconds": 0},
        vacuum={"force": True, "keepVersions": 1},
    )
    (writer,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    for sequence in range(1, 5):  # four commits to each table: four small files in each
        body = _body(event(sequence), {"id": None, "ts": "2024-05-01T10:00:00+00:00", "n": sequence})
        ack = post(writer.ingest_url, body, headers=_headers("p", sequence))
        assert (ack.status, ack.body["rows"], ack.body["deadLettered"]) == (200, 1, 1), ack.body
    dead_uri = f"{s3_uri}-dead"
    dead_rows = _dead(s3_uri, cloud_env)
    table_files, dead_files = _active(s3_uri, cloud_env), _active(dead_uri, cloud_env)
    assert len(table_files) == len(dead_files) == 4

    # The dead-letter table's maintenance lease is its own: held elsewhere, its run is skipped, the
    # table's goes ahead.
    lock = build_lock(
        LockSpec(kind="dynamodb", table_name=lock_table), dead_uri, scope="maintenance", holder="other"
    )
    lease = lock.acquire()
    try:
        report = _maintain("compact", config, cloud_env)
    finally:
        lock.release(lease)
        lock.close()
    assert report["status"] == "done" and report["filesRemoved"] == 4, report
    assert report["deadLetterTable"]["status"] == "skipped" and "other" in report["deadLetterTable"]["reason"]
    assert _active(dead_uri, cloud_env) == dead_files

    report = _maintain("compact", config, cloud_env)
    assert report["status"] == "nothing-to-do", report
    dead_report = report["deadLetterTable"]
    assert dead_report["status"] == "done" and dead_report["table"] == dead_uri, dead_report
    assert (dead_report["filesRemoved"], dead_report["filesAdded"]) == (4, 1)
    assert _dead(s3_uri, cloud_env).equals(dead_rows)  # every dead letter kept, by content
    history = DeltaTable(dead_uri, storage_options=cloud_env).history(1)[0]
    assert history["operation"] == "OPTIMIZE"

    # Vacuum: the table keeps its week (its compacted files are seconds old), the dead-letter table
    # deletes its four replaced files once its own retention has passed.
    time.sleep(window + 0.5)
    report = _maintain("vacuum", config, cloud_env)
    assert report["status"] == "done" and report["filesDeleted"] == 0, report
    dead_report = report["deadLetterTable"]
    assert dead_report["status"] == "done" and dead_report["filesDeleted"] == 4, dead_report
    assert {f"{dead_uri}/{k}" for k in _keys(seaweed, dead_uri)} == _active(dead_uri, cloud_env)
    assert len(_keys(seaweed, s3_uri)) == len(table_files) + 1  # the table's old files are still there
    assert _dead(s3_uri, cloud_env).equals(dead_rows)

    # The writer goes on with both tables after the maintainers' commits.
    ack = post(writer.ingest_url, _body(event(9), BAD_ID), headers=_headers("p", 5))
    assert (ack.status, ack.body["rows"], ack.body["deadLettered"]) == (200, 1, 1), ack.body
    assert _ids(s3_uri, cloud_env) == [1, 2, 3, 4, 9] and len(_dead(s3_uri, cloud_env)) == 5


def test_the_daemon_compacts_the_dead_letter_table(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(
        tmp_path,
        writer={"invalidRows": "deadLetter", "deadLetter": {"uri": f"{s3_uri}-dead"}},
        locking={"kind": "dynamodb", "tableName": lock_table},
        compaction={"minSmallFiles": 3, "minAgeSeconds": 0, "intervalSeconds": 0.5},
        vacuum={"enabled": False},
    )
    (daemon,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers, command="daemon")
    for sequence in range(1, 4):
        ack = post(daemon.ingest_url, _body(event(sequence), BAD_ID), headers=_headers("p", sequence))
        assert ack.status == 200 and ack.body["deadLettered"] == 1, ack.body
    dead_uri = f"{s3_uri}-dead"

    def compacted() -> bool:
        table = DeltaTable(dead_uri, storage_options=cloud_env)
        return table.history(1)[0]["operation"] == "OPTIMIZE" and len(table.file_uris()) == 1

    wait_for(compacted, "the daemon's compaction of the dead-letter table")
    assert len(_dead(s3_uri, cloud_env)) == 3
    wait_for(lambda: len(_active(s3_uri, cloud_env)) == 1, "the daemon's compaction of the table")
    assert _ids(s3_uri, cloud_env) == [1, 2, 3]
