"""The operator against kmock (the Kubernetes API), SeaweedFS (the table) and moto (the lock table)."""

from __future__ import annotations

import uuid

import kmock
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from deltaingest.table.storage import storage_options
from tests.operator import scenarios
from tests.operator.lifecycle import (
    test_child_deleted_or_edited_by_hand_is_restored,
    test_children_and_status,
    test_spec_change_rolls_writers,
    test_suspend_and_resume,
)
from tests.operator.scenarios import Cluster, dti_path

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]

__all__ = [
    "test_child_deleted_or_edited_by_hand_is_restored",
    "test_children_and_status",
    "test_spec_change_rolls_writers",
    "test_suspend_and_resume",
]


async def test_maintenance_results_reach_the_status(cluster: Cluster, lock_table: str) -> None:
    table = await scenarios.create(cluster, lock_table=lock_table)
    await scenarios.maintenance_results(cluster, table)


async def test_delete_touches_no_table_data(
    cluster: Cluster, lock_table: str, k8s: kmock.KubernetesEmulator
) -> None:
    """As the lifecycle test, and kmock's request log shows the operator deleted nothing itself: the only
    DELETE is the test's own (the children go by their owner references on a real cluster)."""
    table = await scenarios.create(cluster, lock_table=lock_table)
    deletes_before = len(list(k8s["delete"]))
    await scenarios.delete_keeps_data(cluster, table)
    deletes = list(k8s["delete"])[deletes_before:]
    assert [request.url.path for request in deletes] == [dti_path(cluster, table.name)]


async def test_the_dead_letter_tables_facts_reach_the_status(cluster: Cluster, lock_table: str) -> None:
    """Reported beside the table's: empty until the writer creates the dead-letter table, then its log's."""
    dead = f"s3://{cluster.seaweed.bucket}/op-dead-{uuid.uuid4().hex[:8]}"
    writer = {"invalidRows": "deadLetter", "deadLetter": {"uri": dead}}
    table = await scenarios.create(cluster, lock_table=lock_table, writer=writer)
    current = await scenarios.until_resource(cluster, table.name, scenarios.has_condition("TableReachable"))
    assert current["status"]["deadLetterTable"] == {} and current["status"]["table"]["version"] == 1
    rows = pa.table({"id": pa.array([1], pa.int64())})
    options = storage_options(dead, environ=cluster.seaweed.env())
    for _ in range(3):
        write_deltalake(dead, rows, storage_options=options, mode="append")
    current = await scenarios.until_resource(
        cluster, table.name, lambda r: r.get("status", {}).get("deadLetterTable", {}).get("version") == 2
    )
    facts = current["status"]["deadLetterTable"]
    assert (
        facts["activeFiles"] == 3 and facts["smallFiles"] == 3 and facts["bytes"] > 0 and facts["checkedAt"]
    )
    assert current["status"]["table"]["activeFiles"] == 4  # the table's own facts, unchanged
