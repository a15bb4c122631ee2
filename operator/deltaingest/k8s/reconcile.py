"""One reconcile of a DeltaTableIngest: render, apply, observe, compute the status. No kopf in here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from deltaingest.k8s import conditions
from deltaingest.k8s.api import KubeAPI, KubeError
from deltaingest.k8s.apply import MissingSecret, ensure, read_children, resolve_env
from deltaingest.k8s.conditions import Observed, Probe
from deltaingest.k8s.probes import probe_lock_table, probe_table
from deltaingest.k8s.render import Owner, render, selector_string, storage_environment
from deltaingest.k8s.spec import Condition, DeltaTableIngestSpec, parse_spec


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Outcome:
    """What the handler writes back: the status patch, the events to post, and an error to retry on."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    error: str | None = None
    spec: DeltaTableIngestSpec | None = None


async def _in_thread(
    check: Callable[[DeltaTableIngestSpec, Mapping[str, str]], Probe],
    spec: DeltaTableIngestSpec,
    environ: Mapping[str, str],
    timeout: float,
) -> Probe:
    """A blocking probe off the event loop, bounded so one slow store cannot stall every resource."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(check, spec, environ), timeout)
    except TimeoutError:
        return Probe(False, "Timeout", f"no answer within {timeout:.0f} s")


def _invalid(body: Mapping[str, Any], error: ValidationError, now: str) -> Outcome:
    """A spec the model rejects (the CRD is older than the operator): say so and touch nothing."""
    generation = int(body["metadata"].get("generation") or 0)
    message = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())[
        :2000
    ]
    ready = {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "message": message,
        "lastTransitionTime": now,
        "observedGeneration": generation,
    }
    return Outcome({"conditions": [ready]}, [Event("Warning", "InvalidSpec", message)], message)


async def reconcile(
    api: KubeAPI, body: Mapping[str, Any], *, image: str, now: str, probe_timeout: float
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
    try:
        for manifest in render(owner):
            done = await ensure(api, manifest)
            if done:
                events.append(Event("Normal", "Applied", done))
    except KubeError as err:
        apply_error = f"applying the children failed: {err}"
        events.append(Event("Warning", "ApplyFailed", apply_error))
    children = await read_children(api, namespace, name)
    try:
        environ = await resolve_env(api, namespace, storage_environment(spec))
    except MissingSecret as err:
        table: Probe = Probe(False, "SecretMissing", str(err))
        lock = (
            Probe(False, "SecretMissing", str(err))
            if spec.locking.kind == "dynamodb"
            else Probe(True, "NotRequired", "locking.kind is none")
        )
    else:
        table = await _in_thread(probe_table, spec, environ, probe_timeout)
        lock = await _in_thread(probe_lock_table, spec, environ, probe_timeout)
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
            apply_error=apply_error,
            previous=previous,
        )
    )
    events.extend(_transitions(previous, status.conditions))
    patch = status.model_dump(by_alias=True, mode="json")
    patch["selector"] = selector_string(name)
    return Outcome(patch, events, apply_error, spec)


def _transitions(previous: list[Mapping[str, Any]], current: list[Condition]) -> list[Event]:
    """An event when Ready flips, so ``kubectl describe`` and event exporters show the history."""
    before = {c.get("type"): c.get("status") for c in previous}
    out: list[Event] = []
    for condition in current:
        if condition.type != "Ready" or before.get("Ready") == condition.status:
            continue
        if condition.status == "True":
            out.append(Event("Normal", "Ready", condition.message))
        else:
            out.append(Event("Warning", f"NotReady{condition.reason}"[:128], condition.message))
    return out
