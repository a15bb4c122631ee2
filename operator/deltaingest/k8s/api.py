"""A small Kubernetes REST client on aiohttp, authenticated the way kopf is (one ConnectionInfo for both).

Only what the operator needs: get, list, create, server-side apply and delete of the kinds it owns. kopf's
own API client is internal, and a full client library would be a second way to log in and a large dependency
for five verbs.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

# Kind -> (API prefix, plural); the core group lives under /api, the others under /apis.
KINDS: dict[str, str] = {
    "ConfigMap": "configmaps",
    "Service": "services",
    "Secret": "secrets",
    "Event": "events",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "CronJob": "cronjobs",
    "Job": "jobs",
    "Pod": "pods",
    "DeltaTableIngest": "deltatableingests",
    "CustomResourceDefinition": "customresourcedefinitions",
    "Namespace": "namespaces",
}
FIELD_MANAGER = "deltaingest-operator"


class KubeError(Exception):
    """An API call that failed, with the HTTP status and the API server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def resource_path(
    api_version: str,
    plural: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """``/apis/apps/v1/namespaces/ns/deployments/name`` and the like."""
    parts = ["/api" if "/" not in api_version else "/apis", api_version]
    if namespace:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=""))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def object_path(manifest: Mapping[str, Any], *, named: bool = True) -> str:
    """The path of a manifest (``named=False``: its collection, where it is created)."""
    meta = manifest.get("metadata") or {}
    return resource_path(
        manifest["apiVersion"],
        KINDS[manifest["kind"]],
        namespace=meta.get("namespace"),
        name=meta.get("name") if named else None,
    )


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(
        cafile=os.fsdecode(info.ca_path) if info.ca_path else None,
        cadata=_text(info.ca_data) if info.ca_data else None,
    )
    if info.certificate_path or info.certificate_data:
        cert = _as_file(info.certificate_path, info.certificate_data)
        key = _as_file(info.private_key_path, info.private_key_data)
        context.load_cert_chain(cert, key)
    return context


def _text(data: str | bytes) -> str:
    return data.decode() if isinstance(data, bytes) else data


def _as_file(path: Any, data: str | bytes | None) -> str:
    """ssl wants files; kubeconfig may carry the PEM inline (already base64-decoded by kopf)."""
    if path:
        return os.fsdecode(path)
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as handle:
        handle.write(data.encode() if isinstance(data, str) else (data or b""))
        return handle.name


class KubeAPI:
    """One aiohttp session against one API server."""

    def __init__(self, info: kopf.ConnectionInfo, *, timeout: float = 30.0) -> None:
        self.info = info
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.info.token:
            headers["Authorization"] = f"{self.info.scheme or 'Bearer'} {self.info.token}"
        elif self.info.username:
            pair = f"{self.info.username}:{self.info.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:  # a reconcile still running at shutdown must not open a session nobody closes
            raise KubeError(0, "the API client is closed: the operator is stopping or logged in again")
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=_ssl_context(self.info))
            self._session = aiohttp.ClientSession(
                base_url=self.info.server.rstrip("/") + "/",
                headers=self._headers(),
                connector=connector,
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The decoded response; ``None`` for 404 on a read or delete (absent is an answer, not an error)."""
        session = self._open()
        async with session.request(
            method,
            path.lstrip("/"),
            json=body,
            params=dict(params or {}),
            headers={"Content-Type": content_type} if body is not None else None,
        ) as response:
            if response.status == 404 and method in ("GET", "DELETE"):
                return None
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = {"message": (await response.text())[:500]}
            if response.status >= 400:
                message = data.get("message") if isinstance(data, dict) else None
                raise KubeError(response.status, message or response.reason or "error")
            return data if isinstance(data, dict) else {}

    async def get(self, path: str) -> dict[str, Any] | None:
        return await self.request("GET", path)

    async def list(self, path: str, *, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Items of a collection; also filtered here by ``labels``, as not every server filters."""
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        data = await self.request("GET", path, params=params) or {}
        items: list[dict[str, Any]] = data.get("items") or []
        wanted = dict(labels or {})
        return [
            item
            for item in items
            if all(((item.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    async def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", object_path(manifest, named=False), body=dict(manifest)) or {}

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply: the server merges our fields and drops the ones we no longer set."""
        return (
            await self.request(
                "PATCH",
                object_path(manifest),
                body=dict(manifest),
                content_type="application/apply-patch+yaml",
                params={"fieldManager": FIELD_MANAGER, "force": "true"},
            )
            or {}
        )

    async def delete(self, path: str) -> dict[str, Any] | None:
        return await self.request("DELETE", path)
