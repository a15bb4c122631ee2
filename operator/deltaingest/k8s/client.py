"""The operator's Kubernetes API client: kubernetes_asyncio, logged in once for our own calls and for kopf.

kubernetes_asyncio (the asyncio sibling of the official ``kubernetes`` package, generated from the same
OpenAPI) does the login, TLS, token refresh and requests. It reads kubeconfigs as kubectl does: inline
base64 data or file paths, tokens and token files, client certificates, exec credential plugins such as
``aws eks get-token``, and the in-cluster ServiceAccount with its rotating token. kopf is handed the same
credentials (``connection_info``), the way kopf's own ``login_via_client`` piggybacks on ``kubernetes``.

Objects go in and come out as plain JSON dicts (``_preload_content=False``): the operator renders, diffs and
reports on manifests, and the generated models would rename fields and reformat timestamps.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.kube_config import KubeConfigLoader

from deltaingest.k8s.spec import GROUP, PLURAL, VERSION

FIELD_MANAGER = "deltaingest-operator"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
# Credentials a kubeconfig names (an exec plugin's token, a token file) are looked at again this often;
# the loader renews an exec token 5 minutes before it expires, so a minute is soon enough.
CREDENTIALS_RECHECK_SECONDS = 60.0

# The API and the method-name suffix of each kind the operator reads or writes.
_API: dict[str, tuple[type[Any], str]] = {
    "ConfigMap": (client.CoreV1Api, "namespaced_config_map"),
    "Service": (client.CoreV1Api, "namespaced_service"),
    "Secret": (client.CoreV1Api, "namespaced_secret"),
    "Pod": (client.CoreV1Api, "namespaced_pod"),
    "Event": (client.CoreV1Api, "namespaced_event"),
    "Deployment": (client.AppsV1Api, "namespaced_deployment"),
    "PodDisruptionBudget": (client.PolicyV1Api, "namespaced_pod_disruption_budget"),
    "CronJob": (client.BatchV1Api, "namespaced_cron_job"),
    "Job": (client.BatchV1Api, "namespaced_job"),
}


class KubeError(Exception):
    """An API call that failed, with the HTTP status (0: no answer) and the API server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


async def load_configuration(server: str | None = None) -> client.Configuration:
    """Credentials as kopf's ``login_via_client`` finds them: in-cluster first, then the kubeconfig.

    ``server``: a plain API URL without auth (``kubectl proxy``, tests).
    """
    configuration = client.Configuration()
    if server:
        configuration.host = server.rstrip("/")
        return configuration
    try:
        # Refreshes the projected ServiceAccount token itself.
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        loader = await config.load_kube_config(client_configuration=configuration, persist_config=False)
        configuration.refresh_api_key_hook = _Recheck(loader)
    return configuration


class _Recheck:
    """A hook run before each request: reload what the kubeconfig's user section names, now and then."""

    def __init__(self, loader: KubeConfigLoader) -> None:
        self._loader = loader
        self._due = time.monotonic() + CREDENTIALS_RECHECK_SECONDS

    async def __call__(self, configuration: client.Configuration) -> None:
        if time.monotonic() >= self._due:
            await self.now(configuration)

    async def now(self, configuration: client.Configuration) -> None:
        self._due = time.monotonic() + CREDENTIALS_RECHECK_SECONDS
        await self._loader.load_and_set(configuration)  # an exec plugin runs again only near its expiry


async def refresh_credentials(configuration: client.Configuration) -> None:
    """Look at the credentials again now (the API server said 401): token files, exec plugins."""
    hook = configuration.refresh_api_key_hook
    if isinstance(hook, _Recheck):
        await hook.now(configuration)
    elif callable(hook):  # in-cluster: re-reads the ServiceAccount token when it is due
        result = hook(configuration)
        if inspect.isawaitable(result):
            await result


async def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """The same credentials for kopf's watches: file paths (the loader wrote inline data to files) and the
    current token, so kopf and our calls never disagree about who the operator is."""
    header = await configuration.get_api_key_with_prefix("BearerToken")
    scheme, _, token = (header or "").partition(" ")
    if not token:  # a bare token, no scheme
        scheme, token = "Bearer", scheme
    return kopf.ConnectionInfo(
        server=configuration.host or "",
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme if token else None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        username=configuration.username or None,
        password=configuration.password or None,
    )


def _label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


class KubeClient:
    """The API calls a reconcile makes, on one kubernetes_asyncio ``ApiClient``."""

    def __init__(self, configuration: client.Configuration, *, timeout: float = 30.0) -> None:
        self._api_client = client.ApiClient(configuration)
        self._timeout = timeout
        self._apis: dict[type[Any], Any] = {}
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        await self._api_client.close()

    def _api(self, api_class: type[Any]) -> Any:
        if self._closed:  # a reconcile still running at shutdown must not open a session nobody closes
            raise KubeError(0, "the API client is closed: the operator is stopping or logged in again")
        if api_class not in self._apis:
            self._apis[api_class] = api_class(self._api_client)
        return self._apis[api_class]

    def _method(self, verb: str, kind: str) -> Callable[..., Awaitable[Any]]:
        api_class, suffix = _API[kind]
        method: Callable[..., Awaitable[Any]] = getattr(self._api(api_class), f"{verb}_{suffix}")
        return method

    async def _call(self, call: Awaitable[Any], *, absent_ok: bool = False) -> dict[str, Any] | None:
        """The decoded answer; ``None`` for a 404 where absence is an answer (a read)."""
        try:
            response = await call
            try:
                status, text = response.status, await response.text()
            finally:
                response.release()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise KubeError(0, f"no answer from the API server: {err!r}") from err
        if status == 404 and absent_ok:
            return None
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {"message": text[:500]}
        if status >= 400:
            message = data.get("message") if isinstance(data, dict) else None
            raise KubeError(status, message or f"{text[:200]}")
        return data if isinstance(data, dict) else {}

    def _options(self) -> dict[str, Any]:
        return {"_preload_content": False, "_request_timeout": self._timeout}

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or ``None`` when it is not there."""
        return await self._call(
            self._method("read", kind)(name, namespace, **self._options()), absent_ok=True
        )

    async def list(self, kind: str, namespace: str, *, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The objects of a kind in a namespace that carry all of ``labels``."""
        selector = _label_selector(labels)
        data = await self._call(
            self._method("list", kind)(namespace, label_selector=selector, **self._options())
        )
        items: list[dict[str, Any]] = (data or {}).get("items") or []
        # Filtered here too: an API server filters by the selector, but not every test double does.
        return [
            item
            for item in items
            if all(((item.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())
        ]

    async def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        create = self._method("create", manifest["kind"])
        return (
            await self._call(create(manifest["metadata"]["namespace"], dict(manifest), **self._options()))
            or {}
        )

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply, which creates too: the server merges our fields and drops those we no longer set
        (every field of the object is ours, as we create it this way as well)."""
        meta = manifest["metadata"]
        call = self._method("patch", manifest["kind"])(
            meta["name"],
            meta["namespace"],
            dict(manifest),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
            **self._options(),
        )
        return await self._call(call) or {}

    async def read_resource(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A DeltaTableIngest as it is now, or ``None`` when it is gone."""
        call = self._api(client.CustomObjectsApi).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, **self._options()
        )
        return await self._call(call, absent_ok=True)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``status`` into a DeltaTableIngest's status subresource."""
        call = self._api(client.CustomObjectsApi).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": dict(status)},
            _content_type=MERGE_PATCH,
            **self._options(),
        )
        return await self._call(call) or {}
