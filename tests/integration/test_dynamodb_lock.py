"""The DynamoDB lease against moto's server: exclusion, fencing, expiry, hints, table creation."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator

import pytest

from deltaingest.devservers import MotoDynamoDB
from deltaingest.locking.dynamodb import DynamoDBLock, dynamodb_client, ensure_lock_table
from deltaingest.locking.lease import LeaseLost, LockError, LockTimeout, check_lease

_OPEN: list[DynamoDBLock] = []


def _lock(moto: MotoDynamoDB, table: str, holder: str, **kw: float) -> DynamoDBLock:
    client = dynamodb_client(endpoint=moto.endpoint, region="us-east-1")
    lock = DynamoDBLock(client, table_name=table, lock_id="s3://b/t#commit", holder=holder, **kw)  # type: ignore[arg-type]
    _OPEN.append(lock)
    return lock


@pytest.fixture
def table(moto: MotoDynamoDB, cloud_env: dict[str, str], lock_table: str) -> Iterator[str]:
    ensure_lock_table(dynamodb_client(endpoint=moto.endpoint, region="us-east-1"), lock_table)
    yield lock_table
    while _OPEN:  # stop every heartbeat thread the test started
        _OPEN.pop().close()


def test_created_table_has_ttl_on_expire_time(moto: MotoDynamoDB, table: str) -> None:
    client = dynamodb_client(endpoint=moto.endpoint, region="us-east-1")
    description = client.describe_table(TableName=table)["Table"]
    assert description["KeySchema"] == [{"AttributeName": "lockId", "KeyType": "HASH"}]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expireTime"
    ensure_lock_table(client, table)  # idempotent


def test_exclusion_and_increasing_tokens(moto: MotoDynamoDB, table: str) -> None:
    a, b = _lock(moto, table, "a"), _lock(moto, table, "b", acquire_timeout=0.3)
    lease = a.acquire()
    assert b.try_acquire() is None
    assert "a (token" in (b.describe_holder() or "")
    with pytest.raises(LockTimeout, match="held by a"):
        b.acquire()
    a.release(lease)
    second = b.acquire()
    assert lease.token is not None and second.token is not None and second.token == lease.token + 1
    b.release(second)
    assert b.describe_holder() is None
    a.close()
    b.close()


def test_clean_release_passes_version_hint(moto: MotoDynamoDB, table: str) -> None:
    a, b = _lock(moto, table, "a"), _lock(moto, table, "b")
    first = a.acquire()
    assert first.known_version is None
    first.release_version = 41
    a.release(first)
    second = b.acquire()
    assert second.known_version == 41
    b.release(second)  # released without a version: the next holder must not trust a hint
    assert a.acquire().known_version is None


def test_expired_lease_is_taken_over_without_hint(moto: MotoDynamoDB, table: str) -> None:
    dead = _lock(moto, table, "dead", lease_seconds=1)
    lease = dead.acquire()
    dead.close()  # stops the heartbeat: the holder "dies" without releasing
    survivor = _lock(moto, table, "survivor", acquire_timeout=10)  # waits out the 1 s lease, then takes it
    taken = survivor.acquire()
    assert lease.token is not None and taken.token is not None and taken.token > lease.token
    assert taken.known_version is None
    dead.release(lease)  # the late release of a lost lease must not free the survivor's lock
    assert "survivor" in (survivor.describe_holder() or "")


def test_heartbeat_keeps_a_long_lease(moto: MotoDynamoDB, table: str) -> None:
    holder = _lock(moto, table, "slow", lease_seconds=3)
    lease = holder.acquire()
    time.sleep(4.5)  # longer than the lease: only renewals keep it
    check_lease(lease, margin=0.5)
    other = _lock(moto, table, "other")
    assert other.try_acquire() is None
    holder.release(lease)
    holder.close()


def test_unreachable_dynamodb_is_a_lock_error_and_the_heartbeat_survives(
    moto: MotoDynamoDB, table: str
) -> None:
    lock = _lock(moto, table, "x", lease_seconds=1.5)
    lease = lock.acquire()
    lock._client = dynamodb_client(endpoint="http://127.0.0.1:9", region="us-east-1")  # nothing listens there
    lock._client.meta.config.retries = {"max_attempts": 1}
    time.sleep(1.2)  # at least one renewal attempt fails
    assert lock._heartbeat.is_alive()
    lock.release(lease)  # does not raise: the lease will expire
    with pytest.raises(LockError):
        lock.try_acquire()
    assert "unknown" in (lock.describe_holder() or "")


def test_check_lease_refuses_an_expired_lease(moto: MotoDynamoDB, table: str) -> None:
    holder = _lock(moto, table, "x", lease_seconds=1)
    holder.close()
    lease = holder.acquire()
    time.sleep(1.1)
    with pytest.raises(LeaseLost):
        check_lease(lease)


def test_contending_holders_never_overlap_and_tokens_are_unique(moto: MotoDynamoDB, table: str) -> None:
    holders = [_lock(moto, table, f"h{i}") for i in range(3)]
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    tokens: list[int] = []
    acquired: collections.Counter[str] = collections.Counter()
    guard = threading.Lock()
    stop = time.monotonic() + 4

    def contend(lock: DynamoDBLock) -> None:
        while time.monotonic() < stop:
            lease = lock.acquire()
            with guard:
                inside.append(lock.holder)
                if len(inside) > 1:
                    overlaps.append(tuple(inside))
                assert lease.token is not None
                tokens.append(lease.token)
                acquired[lock.holder] += 1
            time.sleep(0.01)  # the critical section
            with guard:
                inside.remove(lock.holder)
            lock.release(lease)

    threads = [threading.Thread(target=contend, args=(lock,)) for lock in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    assert all(acquired[lock.holder] >= 5 for lock in holders), acquired  # nobody starves


def test_one_lock_object_excludes_its_second_caller(moto: MotoDynamoDB, table: str) -> None:
    """A daemon's compaction and vacuum share one maintenance lock object and holder id."""
    lock = _lock(moto, table, "daemon")
    lease = lock.acquire()
    assert lock.try_acquire() is None, "the holder's own second caller got the lock it holds"
    lock.release(lease)
    again = lock.try_acquire()
    assert again is not None and lease.token is not None and again.token == lease.token + 1
    lock.release(again)
