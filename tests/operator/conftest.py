"""Fixtures for the operator tests: kmock as the Kubernetes API, the operator running in the test's loop."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import kmock
import pytest
import pytest_asyncio
from kmock._internal import parsing as kmock_parsing  # no public API tells whether an object exists
from kmock._internal import references as kmock_references

from deltaingest.devservers import MotoDynamoDB, SeaweedFS
from deltaingest.k8s.client import APPLY_PATCH
from deltaingest.k8s.handlers import OperatorConfig
from deltaingest.k8s.spec import GROUP, KIND, PLURAL, SINGULAR, VERSION
from tests.kube import KubeAPI
from tests.operator.running import OperatorThread, kmock_operator_config
from tests.operator.scenarios import Cluster
from tests.operator.tls import SecureAPI

NAMESPACE = "tables"


class Emulator(kmock.KubernetesEmulator):
    """kmock plus three API-server duties the operator relies on:

    - naming objects created with generateName (events are), instead of storing them all under no name and
      refusing the second one;
    - PUT of a named object (the Lease of leader election is renewed by a replace), which kmock 0.8 does
      not route: a replace sends the whole object, so serving it as a merge of it is the same for a Lease;
    - server-side apply of an object that is not there creates it, as on an API server (kmock 0.8 answers
      404): the operator creates its children by applying them, so that it owns every field it sets.
    """

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.method == "PUT":
            raw_request = raw_request.clone(method="PATCH")
        elif raw_request.content_type == APPLY_PATCH and not self._exists(raw_request.path):
            collection = raw_request.rel_url.path.rsplit("/", 1)[0]
            raw_request = raw_request.clone(method="POST", rel_url=collection)
        return await super().__call__(raw_request)

    def _exists(self, path: str) -> bool:
        k8s = kmock_parsing.parse_path(path)
        if k8s is None or k8s.group is None:
            return False
        resource = kmock_references.resource(group=k8s.group, version=k8s.version, plural=k8s.plural)
        key = (resource, k8s.namespace, k8s.name)
        return key in self._objects and not self._objects[key].deleted

    async def _handle(self, request: kmock.Request) -> Any:
        meta = request.data.get("metadata") if isinstance(request.data, dict) else None
        is_create = request.method == "POST" and isinstance(meta, dict)
        if is_create and meta.get("generateName") and not meta.get("name"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        return await super()._handle(request)


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    return {"cls": Emulator}


@pytest_asyncio.fixture
async def k8s(kmock: kmock.KubernetesEmulator) -> AsyncIterator[kmock.KubernetesEmulator]:
    """kmock serving the built-in resources and ours (discovery is how kopf finds the resource)."""
    kmock.resources.load_bundled()
    kmock.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
        kind=KIND,
        singular=SINGULAR,
        namespaced=True,
        shortnames={"dti"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources={"status", "scale"},
    )
    yield kmock


@pytest_asyncio.fixture
async def operator(k8s: kmock.KubernetesEmulator) -> AsyncIterator[OperatorConfig]:
    """The operator, as ``deltaingest operator --all-namespaces`` runs it, with a 1 s resync.

    Cluster-wide because kmock 0.8 fails to parse ``GET /api/v1/namespaces``, which kopf sends to follow
    the namespaces it was told to watch; the e2e suite covers ``--namespace`` on a real cluster.
    """
    config = kmock_operator_config(k8s, "deltaingest:test")
    operator = OperatorThread(config)
    await operator.start()
    yield config
    await operator.stop()


@pytest_asyncio.fixture
async def no_operator(
    k8s: kmock.KubernetesEmulator, seaweed: SeaweedFS, moto: MotoDynamoDB
) -> AsyncIterator[Cluster]:
    """kmock and the servers, with no operator running: the test starts its own."""
    api = await KubeAPI.connect(str(k8s.url))
    yield Cluster(api, NAMESPACE, seaweed, moto, fake_controller=True, bump_generation=True)
    await api.close()


@pytest_asyncio.fixture
async def cluster(no_operator: Cluster, operator: OperatorConfig) -> Cluster:
    """kmock and the servers, with the operator running."""
    return no_operator


@pytest_asyncio.fixture
async def secure_k8s(k8s: kmock.KubernetesEmulator) -> AsyncIterator[SecureAPI]:
    """``k8s`` behind TLS with a kube-apiserver's authentication, for an operator logging in through a
    kubeconfig from ``write_kubeconfig`` (tests/operator/tls.py); the test's own requests use ``k8s.url``."""
    async with SecureAPI(k8s) as api:
        yield api
