"""The lifecycle tests both operator suites collect: each suite's ``cluster`` fixture says where they run
(kmock in tests/operator, a real cluster in tests/e2e). Imported by the test modules, never collected here."""

from __future__ import annotations

from tests.operator import scenarios
from tests.operator.scenarios import Cluster


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
