"""The kopf side: thin handlers that call ``reconcile`` and publish its outcome; the operator's main loop.

No finalizer: nothing on deletion needs the operator (the children go with their owner references, the
table's data is never touched), so a resource, or its namespace, is deleted as well with the operator
stopped. kopf puts a finalizer on every resource that has a timer or a daemon, so the periodic resync is
our own loop over the resources kopf has seen, not a kopf timer. For the same reason replicas elect their
leader with a Kubernetes Lease, as controller-runtime operators do, instead of kopf peering: a frozen kopf
peer would stop its handlers but not our loop, while a replica that is not the leader runs neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import logging
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock
from prometheus_client import start_http_server

from deltaingest.k8s import metrics
from deltaingest.k8s.client import KubeClient, KubeError, connection_info, load_configuration
from deltaingest.k8s.reconcile import Outcome, event_manifest, reconcile
from deltaingest.k8s.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderElection:
    """The Lease that decides which replica serves; the others wait to take over.

    client-go's defaults (15 s lease, renewed within 10 s, tried every 2 s), scaled with ``lease_seconds``.
    """

    name: str
    namespace: str
    lease_seconds: int = 15

    @property
    def renew_seconds(self) -> float:
        return self.lease_seconds * 2 / 3

    @property
    def retry_seconds(self) -> float:
        return max(1.0, self.lease_seconds / 7.5)


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
    leader_election: LeaderElection | None = None  # None: the only replica
    server: str | None = (
        None  # an API URL without auth (tests, kubectl proxy); default: kubeconfig/in-cluster
    )
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Resources:
    """The resources kopf has shown us, and the status we last wrote to each (it is ours alone)."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    def seen(self, body: kopf.Body, event_type: str | None) -> None:
        uid = body.metadata.uid or ""
        if event_type == "DELETED":
            self.forget(uid)
        else:
            self.bodies[uid] = copy.deepcopy(dict(body))

    def forget(self, uid: str) -> None:
        self.bodies.pop(uid, None)
        self.statuses.pop(uid, None)
        self.locks.pop(uid, None)


def build_registry(config: OperatorConfig, resources: Resources) -> kopf.OperatorRegistry:
    """Every handler, on a registry of its own (tests run several operators in one process)."""
    registry = kopf.OperatorRegistry()
    servers: list[Any] = []

    tasks: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # Progress and the last-handled spec in our own annotations; status belongs to the status model.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        # The finalizer earlier versions put on resources: kopf removes it, as no handler needs one now.
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.posting.level = logging.WARNING  # our own events say what changed; no per-log events
        settings.watching.server_timeout = 300
        if config.metrics_port is not None:
            server, _thread = start_http_server(
                config.metrics_port, addr=config.bind, registry=metrics.REGISTRY
            )
            servers.append(server)
        # Started and stopped by kopf's own startup and cleanup, so it never outlives the client it uses.
        tasks.append(asyncio.get_running_loop().create_task(resync_forever(config, resources, memo)))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in servers:
            server.shutdown()
            server.server_close()
        api = memo.get("api")
        if isinstance(api, KubeClient):
            await api.close()

    @kopf.on.login(registry=registry)
    async def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
        # Called again when the API server answers 401: the kubeconfig is read afresh each time.
        configuration = await load_configuration(config.server)
        old = memo.get("api")
        memo["api"] = KubeClient(configuration)
        if isinstance(old, KubeClient):
            await old.close()
        return await connection_info(configuration)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def seen(body: kopf.Body, type: str | None, **_: Any) -> None:
        resources.seen(body, type)

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def apply(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        outcome = await sync(config, resources, memo["api"], copy.deepcopy(dict(body)))
        if outcome.error:
            if outcome.permanent:  # only a new spec helps, and that triggers the update handler
                raise kopf.PermanentError(outcome.error)
            raise kopf.TemporaryError(outcome.error, delay=config.retry_seconds)

    # Optional: no finalizer for it. It only forgets the resource; kopf calls it when it sees the deletion.
    @kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, registry=registry)
    def deleted(body: kopf.Body, **_: Any) -> None:
        resources.forget(body.metadata.uid or "")
        metrics.forget(body.metadata.namespace or "", body.metadata.name or "")

    return registry


