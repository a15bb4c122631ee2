"""What the operator reports when a resource cannot work: a clear condition and event, and nothing written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from deltaingest.k8s.spec import API_VERSION, KIND
from tests.kube import resource_path
from tests.operator.scenarios import Cluster, child_path, condition, dti_path, has_condition, until_resource
from tests.operator.waiting import eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


def resource(cluster: Cluster, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": name, "namespace": cluster.namespace, "uid": str(uuid.uuid4()), "generation": 1}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}


async def events_for(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    events = await cluster.api.list(resource_path("v1", "events", namespace=cluster.namespace))
    return [e for e in events if (e.get("involvedObject") or {}).get("name") == name]


async def test_missing_secret_is_reported_then_picked_up(cluster: Cluster, lock_table: str) -> None:
    name = "no-secret"
    uri = f"s3://{cluster.seaweed.bucket}/missing-{uuid.uuid4().hex[:8]}"
    spec = {
        "table": {"uri": uri, "schema": [{"name": "id", "type": "long"}]},
        "storage": {"endpoint": cluster.seaweed.endpoint, "credentials": {"secretName": "later"}},
    }
    await cluster.api.create(resource(cluster, name, spec))
    current = await until_resource(
        cluster, name, has_condition("TableReachable", reason="SecretMissing", status="False")
    )
    assert "Secret tables/later not found" in condition(current, "TableReachable")["message"]
    assert condition(current, "Ready")["status"] == "False"
    # The children exist all the same: pods wait for the Secret, as Kubernetes does.
    assert await cluster.api.get(child_path(cluster, name, "Deployment")) is not None

    # Once the Secret exists, the next resync reads the store (the table is not there yet: the writer
    # creates it when it starts, and the condition says so).
    await cluster.api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "later", "namespace": cluster.namespace},
            "data": {
                "AWS_ACCESS_KEY_ID": "ZGVsdGFpbmdlc3Q=",
                "AWS_SECRET_ACCESS_KEY": "ZGVsdGFpbmdlc3Qtc2VjcmV0",
            },
        }
    )
    current = await until_resource(
        cluster, name, has_condition("TableReachable", reason="TableNotFound", status="False")
    )
    assert "the writer creates it at start" in condition(current, "TableReachable")["message"]


async def test_invalid_spec_writes_nothing(cluster: Cluster) -> None:
    """kmock does not validate against the CRD (an old CRD would not either): the operator's model does."""
    name = "bad"
    spec = {"table": {"uri": "s3://lake/x"}, "writer": {"replicas": 3}}  # 3 replicas with no lock
    await cluster.api.create(resource(cluster, name, spec))
    current = await until_resource(
        cluster, name, has_condition("Ready", reason="InvalidSpec", status="False")
    )
    assert "dynamodb" in condition(current, "Ready")["message"]
    for child in ("ConfigMap", "Deployment", "Service", "CompactionCronJob", "VacuumCronJob"):
        assert await cluster.api.get(child_path(cluster, name, child)) is None
    reasons = {event["reason"] for event in await events_for(cluster, name)}
    assert "InvalidSpec" in reasons
    assert await cluster.api.get(dti_path(cluster, name)) is not None


async def test_events_name_what_was_applied(cluster: Cluster, lock_table: str) -> None:
    from tests.operator import scenarios  # noqa: PLC0415

    table = await scenarios.create(cluster, lock_table=lock_table)
    await until_resource(cluster, table.name, has_condition("TableReachable"))
    wanted = {f"created Deployment {table.name}-writer", f"created CronJob {table.name}-compaction"}

    async def posted() -> bool:  # kopf posts events from a queue, a moment after the handler
        return wanted <= {event["message"] for event in await events_for(cluster, table.name)}

    await eventually(posted)
