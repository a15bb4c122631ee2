"""The tests' view of an API server: REST paths over kubernetes_asyncio, as ``kubectl get --raw`` would use.

The operator's own calls go through ``deltaingest.k8s.client``; tests also create, patch and delete objects
of any kind (the DeltaTableIngest, Jobs playing a controller, CRDs), so they speak in paths, on the same
library and login.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from kubernetes_asyncio import client

from deltaingest.k8s.client import APPLY_PATCH, FIELD_MANAGER, KubeError, load_configuration

PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Job": "jobs",
    "Pod": "pods",
    "Namespace": "namespaces",
    "DeltaTableIngest": "deltatableingests",
    "CustomResourceDefinition": "customresourcedefinitions",
}


def resource_path(
    api_version: str, plural: str, *, namespace: str | None = None, name: str | None = None
) -> str:
    """``/apis/apps/v1/namespaces/ns/deployments/name`` and the like."""
    parts = ["/api" if "/" not in api_version else "/apis", api_version]
    if namespace:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=""))
    return "/".join(parts)


def object_path(manifest: Mapping[str, Any], *, named: bool = True) -> str:
    meta = manifest.get("metadata") or {}
    return resource_path(
        manifest["apiVersion"],
        PLURALS[manifest["kind"]],
        namespace=meta.get("namespace"),
        name=meta.get("name") if named else None,
    )


class KubeAPI:
    """get, list, create, apply, patch and delete by path."""

    def __init__(self, configuration: client.Configuration) -> None:
        self._client = client.ApiClient(configuration)

    @classmethod
    async def connect(cls, server: str | None = None) -> KubeAPI:
        """To ``server`` without auth (kmock), or as the operator logs in (KUBECONFIG, in-cluster)."""
        return cls(await load_configuration(server))

    async def close(self) -> None:
        await self._client.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The decoded answer; ``None`` for 404 on a read or delete (absent is an answer, not an error)."""
        response = await self._client.call_api(
            path,
            method,
            query_params=list((params or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
        try:
            status, text = response.status, await response.text()
        finally:
            response.release()
        if status == 404 and method in ("GET", "DELETE"):
            return None
        data = json.loads(text) if text else {}
        if status >= 400:
            raise KubeError(status, data.get("message") if isinstance(data, dict) else text)
        return data if isinstance(data, dict) else {}

    async def get(self, path: str) -> dict[str, Any] | None:
        return await self.request("GET", path)

    async def list(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.request("GET", path) or {}).get("items") or []
        return items

    async def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", object_path(manifest, named=False), body=dict(manifest)) or {}

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        return (
            await self.request(
                "PATCH", object_path(manifest), body=dict(manifest), content_type=APPLY_PATCH, params=params
            )
            or {}
        )

    async def delete(self, path: str) -> dict[str, Any] | None:
        return await self.request("DELETE", path)
