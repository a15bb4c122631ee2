"""The commit lease on moto: kept across a lone writer's commits, handed over when another writer asks,
short enough that a killed holder stalls the others for about a second, fencing tokens that only rise."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from deltaingest.config import Settings
from deltaingest.devservers import MotoDynamoDB
from deltaingest.ingest.committer import Batch
from deltaingest.ingest.service import open_writer
from deltaingest.locking.dynamodb import DynamoDBLock, dynamodb_client, ensure_lock_table
from tests.helpers import WriterProcess, event, ndjson, post, settings_file, start_writers, wait_for

pytestmark = pytest.mark.integration

LEASE = 1.0


@pytest.fixture
def locks(moto: MotoDynamoDB, cloud_env: dict[str, str], lock_table: str) -> Iterator[list[DynamoDBLock]]:
    ensure_lock_table(dynamodb_client(endpoint=moto.endpoint, region="us-east-1"), lock_table)
    made: list[DynamoDBLock] = []
    yield made
    for lock in made:
        lock.close()


def _commit_lock(moto: MotoDynamoDB, table: str, holder: str, made: list[DynamoDBLock]) -> DynamoDBLock:
    client = dynamodb_client(endpoint=moto.endpoint, region="us-east-1")
    lock = DynamoDBLock(
        client, table_name=table, lock_id="s3://b/t#commit", holder=holder, lease_seconds=LEASE, sticky=True
    )
    made.append(lock)
    return lock


def _count_calls(client: Any) -> collections.Counter[str]:
    """DynamoDB calls made outside the heartbeat thread, by operation."""
    calls: collections.Counter[str] = collections.Counter()

    def count(event_name: str, **_: Any) -> None:
        if threading.current_thread().name != "lease-heartbeat":
            calls[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("before-call.dynamodb", count)
    return calls


def test_a_lone_writer_commits_without_lock_calls(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str
) -> None:
    settings = Settings.model_validate(
        {
            "table": {"uri": s3_uri, "schema": [{"name": "id", "type": "long", "nullable": False}]},
            "locking": {"kind": "dynamodb", "tableName": lock_table},
        }
    )
    writer = open_writer(settings)
    try:
        calls = _count_calls(writer.lock._client)  # type: ignore[attr-defined]
        schema = pa.schema([pa.field("id", pa.int64(), nullable=False)])
        tokens = set()
        for i in range(20):
            writer.committer.commit([Batch(pa.table({"id": [i]}, schema=schema))])
            if i == 0:
                assert calls["UpdateItem"] == 1, calls  # the first commit takes the lease
                calls.clear()
        assert sum(calls.values()) == 0, f"lock calls on the commit path of a lone writer: {calls}"
    finally:
        writer.close()
    history = DeltaTable(s3_uri, storage_options=cloud_env).history()
    tokens = {h["deltaingest.fencingToken"] for h in history if h["operation"] == "WRITE"}
    assert len(tokens) == 1  # one holding for all 20 commits
    # Closing gave the lease back with the version hint for the next holder.
    item = dynamodb_client(endpoint=cloud_env["AWS_ENDPOINT_URL_DYNAMODB"], region="us-east-1").get_item(
        TableName=lock_table, Key={"lockId": {"S": f"{s3_uri}#commit"}}, ConsistentRead=True
    )["Item"]
    assert "holder" not in item and item["releasedVersion"]["N"] == "20"


def test_a_waiter_gets_the_lease_before_it_expires(
    moto: MotoDynamoDB, lock_table: str, locks: list[DynamoDBLock]
) -> None:
    holder, waiter = (_commit_lock(moto, lock_table, name, locks) for name in ("holder", "waiter"))
    first = holder.acquire()
    first.release_version = 7
    holder.release(first)  # kept: nobody else wants it
    assert holder.acquire() is first and first.known_version == 7  # no call: still ours
    holder.release(first)
    # The holder stays alive and renewing, so only its hand-over can give the waiter the lock.
    time.sleep(LEASE * 2)
    taken = waiter.acquire()
    assert first.token is not None and taken.token is not None and taken.token > first.token
    assert taken.known_version == 7  # handed over cleanly, with the version hint
    assert "waiter" in (holder.describe_holder() or "")


def test_contenders_alternate_without_overlap_or_starvation(
    moto: MotoDynamoDB, lock_table: str, locks: list[DynamoDBLock]
) -> None:
    contenders = [_commit_lock(moto, lock_table, f"w{i}", locks) for i in range(3)]
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    holdings: list[tuple[int, str]] = []  # (token, holder) in the order the lock was taken
    commits: collections.Counter[str] = collections.Counter()
    guard = threading.Lock()
    stop = time.monotonic() + 8

    def contend(lock: DynamoDBLock) -> None:
        while time.monotonic() < stop:  # sustained load: every contender always wants the lock
            lease = lock.acquire()
            assert lease.token is not None
            with guard:
                inside.append(lock.holder)
                if len(inside) > 1:
                    overlaps.append(tuple(inside))
                if not holdings or holdings[-1] != (lease.token, lock.holder):
                    holdings.append((lease.token, lock.holder))
                commits[lock.holder] += 1
            time.sleep(0.01)  # the commit
            with guard:
                inside.remove(lock.holder)
            lock.release(lease)

    threads = [threading.Thread(target=contend, args=(lock,)) for lock in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    tokens = [token for token, _ in holdings]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), "tokens must rise with each holder"
    per_holder = collections.Counter(name for _, name in holdings)
    assert all(per_holder[lock.holder] >= 3 for lock in contenders), (per_holder, commits)  # nobody starves
    assert len(holdings) < sum(commits.values())  # and a holder batches several commits per holding


def test_a_killed_holder_stalls_the_other_writer_about_a_lease(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(tmp_path, locking={"kind": "dynamodb", "tableName": lock_table})
    victim, survivor = start_writers(2, s3_uri, config, cloud_env, tmp_path, writers)
    acked: list[int] = []

    def produce(client: int) -> None:  # 8 producers: the victim is committing when it dies
        for i in range(client, 10**6, 8):
            try:
                if post(victim.ingest_url, ndjson([event(i)]), timeout=5).status != 200:
                    return
            except OSError:
                return
            acked.append(i)

    producers = [threading.Thread(target=produce, args=(c,)) for c in range(8)]
    for producer in producers:
        producer.start()
    wait_for(lambda: len(acked) >= 100, "100 acknowledgements by the victim")
    victim.kill9()
    killed = time.monotonic()
    answer = post(survivor.ingest_url, ndjson([event(10**7)]))
    stall = time.monotonic() - killed
    for producer in producers:
        producer.join()
    print(f"stall after SIGKILL of the holder: {stall:.3f} s")
    assert answer.status == 200, answer.body
    # The survivor waited for the dead writer's one-second lease, not for the 20 s maintenance lease.
    assert stall < LEASE + 2, f"commit stalled {stall:.2f} s after the holder was killed"
    table = DeltaTable(s3_uri, storage_options=cloud_env)
    writes = sorted((h for h in table.history() if h["operation"] == "WRITE"), key=lambda h: h["version"])
    tokens = [int(h["deltaingest.fencingToken"]) for h in writes]
    assert tokens == sorted(tokens) and tokens[-1] > tokens[-2]  # the survivor's holding is a new token
    ids = table.to_pyarrow_table(columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) and set(acked) | {10**7} <= set(ids)  # nothing acknowledged was lost
