"""Operator scenarios shared by the kmock suite and the real-cluster e2e suite.

Each scenario drives the API the way a user does (create, patch, delete) and checks what the operator did.
The same code runs against kmock and a real cluster; ``Cluster.fake_controller`` says whether the test has
to play the Deployment controller (kmock runs none) and ``bump_generation`` whether it must set
``metadata.generation`` itself (kmock does not bump it; a real API server does).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from deltaingest.devservers import ACCESS_KEY, SECRET_KEY, MotoDynamoDB, SeaweedFS
from deltaingest.k8s.render import CONFIG_HASH
from deltaingest.k8s.spec import API_VERSION, KIND, PLURAL
from deltaingest.locking.dynamodb import dynamodb_client
from deltaingest.table.storage import storage_options
from tests.kube import KubeAPI, resource_path
from tests.operator.waiting import eventually

CHILDREN = {
    "ConfigMap": ("v1", "configmaps", "config"),
    "Service": ("v1", "services", "writer"),
    "Deployment": ("apps/v1", "deployments", "writer"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets", "writer"),
    "CompactionCronJob": ("batch/v1", "cronjobs", "compaction"),
    "VacuumCronJob": ("batch/v1", "cronjobs", "vacuum"),
}
MERGE = "application/merge-patch+json"


@dataclass
class Cluster:
    api: KubeAPI
    namespace: str
    seaweed: SeaweedFS
    moto: MotoDynamoDB
    fake_controller: bool
    bump_generation: bool


@dataclass
class Table:
    """A DeltaTableIngest created by ``create`` and the Delta table behind it."""

    name: str
    uri: str
    uid: str
    options: dict[str, str]


def child_path(cluster: Cluster, name: str, child: str) -> str:
    api_version, plural, suffix = CHILDREN[child]
    return resource_path(api_version, plural, namespace=cluster.namespace, name=f"{name}-{suffix}")


def dti_path(cluster: Cluster, name: str) -> str:
    return resource_path(API_VERSION, PLURAL, namespace=cluster.namespace, name=name)


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((body or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return {}


def has_condition(
    kind: str, status: str = "True", reason: str | None = None
) -> Callable[[dict[str, Any]], bool]:
    """A test for ``until_resource``: condition ``kind`` has this status (and reason)."""

    def test(body: dict[str, Any]) -> bool:
        found = condition(body, kind)
        return found.get("status") == status and (reason is None or found.get("reason") == reason)

    return test


async def until_resource(
    cluster: Cluster, name: str, test: Callable[[dict[str, Any]], bool], *, timeout: float = 60.0
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        current = await cluster.api.get(dti_path(cluster, name))
        return current if current is not None and test(current) else None

    return await eventually(check, timeout=timeout)


async def until_child(
    cluster: Cluster, name: str, child: str, test: Callable[[dict[str, Any]], bool] = lambda _: True
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        current = await cluster.api.get(child_path(cluster, name, child))
        return current if current is not None and test(current) else None

    return await eventually(check, timeout=60.0)


def store_listing(cluster: Cluster, uri: str) -> dict[str, int]:
    """Every object under the table's prefix, with its size: the ground truth for "no data touched"."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = cluster.seaweed.s3_client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}


async def spec_patch(cluster: Cluster, name: str, spec: dict[str, Any]) -> None:
    body: dict[str, Any] = {"spec": spec}
    if cluster.bump_generation:
        current = await cluster.api.get(dti_path(cluster, name)) or {}
        body["metadata"] = {"generation": int(current["metadata"]["generation"]) + 1}
    await cluster.api.request("PATCH", dti_path(cluster, name), body=body, content_type=MERGE)


