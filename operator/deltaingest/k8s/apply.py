"""API-side steps of a reconcile: apply the rendered children, read them back, resolve Secret references."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deltaingest.k8s.client import KubeClient
from deltaingest.k8s.drift import drift, stamp
from deltaingest.k8s.render import EnvValue, child_names, labels
from deltaingest.k8s.spec import SecretKeyRef

# A child as (kind, name): every child lives in its owner's namespace.
ChildKey = tuple[str, str]


class MissingSecret(Exception):
    """A Secret (or one of its keys) that the spec names is not there."""


def child_key(manifest: Mapping[str, Any]) -> ChildKey:
    return manifest["kind"], manifest["metadata"]["name"]


async def ensure(api: KubeClient, manifest: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Create or re-apply one child when it is missing or has drifted.

    Returns what was done (``None``: nothing) and the child as the API server now has it, so the reconcile
    reads its status without asking again.
    """
    stamped = stamp(manifest)
    kind, name = child_key(stamped)
    actual = await api.read(kind, stamped["metadata"]["namespace"], name)
    why = drift(stamped, actual)
    if why is None and actual is not None:
        return None, actual
    # Server-side apply also creates: a child created any other way would keep, under a second field
    # manager, every field a later rendering drops.
    applied = await api.apply(stamped)
    what = f"{kind} {name}"
    return (f"created {what}" if actual is None else f"updated {what} ({why})"), applied


@dataclass(frozen=True)
class Children:
    """The children as the API returned them (``None``: not there)."""

    deployment: dict[str, Any] | None
    cron_jobs: dict[str, dict[str, Any] | None]
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]  # the maintenance Jobs' pods, for their termination messages


async def read_children(
    api: KubeClient, namespace: str, name: str, seen: Mapping[ChildKey, dict[str, Any]]
) -> Children:
    """The children's state; ``seen`` holds those ``ensure`` already got from the API."""

    async def child(kind: str, child_name: str) -> dict[str, Any] | None:
        key = (kind, child_name)
        return seen[key] if key in seen else await api.read(kind, namespace, child_name)

    names = child_names(name)
    deployment = await child("Deployment", names["writer"])
    cron_jobs = {
        component: await child("CronJob", names[component]) for component in ("compaction", "vacuum")
    }
    jobs = await api.list("Job", namespace, labels=labels(name))
    pods: list[dict[str, Any]] = []
    for component in ("compaction", "vacuum"):
        pods += await api.list("Pod", namespace, labels=labels(name, component))
    return Children(deployment, cron_jobs, jobs, pods)


async def resolve_env(api: KubeClient, namespace: str, env: Mapping[str, EnvValue]) -> dict[str, str]:
    """Literal values as they are, Secret references read from the API (each Secret once)."""
    secrets: dict[str, dict[str, str]] = {}
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(value, SecretKeyRef):
            out[key] = value
            continue
        if value.name not in secrets:
            secret = await api.read("Secret", namespace, value.name)
            if secret is None:
                raise MissingSecret(f"Secret {namespace}/{value.name} not found")
            secrets[value.name] = secret.get("data") or {}
        encoded = secrets[value.name].get(value.key)
        if encoded is None:
            raise MissingSecret(f"Secret {namespace}/{value.name} has no key {value.key!r}")
        out[key] = base64.b64decode(encoded).decode()
    return out
