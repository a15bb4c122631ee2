"""The kmock scenarios (tests/operator/scenarios.py) against a real API server."""

from __future__ import annotations

import pytest

from tests.operator import scenarios
from tests.operator.scenarios import Cluster

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def test_children_and_status(cluster: Cluster, lock_table: str) -> None:
    table = await scenarios.create(cluster, lock_table=lock_table)
    await scenarios.children_and_status(cluster, table, lock_table)


async def test_spec_change_rolls_writers(cluster: Cluster, lock_table: str) -> None:
    table = await scenarios.create(cluster, lock_table=lock_table)
    await scenarios.spec_change_rolls_writers(cluster, table)


async def test_suspend_and_resume(cluster: Cluster, lock_table: str) -> None:
    table = await scenarios.create(cluster, lock_table=lock_table)
    await scenarios.suspend(cluster, table)


async def test_child_deleted_or_edited_by_hand_is_restored(cluster: Cluster, lock_table: str) -> None:
    table = await scenarios.create(cluster, lock_table=lock_table)
    await scenarios.child_recreated(cluster, table)


async def test_delete_touches_no_table_data(cluster: Cluster, lock_table: str) -> None:
    table = await scenarios.create(cluster, lock_table=lock_table)
    await scenarios.delete_keeps_data(cluster, table)