async def create(
    cluster: Cluster, *, lock_table: str, replicas: int = 2, writer: dict[str, Any] | None = None
) -> Table:
    """A seeded table (two commits, four files), an S3 Secret, and a resource for them (``writer``: more
    writer settings)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    uri = f"s3://{cluster.seaweed.bucket}/op-{name}"
    options = storage_options(uri, environ=cluster.seaweed.env())
    rows = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "day": ["a", "b", "a"]})
    write_deltalake(uri, rows, partition_by=["day"], storage_options=options)
    write_deltalake(uri, rows, partition_by=["day"], storage_options=options, mode="append")
    secret = {
        key: base64.b64encode(value.encode()).decode()
        for key, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY))
    }
    metadata = {"name": f"{name}-s3", "namespace": cluster.namespace}
    await cluster.api.create({"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": secret})
    resource_meta: dict[str, Any] = {"name": name, "namespace": cluster.namespace}
    if cluster.bump_generation:  # what a real API server would set
        resource_meta |= {"uid": str(uuid.uuid4()), "generation": 1, "resourceVersion": "1"}
    created = await cluster.api.create(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": resource_meta,
            "spec": {
                "table": {
                    "uri": uri,
                    "schema": [{"name": "id", "type": "long"}, {"name": "day", "type": "string"}],
                    "partitionBy": ["day"],
                },
                "storage": {
                    "endpoint": cluster.seaweed.endpoint,
                    "credentials": {"secretName": f"{name}-s3"},
                },
                "locking": {"kind": "dynamodb", "tableName": lock_table, "endpoint": cluster.moto.endpoint},
                "writer": {"replicas": replicas, **(writer or {})},
            },
        }
    )
    return Table(name=name, uri=uri, uid=created["metadata"]["uid"], options=options)


async def children_and_status(cluster: Cluster, table: Table, lock_table: str) -> None:
    """Every child appears with an owner reference; the status reports the table and the lock table."""
    for child in CHILDREN:
        obj = await until_child(cluster, table.name, child)
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": table.name,
            "uid": table.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    deployment = await until_child(cluster, table.name, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert CONFIG_HASH in deployment["spec"]["template"]["metadata"]["annotations"]
    for child in ("CompactionCronJob", "VacuumCronJob"):
        cron_job = await until_child(cluster, table.name, child)
        assert cron_job["spec"]["concurrencyPolicy"] == "Forbid"
        assert cron_job["spec"]["suspend"] is False

    current = await until_resource(cluster, table.name, has_condition("TableReachable"))
    status = current["status"]
    assert status["table"]["version"] == 1
    assert status["table"]["activeFiles"] == 4
    assert status["observedGeneration"] == current["metadata"]["generation"]
    assert condition(current, "LockTableReady")["status"] == "True"
    assert condition(current, "CompactionScheduled")["status"] == "True"
    assert condition(current, "VacuumScheduled")["status"] == "True"
    for item in status["conditions"]:
        assert item["observedGeneration"] == current["metadata"]["generation"]
        assert item["lastTransitionTime"]
    dynamodb = dynamodb_client(
        endpoint=cluster.moto.endpoint, region="us-east-1", credentials=cluster.moto.env()
    )
    assert dynamodb.describe_table(TableName=lock_table)["Table"]["TableStatus"] == "ACTIVE"
    if not cluster.fake_controller:
        return
    # kmock runs no Deployment controller: the writers are not ready, so neither is the resource...
    assert condition(current, "WriterAvailable")["reason"] == "WritersNotReady"
    assert condition(current, "Ready")["status"] == "False"
    # ...until the test plays the controller and reports both writers ready.
    await cluster.api.request(
        "PATCH",
        child_path(cluster, table.name, "Deployment") + "/status",
        body={"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}},
        content_type=MERGE,
    )
    current = await until_resource(cluster, table.name, has_condition("Ready"))
    assert current["status"]["writers"] == {"desired": 2, "ready": 2, "summary": "2/2"}
    assert current["status"]["replicas"] == 2
    assert current["status"]["selector"] == (
        "app.kubernetes.io/name=deltaingest,"
        f"app.kubernetes.io/instance={table.name},app.kubernetes.io/component=writer"
    )


async def spec_change_rolls_writers(cluster: Cluster, table: Table) -> None:
    """A changed spec updates the ConfigMap and the Deployment, whose new config hash rolls the pods."""
    before = await until_child(cluster, table.name, "Deployment")
    first_hash = before["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
    await spec_patch(cluster, table.name, {"writer": {"replicas": 1, "batching": {"maxRows": 5000}}})
    deployment = await until_child(cluster, table.name, "Deployment", lambda d: d["spec"]["replicas"] == 1)
    assert deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH] != first_hash
    config_map = await until_child(cluster, table.name, "ConfigMap")
    assert "maxRows: 5000" in config_map["data"]["config.yaml"]
    current = await cluster.api.get(dti_path(cluster, table.name)) or {}
    generation = current["metadata"]["generation"]
    await until_resource(cluster, table.name, lambda b: b["status"].get("observedGeneration") == generation)


async def suspend(cluster: Cluster, table: Table) -> None:
    """Suspend scales the writers to 0 and suspends both CronJobs; resume undoes it."""
    await spec_patch(cluster, table.name, {"suspend": True})
    await until_resource(cluster, table.name, has_condition("Ready", reason="Suspended", status="False"))
    deployment = await until_child(cluster, table.name, "Deployment")
    assert deployment["spec"]["replicas"] == 0
    for child in ("CompactionCronJob", "VacuumCronJob"):
        cron_job = await until_child(cluster, table.name, child)
        assert cron_job["spec"]["suspend"] is True
    await spec_patch(cluster, table.name, {"suspend": False})
    await until_child(cluster, table.name, "Deployment", lambda d: d["spec"]["replicas"] == 2)
    await until_child(cluster, table.name, "VacuumCronJob", lambda c: c["spec"]["suspend"] is False)


async def child_recreated(cluster: Cluster, table: Table) -> None:
    """A child deleted by hand comes back on the next resync; one edited by hand is put back."""
    await until_child(cluster, table.name, "VacuumCronJob")
    await cluster.api.delete(child_path(cluster, table.name, "VacuumCronJob"))
    recreated = await until_child(cluster, table.name, "VacuumCronJob")
    assert recreated["spec"]["schedule"] == "0 * * * *"
    await cluster.api.request(
        "PATCH",
        child_path(cluster, table.name, "CompactionCronJob"),
        body={"spec": {"schedule": "* * * * *"}},
        content_type=MERGE,
    )
    await until_child(
        cluster, table.name, "CompactionCronJob", lambda c: c["spec"]["schedule"] == "*/5 * * * *"
    )


async def delete_keeps_data(cluster: Cluster, table: Table) -> None:
    """Deleting the resource never touches the table: same objects in the store, same rows."""
    await until_resource(cluster, table.name, has_condition("TableReachable"))
    before = store_listing(cluster, table.uri)
    await cluster.api.delete(dti_path(cluster, table.name))

    async def gone() -> bool:
        return await cluster.api.get(dti_path(cluster, table.name)) is None

    await eventually(gone, timeout=60.0)
    await asyncio.sleep(3)  # several resyncs for the operator to (wrongly) act on the deletion
    assert store_listing(cluster, table.uri) == before
    reread = DeltaTable(table.uri, storage_options=table.options)
    assert reread.version() == 1
    assert reread.to_pyarrow_table().num_rows == 6


async def maintenance_results(cluster: Cluster, table: Table) -> None:
    """Finished Jobs reach the status: the newest run's result and summary; a failed one flags Ready.

    Plays the CronJob and Job controllers and the kubelet (kmock runs none of them).
    """
    labels = {
        "app.kubernetes.io/name": "deltaingest",
        "app.kubernetes.io/instance": table.name,
        "app.kubernetes.io/managed-by": "deltaingest-operator",
        "app.kubernetes.io/component": "compaction",
    }
    jobs = resource_path("batch/v1", "jobs", namespace=cluster.namespace)
    for job, result, at, summary in (
        (f"{table.name}-compaction-1", "Complete", "2026-11-22T09:00:00Z", "compact: ok; filesRemoved: 40"),
        (f"{table.name}-compaction-2", "Failed", "2026-11-22T09:05:00Z", "compact: failed (SlowDown)"),
    ):
        meta = {"name": job, "namespace": cluster.namespace, "labels": labels}
        await cluster.api.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {}})
        await cluster.api.request(
            "PATCH",
            f"{jobs}/{job}/status",
            body={
                "status": {
                    "startTime": at,
                    **({"completionTime": at} if result == "Complete" else {}),
                    "conditions": [
                        {
                            "type": result,
                            "status": "True",
                            "lastTransitionTime": at,
                            "reason": "BackoffLimitExceeded",
                        }
                    ],
                }
            },
            content_type=MERGE,
        )
        pod_meta = {"name": f"{job}-x", "namespace": cluster.namespace, "labels": {**labels, "job-name": job}}
        terminated = {"exitCode": 0 if result == "Complete" else 1, "message": summary, "finishedAt": at}
        await cluster.api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": pod_meta,
                "spec": {"containers": [{"name": "compact", "image": "x"}]},
                "status": {"containerStatuses": [{"name": "compact", "state": {"terminated": terminated}}]},
            }
        )
    current = await until_resource(
        cluster, table.name, has_condition("CompactionScheduled", reason="LastRunFailed")
    )
    assert current["status"]["lastCompaction"] == {
        "job": f"{table.name}-compaction-2",
        "result": "Failed",
        "startTime": "2026-11-22T09:05:00Z",
        "completionTime": "2026-11-22T09:05:00Z",
        "message": "compact: failed (SlowDown)",
    }
    assert condition(current, "Ready")["status"] == "False"
    assert "SlowDown" in condition(current, "Ready")["message"]
