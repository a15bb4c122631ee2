"""No finalizer: a DeltaTableIngest is deleted with the operator stopped, and an old finalizer is removed.

kmock keeps an object that has finalizers, marked for deletion, until they are gone, as an API server does;
so with a finalizer these deletions would hang, as they did on a real cluster with the operator stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import kmock
import pytest
import pytest_asyncio

from deltaingest.k8s.spec import GROUP
from tests.operator import scenarios
from tests.operator.running import OperatorThread, kmock_operator_config
from tests.operator.scenarios import MERGE, Cluster, dti_path, has_condition, until_resource

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]

OLD_FINALIZER = f"{GROUP}/finalizer"  # what versions up to 0.3 put on every resource (kopf's, for a timer)


@pytest_asyncio.fixture
async def operator_control(k8s: kmock.KubernetesEmulator) -> AsyncIterator[OperatorThread]:
    control = OperatorThread(kmock_operator_config(k8s, "img:deletion"))
    yield control
    await control.stop()


async def test_deletion_with_the_operator_stopped_completes(
    no_operator: Cluster, operator_control: OperatorThread, lock_table: str
) -> None:
    cluster = no_operator
    await operator_control.start()
    table = await scenarios.create(cluster, lock_table=lock_table)
    await until_resource(cluster, table.name, has_condition("TableReachable"))
    await asyncio.sleep(3)  # several resyncs: none of them may add a finalizer either
    body = await cluster.api.get(dti_path(cluster, table.name)) or {}
    assert not body["metadata"].get("finalizers")
    await operator_control.stop()

    await cluster.api.delete(dti_path(cluster, table.name))
    assert await cluster.api.get(dti_path(cluster, table.name)) is None


async def test_the_finalizer_of_an_older_version_is_removed(
    no_operator: Cluster, operator_control: OperatorThread, lock_table: str
) -> None:
    cluster = no_operator
    table = await scenarios.create(cluster, lock_table=lock_table)
    path = dti_path(cluster, table.name)
    patch = {"metadata": {"finalizers": [OLD_FINALIZER]}}
    await cluster.api.request("PATCH", path, body=patch, content_type=MERGE)
    await operator_control.start()
    await until_resource(cluster, table.name, lambda body: not body["metadata"].get("finalizers"))
    await operator_control.stop()
    await cluster.api.delete(path)
    assert await cluster.api.get(path) is None
