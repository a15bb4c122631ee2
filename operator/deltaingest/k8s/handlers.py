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
import copy
import datetime as dt
import logging
import signal
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock
from prometheus_client import start_http_server

from deltaingest.k8s import metrics
from deltaingest.k8s.client import (
    KubeClient,
    KubeError,
    connection_info,
    load_configuration,
    refresh_credentials,
)
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
        self.names: dict[str, tuple[str, str]] = {}  # uid -> (namespace, name)
        self.statuses: dict[str, dict[str, Any]] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    def seen(self, body: kopf.Body, event_type: str | None) -> None:
        uid = body.metadata.uid or ""
        if event_type == "DELETED":
            self.forget(uid)
        else:
            self.names[uid] = (body.metadata.namespace or "", body.metadata.name or "")

    def lock(self, uid: str) -> asyncio.Lock:
        """Handlers and the resync loop never reconcile one resource at the same time."""
        return self.locks.setdefault(uid, asyncio.Lock())

    def forget(self, uid: str) -> None:
        # kopf calls no delete handler for a resource deleted without a finalizer: this is where it goes.
        namespace, name = self.names.pop(uid, ("", ""))
        self.statuses.pop(uid, None)
        self.locks.pop(uid, None)
        if name:
            metrics.forget(namespace, name)


