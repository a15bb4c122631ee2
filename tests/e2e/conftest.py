"""The e2e suite: the operator scenarios against a real cluster, when ``KUBECONFIG`` names one.

What runs where: the CRD is applied to the cluster; the operator runs in this process (as
``deltaingest operator --namespace <test namespace>``); SeaweedFS and moto run on this machine, reached by
the operator for table facts and the lock table. The writer pods are not expected to start (their image
need not exist in the cluster), so the scenarios check objects through the API, not pods.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from deltaingest.devservers import MotoDynamoDB, SeaweedFS
from deltaingest.k8s.crd import custom_resource_definition
from deltaingest.k8s.handlers import OperatorConfig
from tests.kube import KubeAPI, resource_path
from tests.operator.running import OperatorThread
from tests.operator.scenarios import Cluster
from tests.operator.waiting import eventually

SKIP_REASON = (
    "tests/e2e needs a real cluster: set KUBECONFIG (kind, k3d, minikube or any other) to run it; "
    "the same scenarios run against kmock in tests/operator"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("KUBECONFIG"):
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


CRD_PATH = resource_path(
    "apiextensions.k8s.io/v1", "customresourcedefinitions", name="deltatableingests.deltaingest.io"
)


@pytest_asyncio.fixture
async def api() -> AsyncIterator[KubeAPI]:
    client = await KubeAPI.connect()  # the operator's own login: KUBECONFIG
    yield client
    await client.close()


@pytest_asyncio.fixture
async def namespace(api: KubeAPI) -> AsyncIterator[str]:
    """The CRD applied (server-side), and a namespace of the test's own, deleted afterwards."""
    await api.apply(custom_resource_definition())

    async def established() -> bool:
        crd = await api.get(CRD_PATH) or {}
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    await eventually(established, timeout=60)
    name = f"deltaingest-e2e-{uuid.uuid4().hex[:6]}"
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    await api.delete(resource_path("v1", "namespaces", name=name))


@pytest_asyncio.fixture
async def cluster(
    api: KubeAPI, namespace: str, seaweed: SeaweedFS, moto: MotoDynamoDB
) -> AsyncIterator[Cluster]:
    config = OperatorConfig(
        image="ghcr.io/deltaingest/deltaingest:e2e",
        namespaces=(namespace,),
        resync_seconds=2.0,
        retry_seconds=2.0,
        liveness_port=None,
        metrics_port=None,
    )
    operator = OperatorThread(config)
    await operator.start()
    yield Cluster(api, namespace, seaweed, moto, fake_controller=False, bump_generation=False)
    await operator.stop()
