"""Choosing and building the lock for a table from the settings."""

from __future__ import annotations

import os

from deltaingest.config import LockSpec
from deltaingest.locking.dynamodb import DynamoDBLock, dynamodb_client, ensure_lock_table
from deltaingest.locking.filelock import FileLock
from deltaingest.locking.lease import Lock, NoLock
from deltaingest.table.storage import is_object_store


def lock_kind(spec: LockSpec, uri: str) -> str:
    """``auto`` means a lock file for a local table (free, and safe for several local processes) and no
    lock for an object store (single writer; S3 conditional writes still protect the log)."""
    if spec.kind != "auto":
        return spec.kind
    return "none" if is_object_store(uri) else "file"


def build_lock(spec: LockSpec, uri: str, *, scope: str, holder: str) -> Lock:
    """The lock serializing ``scope`` (``commit`` or ``maintenance``) on the table at ``uri``."""
    kind = lock_kind(spec, uri)
    if kind == "none":
        return NoLock(holder)
    if kind == "file":
        if is_object_store(uri):
            raise ValueError(f"a file lock needs a local table, not {uri}; use --lock dynamodb")
        return FileLock(uri, scope=scope, holder=holder, timeout=spec.acquire_timeout_seconds)
    endpoint = spec.endpoint or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None
    region = spec.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    client = dynamodb_client(endpoint=endpoint, region=region)
    ensure_lock_table(client, spec.table_name, create=spec.create_table)
    # Commits are short and the lease is kept across them, so a dead writer's lease must end quickly;
    # maintenance runs are long and take the lock per run, so they keep the long lease.
    commit = scope == "commit"
    return DynamoDBLock(
        client,
        table_name=spec.table_name,
        lock_id=f"{uri}#{scope}",
        holder=holder,
        lease_seconds=spec.commit_lease_seconds if commit else spec.lease_seconds,
        sticky=commit,
        acquire_timeout=spec.acquire_timeout_seconds,
        retry_min=spec.retry_min_ms / 1000,
        retry_max=spec.retry_max_ms / 1000,
    )
