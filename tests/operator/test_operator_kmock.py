"""The operator against kmock (the Kubernetes API), SeaweedFS (the table) and moto (the lock table)."""

from __future__ import annotations

import kmock
import pytest

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
