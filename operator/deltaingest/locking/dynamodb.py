"""A lease lock in DynamoDB: conditional writes, expiry, holder identity and a fencing token.

One item per lock (``lockId`` = table URI + scope). Acquiring is a single conditional ``UpdateItem`` that
succeeds only if nobody holds an unexpired lease, and atomically increments ``fence``; releasing is an
``UpdateItem`` conditioned on still being the holder with the same token. The item also carries the table
version at the last clean release, which lets the next holder skip re-reading the Delta log.

The lease ends at ``leaseUntilMs`` (milliseconds, so a lease can be shorter than a second); ``expireTime``
(seconds) is the TTL attribute and what writers before 0.5 compared. A *sticky* lock (the commit lock) keeps
its lease across commits while nobody else wants it, so a lone writer makes no lock call per commit; a writer
that cannot get the lock marks the item (``waiter``), the holder's heartbeat sees the mark and hands over
after its current commit, and while the mark is fresh only the marked writer may take the lock.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from deltaingest.locking.lease import Lease, LockError, LockTimeout, safety_margin

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

log = logging.getLogger(__name__)

PARTITION_KEY = "lockId"
TTL_ATTRIBUTE = "expireTime"


def dynamodb_client(
    *, endpoint: str | None, region: str | None, credentials: Mapping[str, str] | None = None
) -> DynamoDBClient:
    """A client with short timeouts: a lock call that hangs is worse than one that fails and is retried.

    ``credentials`` (``AWS_ACCESS_KEY_ID``, ...) override the default chain: the operator reads them from the
    Secret a resource names, while workloads get them in their environment.
    """
    config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 4, "mode": "standard"})
    keys = credentials or {}
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region or "us-east-1",
        config=config,
        aws_access_key_id=keys.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=keys.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=keys.get("AWS_SESSION_TOKEN"),
    )


def ensure_lock_table(client: DynamoDBClient, table_name: str, *, create: bool = True) -> None:
    """Create the lock table (on-demand billing, TTL on ``expireTime``) unless it exists.

    With ``create=False`` (IAM roles without ``dynamodb:CreateTable``) a missing table is an error at start-up
    rather than a failure of the first commit.
    """
    try:
        client.describe_table(TableName=table_name)
        return
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceNotFoundException":
            raise LockError(f"DynamoDB lock table {table_name}: {err}") from err
    if not create:
        raise LockError(
            f"DynamoDB lock table {table_name} does not exist and creating it is turned off "
            "(locking.createTable: false / --no-create-lock-table)"
        )
    try:
        client.create_table(
            TableName=table_name,
            AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceInUseException":  # created by a peer meanwhile
            raise
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    try:
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
    except ClientError as err:  # already enabled by a peer, or TTL not permitted: the lock works without it
        log.info("could not enable TTL on %s: %s", table_name, err.response["Error"]["Message"])
    log.info("created DynamoDB lock table %s", table_name)


class DynamoDBLock:
    """A lease on one ``lockId``, renewed by a heartbeat thread while held."""

    def __init__(
        self,
        client: DynamoDBClient,
        *,
        table_name: str,
        lock_id: str,
        holder: str,
        lease_seconds: float = 20.0,
        acquire_timeout: float = 30.0,
        retry_min: float = 0.002,
        retry_max: float = 0.05,
        sticky: bool = False,
    ) -> None:
        self.holder = holder
        self._client = client
        self._table = table_name
        self._key = {PARTITION_KEY: {"S": lock_id}}
        self._lease_seconds = lease_seconds
        self._margin = safety_margin(lease_seconds)
        self._acquire_timeout = acquire_timeout
        self._retry = (retry_min, retry_max)
        self._sticky = sticky
        self._held: Lease | None = None  # ours, in use or kept between commits
        self._in_use = False
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._renew_loop, name="lease-heartbeat", daemon=True)
        self._heartbeat.start()

    # -- acquire / release ------------------------------------------------------------------------------

    def acquire(self) -> Lease:
        kept = self._take_kept()
        if kept is not None:
            return kept
        deadline = time.monotonic() + self._acquire_timeout
        delay = self._retry[0]
        marked_at = -math.inf
        while True:
            lease = self.try_acquire()
            if lease is not None:
                return lease
            now = time.monotonic()
            if now > deadline:
                raise LockTimeout(f"lock {self._key[PARTITION_KEY]['S']} is held by {self.describe_holder()}")
            if self._sticky and now - marked_at > self._lease_seconds / 3:  # keep our mark fresh
                self._mark_waiting()
                marked_at = now
            time.sleep(delay * random.uniform(0.5, 1.0))  # jitter keeps replicas from polling in step
            delay = min(delay * 2, self._retry[1])

    def _take_kept(self) -> Lease | None:
        """The lease kept from our last commit, if it is still good and nobody asked for it."""
        with self._guard:
            kept = self._held
            if kept is None or self._in_use:
                return None
            if not kept.handover and kept.remaining() > 0:
                self._in_use = True
                # Held throughout since our last commit, so no other writer committed in between.
                kept.known_version = kept.release_version
                return kept
            self._held = None
        self._release_now(kept)  # lapsed or asked for: give it back before queueing for a new one
        return None

    def try_acquire(self) -> Lease | None:
        kept = self._take_kept()
        if kept is not None:
            return kept
        now = time.time()
        started = time.monotonic()
        now_ms = int(now * 1000)
        # A lock item deleted by TTL restarts from the clock in microseconds, which is above any token
        # issued before, so tokens keep increasing across deletions.
        seed = int(now * 1_000_000)
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression=(
                    "SET holder = :me, expireTime = :exp, leaseUntilMs = :until, acquiredAt = :now, "
                    "fence = if_not_exists(fence, :seed) + :one REMOVE cleanRelease, waiter, waitMs"
                ),
                # Free or expired, and not promised to another writer that marked the item recently. Never
                # "or ours": a daemon's compaction and vacuum share one lock object and holder id.
                ConditionExpression=(
                    "(attribute_not_exists(holder) OR leaseUntilMs < :nowms"
                    " OR (attribute_not_exists(leaseUntilMs) AND expireTime < :nowsec))"
                    " AND (attribute_not_exists(waiter) OR waiter = :me OR waitMs < :stalems)"
                ),
                ExpressionAttributeValues={
                    ":me": {"S": self.holder},
                    ":exp": {"N": str(math.ceil(now + self._lease_seconds))},
                    ":until": {"N": str(now_ms + int(self._lease_seconds * 1000))},
                    ":now": {"N": f"{now:.3f}"},
                    ":nowms": {"N": str(now_ms)},
                    ":nowsec": {"N": str(math.floor(now))},
                    ":stalems": {"N": str(now_ms - int(self._lease_seconds * 1000))},
                    ":seed": {"N": str(seed)},
                    ":one": {"N": "1"},
                },
                # The old item tells us the previous token and whether its holder released cleanly; the
                # REMOVE above means a holder that dies after this point leaves no trusted version hint.
                ReturnValues="ALL_OLD",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise LockError(f"DynamoDB lock {self._table}: {err}") from err
        except BotoCoreError as err:  # endpoint unreachable, timeouts: the caller fails this commit
            raise LockError(f"DynamoDB lock {self._table}: {err}") from err
        old = response.get("Attributes", {})
        previous = old.get("releasedVersion", {}).get("N")
        lease = Lease(
            holder=self.holder,
            token=int(old["fence"]["N"]) + 1 if "fence" in old else seed + 1,
            known_version=int(previous) if previous is not None and "cleanRelease" in old else None,
            deadline=started + self._lease_seconds - self._margin,
        )
        with self._guard:
            self._held = lease
            self._in_use = True
        return lease

    def _mark_waiting(self) -> None:
        """Ask the holder to hand over; only the first live waiter's mark stands."""
        now_ms = int(time.time() * 1000)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET waiter = :me, waitMs = :nowms",
                ConditionExpression=(
                    "attribute_exists(holder) AND holder <> :me"
                    " AND (attribute_not_exists(waiter) OR waiter = :me OR waitMs < :stalems)"
                ),
                ExpressionAttributeValues={
                    ":me": {"S": self.holder},
                    ":nowms": {"N": str(now_ms)},
                    ":stalems": {"N": str(now_ms - int(self._lease_seconds * 1000))},
                },
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                log.debug("could not mark lock as wanted: %s", err)
        except BotoCoreError as err:  # the next acquisition attempt reports the outage
            log.debug("could not mark lock as wanted: %s", err)

    def release(self, lease: Lease) -> None:
        with self._guard:
            if self._sticky and self._held is lease and not lease.handover and not self._stop.is_set():
                self._in_use = False  # keep it for our next commit
                return
            if self._held is lease:
                self._held = None
                self._in_use = False
        self._release_now(lease)

    def _release_now(self, lease: Lease) -> None:
        values: dict[str, Any] = {":me": {"S": self.holder}, ":token": {"N": str(lease.token)}}
        update = "REMOVE holder SET expireTime = :now, leaseUntilMs = :nowms"
        now = time.time()
        values[":now"] = {"N": str(math.floor(now))}
        values[":nowms"] = {"N": str(int(now * 1000))}
        if lease.release_version is not None:
            update += ", releasedVersion = :version, cleanRelease = :true"
            values[":version"] = {"N": str(lease.release_version)}
            values[":true"] = {"BOOL": True}
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression=update,
                ConditionExpression="holder = :me AND fence = :token",
                ExpressionAttributeValues=values,
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                log.warning("lease %s (token %s) was lost before release", self.holder, lease.token)
                return
            log.warning("could not release lease %s: %s; it will expire", self.holder, err)
        except BotoCoreError as err:
            # Never fail the caller here: its commit is done, and an unreleased lease simply expires.
            log.warning("could not release lease %s: %s; it will expire", self.holder, err)

    def describe_holder(self) -> str | None:
        try:
            item = self._client.get_item(TableName=self._table, Key=self._key, ConsistentRead=True).get(
                "Item"
            )
        except (ClientError, BotoCoreError) as err:
            return f"unknown ({err})"
        if not item or "holder" not in item:
            return None
        if "leaseUntilMs" in item:
            until = f"{time.strftime('%H:%M:%S', time.gmtime(int(item['leaseUntilMs']['N']) / 1000))} UTC"
        else:
            until = time.ctime(int(item[TTL_ATTRIBUTE]["N"]))
        return f"{item['holder']['S']} (token {item['fence']['N']}, lease until {until})"

    # -- heartbeat ----------------------------------------------------------------------------------

    def _renew_loop(self) -> None:
        # Four renewals per lease: one lost call still leaves half the lease, and a waiter's mark is seen
        # within a quarter of it.
        while not self._stop.wait(self._lease_seconds / 4):
            with self._guard:
                lease = self._held
            if lease is None or not self._renew(lease):
                continue
            with self._guard:  # asked for while idle between commits: hand over now
                idle = self._sticky and self._held is lease and not self._in_use
                if idle:
                    self._held = None
            if idle:
                self._release_now(lease)

    def _renew(self, lease: Lease) -> bool:
        """Extend the lease; True when another writer has marked the lock as wanted."""
        started = time.monotonic()
        now = time.time()
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET expireTime = :exp, leaseUntilMs = :until",
                ConditionExpression="holder = :me AND fence = :token",
                ExpressionAttributeValues={
                    ":exp": {"N": str(math.ceil(now + self._lease_seconds))},
                    ":until": {"N": str(int(now * 1000) + int(self._lease_seconds * 1000))},
                    ":me": {"S": self.holder},
                    ":token": {"N": str(lease.token)},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                log.warning("lease %s (token %s) was taken over", self.holder, lease.token)
                lease.deadline = -math.inf  # definitely lost: never commit under it again
                return False
            log.warning("could not renew lease %s (token %s): %s", self.holder, lease.token, err)
            return False
        except BotoCoreError as err:
            # Keep the heartbeat alive through transient errors; the commit path checks the deadline.
            log.warning("could not renew lease %s (token %s): %s", self.holder, lease.token, err)
            return False
        lease.deadline = started + self._lease_seconds - self._margin
        waiter = response.get("Attributes", {}).get("waiter", {}).get("S")
        if waiter is not None and waiter != self.holder:
            lease.handover = True
            return True
        return False

    def close(self) -> None:
        """Stop the heartbeat and give back a lease kept between commits, with its version hint."""
        self._stop.set()
        self._heartbeat.join(timeout=5)
        with self._guard:
            lease, self._held = self._held, None
        if lease is not None:
            self._release_now(lease)
