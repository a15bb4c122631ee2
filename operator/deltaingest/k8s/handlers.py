"""The kopf side: thin handlers that call ``reconcile`` and write its outcome; the operator's main loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Any

import kopf
from prometheus_client import start_http_server

from deltaingest.k8s import metrics
from deltaingest.k8s.api import KubeAPI
from deltaingest.k8s.reconcile import reconcile
from deltaingest.k8s.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs; ``deltaingest operator`` fills it from its flags."""

    image: str
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    resync_seconds: float = 30.0
    retry_seconds: float = 15.0
    probe_timeout: float = 30.0
    liveness_port: int | None = 8080
    metrics_port: int | None = 9090
    bind: str = "0.0.0.0"
    peering: str | None = None  # None: standalone (one replica); a name: leader election among replicas
    # kopf freezes every peer when two share a priority: each replica needs its own (the CLI draws one).
    priority: int = 0
    server: str | None = (
        None  # an API URL without auth (tests, kubectl proxy); default: kubeconfig / in-cluster
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """Every handler, on a registry of its own (tests run several operators in one process)."""
    registry = kopf.OperatorRegistry()
    locks: dict[str, asyncio.Lock] = {}
    servers: list[Any] = []

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress and the last-handled spec in our own annotations; status belongs to the status model.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        # kopf puts a finalizer on resources with timers, to stop them cleanly; name it after us.
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.posting.level = logging.WARNING  # our own events say what changed; no per-log events
        settings.watching.server_timeout = 300
        if config.metrics_port is not None:
            server, _thread = start_http_server(
                config.metrics_port, addr=config.bind, registry=metrics.REGISTRY
            )
            servers.append(server)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        for server in servers:
            server.shutdown()
            server.server_close()
        api = memo.get("api")
        if isinstance(api, KubeAPI):
            await api.close()

    @kopf.on.login(registry=registry)
    async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
        if config.server:
            info: kopf.ConnectionInfo | None = kopf.ConnectionInfo(server=config.server, insecure=True)
        else:
            info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None:
            old = memo.get("api")
            if isinstance(old, KubeAPI):
                await old.close()
            memo["api"] = KubeAPI(info)
        return info

    async def handle(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, *, retry: bool) -> None:
        uid = body.metadata.uid or ""
        # Handlers and the timer of one resource never reconcile it at the same time.
        lock = locks.setdefault(uid, asyncio.Lock())
        async with lock:
            with metrics.RECONCILE_SECONDS.time():
                outcome = await reconcile(
                    memo["api"], body, image=config.image, now=_now(), probe_timeout=config.probe_timeout
                )
        for event in outcome.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1024])
        patch.status.update(outcome.status)
        metrics.record(body.metadata.namespace or "", body.metadata.name or "", outcome.status)
        metrics.RECONCILES.labels("error" if outcome.error else "ok").inc()
        if outcome.error and retry:
            if outcome.permanent:  # only a new spec helps, and that triggers the update handler
                raise kopf.PermanentError(outcome.error)
            raise kopf.TemporaryError(outcome.error, delay=config.retry_seconds)

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def apply(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        await handle(body, patch, memo, retry=True)

    # Also corrects drift: a child deleted or edited by hand is put back on the next tick.
    @kopf.on.timer(GROUP, VERSION, PLURAL, interval=config.resync_seconds, registry=registry)
    async def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        await handle(body, patch, memo, retry=False)

    # Optional: it adds no finalizer of its own (the timer's is the only one). The children go with the
    # resource through their owner references; the table's data is never touched.
    @kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, registry=registry)
    def deleted(body: kopf.Body, **_: Any) -> None:
        locks.pop(body.metadata.uid or "", None)
        metrics.forget(body.metadata.namespace or "", body.metadata.name or "")

    return registry


async def run_operator(
    config: OperatorConfig,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run until stopped (SIGTERM, or ``stop_flag``)."""
    liveness = f"http://{config.bind}:{config.liveness_port}/healthz" if config.liveness_port else None
    await kopf.operator(
        registry=build_registry(config),
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        standalone=config.peering is None,
        peering_name=config.peering,
        priority=config.priority,
        liveness_endpoint=liveness,
        memo=kopf.Memo(),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
