"""One reconcile of a DeltaTableIngest: render, apply, observe, compute the status. No kopf in here."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from deltaingest.k8s import conditions
from deltaingest.k8s.apply import ChildKey, MissingSecret, child_key, ensure, read_children, resolve_env
from deltaingest.k8s.client import KubeClient, KubeError
from deltaingest.k8s.conditions import Observed, Probe
from deltaingest.k8s.messages import one_line
from deltaingest.k8s.probes import probe_dead_letters, probe_lock_table, probe_table
from deltaingest.k8s.render import Owner, render, storage_environment
from deltaingest.k8s.spec import API_VERSION, KIND, Condition, DeltaTableIngestSpec, parse_spec

COMPONENT = "deltaingest-operator"


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


def event_manifest(body: Mapping[str, Any], event: Event, *, instance: str) -> dict[str, Any]:
    """A core/v1 Event about the resource, shaped as kubectl describe and event exporters read it."""
    meta = body["metadata"]
    now = dt.datetime.now(dt.UTC)
    stamp = now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:1024],
        "action": "Reconcile",
        "source": {"component": COMPONENT},  # the "From" column of kubectl describe
        "reportingComponent": COMPONENT,
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # a MicroTime: the API server wants 6 digits
        "count": 1,
    }


@dataclass
class Outcome:
    """What the handler writes back: the status patch, the events to post, and an error to retry on."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    error: str | None = None
    permanent: bool = False  # retrying the same spec cannot help


async def _in_thread(
    check: Callable[[DeltaTableIngestSpec, Mapping[str, str]], Probe],
    spec: DeltaTableIngestSpec,
    environ: Mapping[str, str],
    timeout: float,
) -> Probe:
    """A blocking probe off the event loop, bounded so one slow store cannot stall every resource.

    A daemon thread rather than the loop's executor: a probe stuck in a store's retries must neither hold
    up the operator's exit on SIGTERM (asyncio.run waits for executor threads) nor outlive it.
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Probe] = loop.create_future()

    def deliver(result: Probe | BaseException) -> None:
        if answer.done():  # timed out or cancelled meanwhile
            return
        if isinstance(result, BaseException):
            answer.set_exception(result)
        else:
            answer.set_result(result)

    def run() -> None:
        try:
            result: Probe | BaseException = check(spec, environ)
        except Exception as err:
            result = err
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(deliver, result)

    threading.Thread(target=run, name=f"probe-{check.__name__}", daemon=True).start()
    try:
        return await asyncio.wait_for(answer, timeout)
    except TimeoutError:
        # A store that never answers is the usual cause; delta-rs without credentials also retries the EC2
        # metadata endpoint, silent outside AWS, for minutes.
        return Probe(
            False,
            "Timeout",
            f"no answer within {timeout:.0f} s: check spec.storage.endpoint (and locking.endpoint) and the "
            "network path; outside AWS, set spec.storage.credentials",
        )


def _invalid(body: Mapping[str, Any], error: ValidationError, now: str) -> Outcome:
    """A spec the model rejects (the CRD is older than the operator): say so and touch nothing."""
    generation = int(body["metadata"].get("generation") or 0)
    message = one_line(
        "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
    )
    ready = {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "message": message,
        "lastTransitionTime": now,
        "observedGeneration": generation,
    }
    before = _ready(body)
    # Once per distinct problem, not on every resync.
    fresh = before.get("reason") != "InvalidSpec" or before.get("message") != message
    events = [Event("Warning", "InvalidSpec", message)] if fresh else []
    return Outcome({"conditions": [ready]}, events, message, permanent=True)


async def reconcile(
    api: KubeClient, body: Mapping[str, Any], *, image: str, now: str, probe_timeout: float
) -> Outcome:
    """Bring the children in line with the spec and report what is there."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    previous = (body.get("status") or {}).get("conditions") or []
    try:
        spec = parse_spec(body.get("spec") or {})
    except ValidationError as err:
        return _invalid(body, err, now)
    owner = Owner(name=name, namespace=namespace, uid=meta["uid"], spec=spec, image=image)
    events: list[Event] = []
    apply_error: str | None = None
    seen: dict[ChildKey, dict[str, Any]] = {}
    try:
        for manifest in render(owner):
            done, seen[child_key(manifest)] = await ensure(api, manifest)
            if done:
                events.append(Event("Normal", "Applied", done))
    except KubeError as err:  # reported through Ready (reason ApplyFailed) and its transition event
        apply_error = one_line(f"applying the children failed: {err}")
    children = await read_children(api, namespace, name, seen)
    dead_letters: Probe | None = None
    try:
        environ = await resolve_env(api, namespace, storage_environment(spec))
    except MissingSecret as err:
        table: Probe = Probe(False, "SecretMissing", str(err))
        # Without a lock table there is nothing to reach, so nothing is missing.
        lock = probe_lock_table(spec, {}) if spec.locking.kind == "none" else table
    else:
        table = await _in_thread(probe_table, spec, environ, probe_timeout)
        lock = await _in_thread(probe_lock_table, spec, environ, probe_timeout)
        if spec.writer.invalid_rows == "deadLetter":
            dead_letters = await _in_thread(probe_dead_letters, spec, environ, probe_timeout)
    status = conditions.status(
        Observed(
            name=name,
            generation=int(meta.get("generation") or 0),
            spec=spec,
            now=now,
            deployment=children.deployment,
            cron_jobs=children.cron_jobs,
            jobs=children.jobs,
            pods=children.pods,
            table=table,
            lock=lock,
            dead_letters=dead_letters,
            apply_error=apply_error,
            previous=previous,
        )
    )
    events.extend(_transitions(_ready(body), status.conditions))
    return Outcome(status.model_dump(by_alias=True, mode="json"), events, apply_error)


def _ready(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Ready condition the resource had before this reconcile (empty if none)."""
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


def _transitions(before: Mapping[str, Any], current: list[Condition]) -> list[Event]:
    """An event when Ready's status or reason changes, so ``kubectl describe`` and event exporters show the
    history without an event on every resync."""
    (ready,) = [condition for condition in current if condition.type == "Ready"]
    if (before.get("status"), before.get("reason")) == (ready.status, ready.reason):
        return []
    if ready.status == "True":
        return [Event("Normal", "Ready", ready.message)]
    return [Event("Warning", f"NotReady{ready.reason}"[:128], ready.message)]
