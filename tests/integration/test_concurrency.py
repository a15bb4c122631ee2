"""Several writer processes and concurrent clients on one table with the DynamoDB lock; and kill -9."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from deltaingest.locking.dynamodb import dynamodb_client
from tests.helpers import Load, WriterProcess, event, ndjson, post, settings_file, start_writers, wait_for

pytestmark = pytest.mark.integration


def _fencing_tokens_by_version(table: DeltaTable) -> list[tuple[int, int]]:
    writes = [h for h in table.history() if h["operation"] == "WRITE"]
    return sorted((h["version"], int(h["deltaingest.fencingToken"])) for h in writes)


def test_two_writers_eight_clients_500_commits(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(tmp_path, locking={"kind": "dynamodb", "tableName": lock_table})
    a, b = start_writers(2, s3_uri, config, cloud_env, tmp_path, writers)
    load = Load([a.ingest_url, b.ingest_url], clients=8, stop_at_version=500)
    load.run()

    assert load.failures == [], (load.failures[:5], a.log(), b.log())
    assert load.connection_errors == 0
    assert load.max_version >= 500
    assert min(load.acks_by_url.values()) > 0  # both writers took part
    table = DeltaTable(s3_uri, storage_options=cloud_env)
    ids = table.to_pyarrow_table(columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicated rows"
    assert sorted(ids) == sorted(load.acked), "lost or unexpected rows"
    tokens = _fencing_tokens_by_version(table)
    assert len(tokens) == table.version() >= 500
    assert [t for _, t in tokens] == sorted(t for _, t in tokens), "fencing tokens decreased as versions rose"
    for writer in (a, b):
        assert 'commits_total{result="failure"}' not in writer.metrics()


def test_kill9_of_one_writer_loses_no_acknowledged_row(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    lease_seconds = 3
    config = settings_file(
        tmp_path, locking={"kind": "dynamodb", "tableName": lock_table, "leaseSeconds": lease_seconds}
    )
    victim, survivor = start_writers(2, s3_uri, config, cloud_env, tmp_path, writers)
    victim_id = re.search(r"writer (\S+) on ", victim.log())
    assert victim_id is not None

    load = Load([victim.ingest_url, survivor.ingest_url], clients=6, stop_at_version=10**9)
    runner = threading.Thread(target=load.run, args=(240,))
    runner.start()
    wait_for(lambda: load.max_version >= 60 or bool(load.failures), "60 commits before the kill")
    victim.kill9()
    killed_at = load.max_version
    wait_for(lambda: load.max_version >= killed_at + 60 or bool(load.failures), "60 commits after the kill")
    load._stop.set()
    runner.join()

    assert load.failures == [], (load.failures[:5], survivor.log())
    assert load.max_version >= killed_at + 60, "the surviving writer did not carry on"
    assert victim.ingest_url in load.dead
    table = DeltaTable(s3_uri, storage_options=cloud_env)  # readable after the crash
    ids = table.to_pyarrow_table(columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicated rows"
    assert set(load.acked) <= set(ids), "an acknowledged row was lost"
    assert set(ids) == set(load.acked)  # every request was retried until acknowledged

    # Whatever lease the dead writer held has expired: it no longer holds the lock.
    time.sleep(lease_seconds + 1.5)
    client = dynamodb_client(endpoint=cloud_env["AWS_ENDPOINT_URL_DYNAMODB"], region="us-east-1")
    item = client.get_item(
        TableName=lock_table, Key={"lockId": {"S": f"{s3_uri}#commit"}}, ConsistentRead=True
    )
    holder = item["Item"].get("holder", {}).get("S")
    expires = int(item["Item"]["expireTime"]["N"])
    assert holder != victim_id.group(1) or expires < time.time()
    # and the survivor still commits
    assert post(survivor.ingest_url, ndjson([event(999_999_999)])).status == 200


def test_two_writers_on_a_local_table_share_the_lock_file(
    tmp_path: Path, writers: list[WriterProcess]
) -> None:
    uri = str(tmp_path / "local")
    config = settings_file(tmp_path)
    a, b = start_writers(2, uri, config, {}, tmp_path, writers)
    load = Load([a.ingest_url, b.ingest_url], clients=4, stop_at_version=120)
    load.run()
    assert load.failures == [] and load.connection_errors == 0, (load.failures[:5], a.log(), b.log())
    table = DeltaTable(uri)
    ids = table.to_pyarrow_table(columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == sorted(load.acked) and len(ids) == len(set(ids))
    tokens = _fencing_tokens_by_version(table)
    assert [t for _, t in tokens] == sorted(t for _, t in tokens)
