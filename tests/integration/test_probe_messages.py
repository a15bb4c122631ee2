"""Storage and lock-table failures on SeaweedFS and moto come out of the probes as one clean line: the cause,
what was being done, what to set in the spec."""

from __future__ import annotations

import os
import unicodedata
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from deltaingest.devservers import ACCESS_KEY, SECRET_KEY, MotoDynamoDB, SeaweedFS, free_port
from deltaingest.k8s.conditions import Observed, status
from deltaingest.k8s.messages import LIMIT
from deltaingest.k8s.probes import probe_lock_table, probe_table
from deltaingest.k8s.reconcile import _transitions
from deltaingest.k8s.spec import DeltaTableIngestSpec, parse_spec

pytestmark = pytest.mark.integration
KEYS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


@pytest.fixture(autouse=True)
def _only_the_probes_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # delta-rs and boto3 also read the process environment; the probe's own must be all they see.
    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)


def spec(uri: str, **sections: Any) -> DeltaTableIngestSpec:
    return parse_spec({"table": {"uri": uri}, **sections})


def assert_one_clean_line(message: str) -> None:
    assert len(message) <= LIMIT, message
    assert not [char for char in message if unicodedata.category(char)[0] == "C"], message
    assert "↳" not in message and "<?xml" not in message


def test_no_credentials(seaweed: SeaweedFS, s3_uri: str) -> None:
    # Instance metadata on a closed port: what 169.254.169.254 is outside AWS, without depending on what
    # that address does on the machine running the tests.
    metadata = {"AWS_METADATA_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    probe = probe_table(spec(s3_uri, storage={"options": metadata}), {"AWS_ENDPOINT_URL": seaweed.endpoint})
    assert (probe.ok, probe.reason) == (False, "StorageError")
    assert_one_clean_line(probe.message)
    assert probe.message.startswith(
        f"No credentials (reading {s3_uri} at {seaweed.endpoint}): set spec.storage.credentials"
    ), probe.message


def test_wrong_secret_key_is_named_and_not_shown(seaweed: SeaweedFS, s3_uri: str) -> None:
    wrong = "not-the-secret-key"
    environ = {"AWS_ENDPOINT_URL": seaweed.endpoint, **KEYS, "AWS_SECRET_ACCESS_KEY": wrong}
    probe = probe_table(spec(s3_uri), environ)
    assert (probe.ok, probe.reason) == (False, "StorageError")
    assert_one_clean_line(probe.message)
    assert probe.message.startswith("Credentials rejected ("), probe.message
    assert "SignatureDoesNotMatch" in probe.message
    assert wrong not in probe.message and ACCESS_KEY not in probe.message


def test_missing_table_the_spec_cannot_create(seaweed: SeaweedFS, s3_uri: str) -> None:
    probe = probe_table(spec(s3_uri), {"AWS_ENDPOINT_URL": seaweed.endpoint, **KEYS})
    assert (probe.ok, probe.reason) == (False, "TableNotFound")
    assert_one_clean_line(probe.message)
    assert probe.message.startswith(f"No Delta table (reading {s3_uri} at {seaweed.endpoint}): "), (
        probe.message
    )
    assert "spec.table.schema" in probe.message


def test_lock_table_missing_without_create_table(moto: MotoDynamoDB, lock_table: str) -> None:
    locking = {"kind": "dynamodb", "endpoint": moto.endpoint, "tableName": lock_table, "createTable": False}
    probe = probe_lock_table(spec("s3://tables/t", locking=locking), KEYS)
    assert (probe.ok, probe.reason) == (False, "LockTableError")
    assert_one_clean_line(probe.message)
    assert probe.message.startswith(
        f"Lock table does not exist (checking DynamoDB table {lock_table} at {moto.endpoint}): "
        "set spec.locking.createTable: true"
    ), probe.message


def test_unreachable_store_in_the_status_and_the_event(s3_uri: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens
    table_spec = spec(s3_uri, storage={"endpoint": endpoint})
    table = probe_table(table_spec, {"AWS_ENDPOINT_URL": endpoint, **KEYS})
    result = status(
        Observed(
            name="t",
            generation=1,
            spec=table_spec,
            now="2026-11-22T10:00:00Z",
            deployment={"status": {"readyReplicas": 1}},
            cron_jobs={
                component: {"spec": {"schedule": "* * * * *"}} for component in ("compaction", "vacuum")
            },
            jobs=[],
            pods=[],
            table=table,
            lock=probe_lock_table(table_spec, {}),
        )
    )
    conditions = {condition.type: condition for condition in result.conditions}
    reachable, ready = conditions["TableReachable"], conditions["Ready"]
    assert (reachable.status, reachable.reason) == ("False", "StorageError")
    assert reachable.message.startswith(f"Endpoint unreachable (reading {s3_uri} at {endpoint}): ")
    assert "Connection refused" in reachable.message
    assert ready.message.startswith("TableReachable: Endpoint unreachable")
    (event,) = _transitions({}, result.conditions)
    assert (event.type, event.reason, event.message) == ("Warning", "NotReadyStorageError", ready.message)
    for message in (reachable.message, ready.message):
        assert_one_clean_line(message)


def test_the_probe_reports_the_columns_a_writer_added_beyond_the_spec(
    seaweed: SeaweedFS, s3_uri: str
) -> None:
    environ = {"AWS_ENDPOINT_URL": seaweed.endpoint, **KEYS}
    options = {**environ, "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    DeltaTable.create(s3_uri, pa.schema([pa.field("id", pa.int64())]), storage_options=options)
    evolved = pa.table({"id": [1], "colour": ["red"], "at": pa.array([0], pa.timestamp("us", tz="UTC"))})
    write_deltalake(s3_uri, evolved, mode="append", schema_mode="merge", storage_options=options)
    table_spec = parse_spec({"table": {"uri": s3_uri, "schema": [{"name": "id", "type": "long"}]}})
    probe = probe_table(table_spec, environ)
    assert probe.ok, probe.message
    assert list(probe.columns) == [("id", "long"), ("colour", "string"), ("at", "timestamp")]