def build_registry(config: OperatorConfig, resources: Resources) -> kopf.OperatorRegistry:
    """Every handler, on a registry of its own (tests run several operators in one process)."""
    registry = kopf.OperatorRegistry()
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
        # Started and stopped by kopf's own startup and cleanup, so it never outlives the client it uses.
        tasks.append(asyncio.get_running_loop().create_task(resync_forever(config, resources, memo)))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        api = memo.get("api")
        if isinstance(api, KubeClient):
            await api.close()

    @kopf.on.login(registry=registry)
    async def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
        # Called again when the API server answers 401: the same client, its credentials looked at again.
        configuration = memo.get("configuration")
        if configuration is None:
            configuration = memo["configuration"] = await load_configuration(config.server)
            memo["api"] = KubeClient(configuration)
        else:
            await refresh_credentials(configuration)
        return await connection_info(configuration)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def seen(body: kopf.Body, type: str | None, **_: Any) -> None:
        resources.seen(body, type)

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def apply(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        outcome = await sync(config, resources, memo["api"], copy.deepcopy(dict(body)))
        if outcome is not None and outcome.error:
            if outcome.permanent:  # only a new spec helps, and that triggers the update handler
                raise kopf.PermanentError(outcome.error)
            raise kopf.TemporaryError(outcome.error, delay=config.retry_seconds)

    return registry


async def sync(
    config: OperatorConfig, resources: Resources, api: KubeClient, body: dict[str, Any]
) -> Outcome | None:
    """Reconcile one resource as kopf handed it to a handler, and publish the outcome."""
    uid = body["metadata"].get("uid") or ""
    async with resources.lock(uid):
        return await _publish(config, resources, api, uid, body)


async def resync(config: OperatorConfig, resources: Resources, api: KubeClient, uid: str) -> Outcome | None:
    """Reconcile one resource again, read afresh: never a spec older than one a handler applied meanwhile."""
    async with resources.lock(uid):
        namespace, name = resources.names.get(uid, ("", ""))
        body = await api.read_resource(namespace, name) if name else None
        if body is None or body["metadata"].get("uid") != uid:
            resources.forget(uid)  # deleted, perhaps while the watch was down: no DELETED event came
            return None
        return await _publish(config, resources, api, uid, body)


async def _publish(
    config: OperatorConfig, resources: Resources, api: KubeClient, uid: str, body: dict[str, Any]
) -> Outcome | None:
    """Reconcile, then write the outcome: the status, then the events. ``None``: nothing done (gone)."""
    if body["metadata"].get("deletionTimestamp"):
        return None  # the garbage collector takes the children; nothing to do
    if uid in resources.statuses:  # fresher than the body's: a watch event may still be on its way
        body = {**body, "status": resources.statuses[uid]}
    with metrics.RECONCILE_SECONDS.time():
        outcome = await reconcile(
            api, body, image=config.image, now=_now(), probe_timeout=config.probe_timeout
        )
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        await api.patch_status(namespace, name, outcome.status)
    except KubeError as err:
        if err.status == 404:
            resources.forget(uid)
            return None
        raise
    if uid in resources.names:  # not for a resource deleted meanwhile
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

    async def one(uid: str) -> None:
        async with limit:
            try:
                await resync(config, resources, memo["api"], uid)
            except Exception:  # one resource's failure must not end the loop for the others
                log.exception("resync of %s failed", resources.names.get(uid))

    while True:
        await asyncio.sleep(config.resync_seconds)
        if isinstance(memo.get("api"), KubeClient):
            await asyncio.gather(*(one(uid) for uid in list(resources.names)))


async def _serve(
    config: OperatorConfig,
    stop_flag: asyncio.Event | threading.Event | None,
    ready_flag: asyncio.Event | threading.Event | None,
) -> None:
    await kopf.operator(
        registry=build_registry(config, Resources()),
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        standalone=True,  # leadership is the Lease's, not kopf peering's
        memo=kopf.Memo(),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


class LeadershipLost(Exception):
    """Another replica holds the Lease now: this one must stop serving (and its pod restarts)."""


class _Candidate(leaderelection.LeaderElection):
    """kubernetes_asyncio's election, made to survive the API server as client-go does: an attempt that
    fails in any way (a connection error, a proxy's non-JSON 503) is a failed attempt, not a crash, and it is
    bounded in time, so a hung call cannot keep a leader serving past its renew deadline."""

    async def try_acquire_or_renew(self) -> bool:
        bound = self.election_config.renew_deadline / 2
        try:
            return await asyncio.wait_for(super().try_acquire_or_renew(), bound)
        except Exception as err:
            log.warning("Lease %s: attempt failed: %r", self.election_config.lock.name, err)
            return False

    async def release(self) -> None:
        """Clear the holder on a clean stop, so a standby takes over at once (client-go's ReleaseOnCancel)."""
        lock = self.election_config.lock
        if not isinstance(lock, LeaseLock):
            return
        timeout = self.election_config.retry_period
        try:
            held, _ = await asyncio.wait_for(lock.get(lock.name, lock.namespace), timeout)
            lease = lock.lease_reference
            if held and lease is not None and lease.spec.holder_identity == lock.identity:
                lease.spec.holder_identity = None  # type: ignore[assignment]  # the model's hint is too narrow
                await asyncio.wait_for(
                    lock.api_instance.replace_namespaced_lease(lock.name, lock.namespace, lease),
                    timeout,
                )
        except Exception as err:  # the Lease then simply expires
            log.warning("Lease %s: release failed: %r", lock.name, err)


async def _health_server(config: OperatorConfig) -> web.AppRunner | None:
    """/healthz for the whole process, leader or standby: the kubelet must not restart a waiting replica."""
    if config.liveness_port is None:
        return None

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.bind, config.liveness_port).start()
    return runner


async def run_operator(
    config: OperatorConfig,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run until stopped (SIGTERM, or ``stop_flag``); with leader election, serve only while leading.

    The liveness and metrics ports are the process's: a standby answers them too.
    """
    health = await _health_server(config)
    metrics_server = None
    if config.metrics_port is not None:
        metrics_server, _thread = start_http_server(
            config.metrics_port, addr=config.bind, registry=metrics.REGISTRY
        )
    try:
        if config.leader_election is None:
            await _serve(config, stop_flag, ready_flag)
        else:
            await _lead_or_wait(config, config.leader_election, stop_flag, ready_flag)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        if health is not None:
            await health.cleanup()


async def _lead_or_wait(
    config: OperatorConfig,
    election: LeaderElection,
    stop_flag: asyncio.Event | threading.Event | None,
    ready_flag: asyncio.Event | threading.Event | None,
) -> None:
    api_client = client.ApiClient(await load_configuration(config.server))
    loop = asyncio.get_running_loop()
    served: asyncio.Future[None] = loop.create_future()
    leading = asyncio.Event()

    async def lead() -> None:
        log.info("%s leads (Lease %s/%s)", config.identity, election.namespace, election.name)
        leading.set()
        try:
            await _serve(config, stop_flag, ready_flag)
        except BaseException as err:
            if not served.done():
                served.set_exception(err if isinstance(err, Exception) else LeadershipLost(repr(err)))
            raise
        if not served.done():
            served.set_result(None)

    async def lost() -> None:
        if not served.done():
            served.set_exception(LeadershipLost(f"{config.identity} lost the Lease {election.name}"))

    candidate = _Candidate(
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
        # A standby stops when told to. A leader stops when kopf has stopped (told to, as kopf watches the
        # same flag or signals) or when it lost the Lease. Either, when the campaign itself ends.
        done, _ = await asyncio.wait({served, waiting, campaign}, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done and leading.is_set():
            await asyncio.wait({served, campaign}, return_when=asyncio.FIRST_COMPLETED)
        if served.done():
            served.result()
            await candidate.release()
        elif campaign.done():
            campaign.result()
            raise LeadershipLost(f"the campaign for the Lease {election.name} ended")
    finally:
        for task in (campaign, waiting):
            task.cancel()
        await asyncio.gather(campaign, waiting, return_exceptions=True)
        await api_client.close()


async def _stopped(flag: asyncio.Event | threading.Event | None) -> None:
    """Until ``flag`` is set (``None``: until SIGTERM or SIGINT, as kopf itself would stop)."""
    if flag is None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    elif isinstance(flag, asyncio.Event):
        await flag.wait()
    else:
        while not flag.is_set():
            await asyncio.sleep(0.2)
