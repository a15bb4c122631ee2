"""Asking the object store itself which files exist: delta-rs' vacuum lists expired tombstones whether or not
an earlier run already deleted them, and a report (and a metric) must count only real deletions."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from deltaingest.table.storage import is_object_store

_PARALLEL = 16


def existing(uri: str, options: dict[str, str], paths: Iterable[str]) -> set[str] | None:
    """Which of these table-relative paths exist; None for stores we cannot ask (not S3 or local)."""
    wanted = list(paths)
    if not is_object_store(uri):
        return {p for p in wanted if os.path.exists(os.path.join(uri, p))}
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a"):
        return None
    client = boto3.client(
        "s3",
        endpoint_url=options.get("AWS_ENDPOINT_URL"),
        region_name=options.get("AWS_REGION"),
        aws_access_key_id=options.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=options.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=options.get("AWS_SESSION_TOKEN"),
        config=Config(max_pool_connections=_PARALLEL, retries={"max_attempts": 4, "mode": "standard"}),
    )
    prefix = parsed.path.strip("/")

    def exists(path: str) -> bool:
        try:
            client.head_object(Bucket=parsed.netloc, Key=f"{prefix}/{path}" if prefix else path)
        except ClientError as err:
            if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    with ThreadPoolExecutor(_PARALLEL) as pool:
        return {p for p, found in zip(wanted, pool.map(exists, wanted), strict=True) if found}


def relative_path(path: str, uri: str) -> str:
    """``path`` relative to the table at ``uri``, whether given as a full URI, a bucket key or relative."""
    for prefix in (uri.rstrip("/") + "/", urlparse(uri).path.strip("/") + "/"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path