async def sync(
    config: OperatorConfig, resources: Resources, api: KubeClient, body: dict[str, Any]
) -> Outcome:
    """Reconcile one resource and publish the outcome: its status, then its events."""
    meta = body["metadata"]
    uid = meta.get("uid") or ""
    # Handlers and the resync loop never reconcile one resource at the same time.
    async with resources.locks.setdefault(uid, asyncio.Lock()):
        if uid in resources.statuses:  # fresher than the body's: a watch event may still be on its way
            body = {**body, "status": resources.statuses[uid]}
        with metrics.RECONCILE_SECONDS.time():
            outcome = await reconcile(
                api, body, image=config.image, now=_now(), probe_timeout=config.probe_timeout
            )
        name, namespace = meta["name"], meta["namespace"]
        await api.patch_status(namespace, name, outcome.status)
        if uid in resources.bodies:  # not for a resource deleted meanwhile
            resources.statuses[uid] = outcome.status
        for event in outcome.events:
            try:
                await api.create(event_manifest(body, event, instance=config.identity))
            except KubeError as err:  # an event is a courtesy: never fail a reconcile for one
                log.warning("posting event %s for %s/%s failed: %s", event.reason, namespace, name, err)
    metrics.record(namespace, name, outcome.status)
    metrics.RECONCILES.labels("error" if outcome.error else "ok").inc()
    return outcome


async def resync_forever(config: OperatorConfig, resources: Resources, memo: kopf.Memo) -> None:
    """Each resource again every ``resync_seconds``: drift, the children's state, the table's facts."""
    limit = asyncio.Semaphore(8)  # a few slow stores must not hold up the others, nor all run at once

    async def one(body: dict[str, Any]) -> None:
        async with limit:
            try:
                await sync(config, resources, memo["api"], body)
            except KubeError as err:
                log.warning("resync of %s failed: %s", body["metadata"].get("name"), err)

    while True:
        await asyncio.sleep(config.resync_seconds)
        if isinstance(memo.get("api"), KubeClient):
            await asyncio.gather(*(one(body) for body in list(resources.bodies.values())))


async def _serve(
    config: OperatorConfig,
    stop_flag: asyncio.Event | threading.Event | None,
    ready_flag: asyncio.Event | threading.Event | None,
) -> None:
    liveness = f"http://{config.bind}:{config.liveness_port}/healthz" if config.liveness_port else None
    await kopf.operator(
        registry=build_registry(config, Resources()),
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        standalone=True,  # leadership is the Lease's, not kopf peering's
        liveness_endpoint=liveness,
        memo=kopf.Memo(),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


class LeadershipLost(Exception):
    """Another replica holds the Lease now: this one must stop serving (and its pod restarts)."""


async def run_operator(
    config: OperatorConfig,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run until stopped (SIGTERM, or ``stop_flag``); with leader election, only while leading."""
    election = config.leader_election
    if election is None:
        await _serve(config, stop_flag, ready_flag)
        return
    api_client = client.ApiClient(await load_configuration(config.server))
    served = asyncio.get_running_loop().create_future()

    async def lead() -> None:
        log.info("%s leads (Lease %s/%s)", config.identity, election.namespace, election.name)
        try:
            await _serve(config, stop_flag, ready_flag)
        finally:
            if not served.done():
                served.set_result(None)

    async def lost() -> None:
        if not served.done():
            served.set_exception(LeadershipLost(f"{config.identity} lost the Lease {election.name}"))

    candidate = leaderelection.LeaderElection(
        electionconfig.Config(
            LeaseLock(election.name, election.namespace, config.identity, api_client),
            lease_duration=election.lease_seconds,
            renew_deadline=election.renew_seconds,
            retry_period=election.retry_seconds,
            onstarted_leading=lead,
            onstopped_leading=lost,
        )
    )
    campaign = asyncio.create_task(candidate.run())
    waiting = asyncio.create_task(_stopped(stop_flag))
    try:
        # A standby stops when told to; a leader when it has served (told to stop) or lost the Lease; either
        # when the campaign itself fails (the API refuses the Lease): the pod restarts, nobody hangs.
        done, _ = await asyncio.wait({served, waiting, campaign}, return_when=asyncio.FIRST_COMPLETED)
        if served in done:
            served.result()
        elif campaign in done:
            campaign.result()
            raise LeadershipLost(f"the campaign for the Lease {election.name} ended")
    finally:
        for task in (campaign, waiting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await api_client.close()


async def _stopped(flag: asyncio.Event | threading.Event | None) -> None:
    """Until ``flag`` is set (``None``: until SIGTERM or SIGINT, as kopf itself would stop)."""
    if flag is None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (15, 2):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    elif isinstance(flag, asyncio.Event):
        await flag.wait()
    else:
        while not flag.is_set():
            await asyncio.sleep(0.2)
