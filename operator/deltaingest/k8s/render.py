"""Pure rendering: a DeltaTableIngest to its children (ConfigMap, Service, Deployment, two CronJobs).

No I/O here: the handlers pass in what the API returned and apply what comes out, and the tests call these
functions directly. Every child carries an owner reference (so the cluster's garbage collector removes it
with its resource) and the same labels (so the operator finds its children and the Service its pods).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from deltaingest.config import (
    CompactionPolicy,
    CompactionSpec,
    LockPolicy,
    LockSpec,
    Settings,
    TableSpec,
    VacuumPolicy,
    VacuumSpec,
    WriterPolicy,
    WriterSpec,
)
from deltaingest.k8s.spec import API_VERSION, KIND, DeltaTableIngestSpec, Resources, SecretKeyRef

CONFIG_DIR = "/etc/deltaingest"
CONFIG_FILE = "config.yaml"
HTTP_PORT = 8080
METRICS_PORT = 9090
AUTH_TOKEN_ENV = "DELTAINGEST_AUTH_TOKEN"
CONFIG_HASH = "deltaingest.io/config-hash"
TERMINATION_LOG = "/dev/termination-log"  # the kubelet mounts it writable even on a read-only root
# A non-root user that exists in no base image, as the restricted Pod Security Standard asks.
RUN_AS_USER = 10001

Manifest = dict[str, Any]
EnvValue = str | SecretKeyRef


@dataclass(frozen=True)
class Owner:
    """The resource being rendered, as the API returned it."""

    name: str
    namespace: str
    uid: str
    spec: DeltaTableIngestSpec
    image: str  # the operator's default workload image, used unless spec.writer.image is set


def child_names(name: str) -> dict[str, str]:
    """The name of each child of resource ``name``."""
    return {
        "config": f"{name}-config",
        "writer": f"{name}-writer",
        "compaction": f"{name}-compaction",
        "vacuum": f"{name}-vacuum",
    }


def labels(owner_name: str, component: str | None = None) -> dict[str, str]:
    """Labels on every child; the first three select the writer pods."""
    result = {
        "app.kubernetes.io/name": "deltaingest",
        "app.kubernetes.io/instance": owner_name,
        "app.kubernetes.io/managed-by": "deltaingest-operator",
    }
    if component:
        result["app.kubernetes.io/component"] = component
    return result


def writer_selector(owner_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "deltaingest",
        "app.kubernetes.io/instance": owner_name,
        "app.kubernetes.io/component": "writer",
    }


def selector_string(owner_name: str) -> str:
    """The writer selector as ``status.selector`` (the scale subresource's labelSelectorPath) wants it."""
    return ",".join(f"{key}={value}" for key, value in writer_selector(owner_name).items())


def _policy(model: BaseModel, base: type[BaseModel]) -> dict[str, Any]:
    """The fields ``model`` inherits from ``base``: a CR section handed to the settings section it extends."""
    return {name: getattr(model, name) for name in base.model_fields}


def workload_settings(spec: DeltaTableIngestSpec) -> Settings:
    """The settings file every workload reads; credentials stay out of it (they come from Secrets)."""
    return Settings(
        table=TableSpec(**_policy(spec.table, TableSpec)),
        storage_options=dict(spec.storage.options),
        writer=WriterSpec(
            **_policy(spec.writer, WriterPolicy),
            port=HTTP_PORT,
            metrics_port=METRICS_PORT,
            auth_token_env=AUTH_TOKEN_ENV if spec.writer.auth_token_secret else None,
        ),
        locking=LockSpec(**_policy(spec.locking, LockPolicy), kind=spec.locking.kind),
        compaction=CompactionSpec(**_policy(spec.compaction, CompactionPolicy)),
        vacuum=VacuumSpec(**_policy(spec.vacuum, VacuumPolicy)),
        source=spec.source,
    )


def config_data(spec: DeltaTableIngestSpec) -> dict[str, str]:
    """The ConfigMap's data: one YAML settings file, keys sorted so equal specs give equal bytes."""
    settings = workload_settings(spec).model_dump(by_alias=True, mode="json", exclude_none=True)
    return {CONFIG_FILE: yaml.safe_dump(settings, sort_keys=True)}


def config_hash(data: dict[str, str]) -> str:
    """The annotation that rolls the writers when their settings change (pods read the file at start)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def storage_environment(spec: DeltaTableIngestSpec) -> dict[str, EnvValue]:
    """How workloads (and the operator, for table facts) reach the store: literal values and Secret keys."""
    env: dict[str, EnvValue] = {}
    if spec.storage.endpoint:
        env["AWS_ENDPOINT_URL"] = spec.storage.endpoint
    if spec.storage.region:
        env["AWS_REGION"] = spec.storage.region
    credentials = spec.storage.credentials
    if credentials:
        env["AWS_ACCESS_KEY_ID"] = SecretKeyRef(
            name=credentials.secret_name, key=credentials.access_key_id_key
        )
        env["AWS_SECRET_ACCESS_KEY"] = SecretKeyRef(
            name=credentials.secret_name, key=credentials.secret_access_key_key
        )
        if credentials.session_token_key:
            env["AWS_SESSION_TOKEN"] = SecretKeyRef(
                name=credentials.secret_name, key=credentials.session_token_key
            )
    return env


def _env(values: dict[str, EnvValue]) -> list[Manifest]:
    out: list[Manifest] = []
    for name, value in values.items():
        if isinstance(value, SecretKeyRef):
            ref = {"name": value.name, "key": value.key}
            out.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
        else:
            out.append({"name": name, "value": value})
    return out


def owner_reference(owner: Owner) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(owner: Owner, name: str, component: str | None) -> Manifest:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name, component),
        "ownerReferences": [owner_reference(owner)],
    }


def _resources(resources: Resources) -> Manifest:
    return {
        key: dict(value)
        for key, value in (("requests", resources.requests), ("limits", resources.limits))
        if value
    }


def _container(owner: Owner, command: list[str], env: dict[str, EnvValue], resources: Resources) -> Manifest:
    writer = owner.spec.writer
    container: Manifest = {
        "name": command[0],
        "image": writer.image or owner.image,
        "args": [*command, "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "env": _env(env),
        "resources": _resources(resources),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if writer.image_pull_policy:
        container["imagePullPolicy"] = writer.image_pull_policy
    return container


def _pod_spec(owner: Owner, containers: list[Manifest], **extra: Any) -> Manifest:
    names = child_names(owner.name)
    spec: Manifest = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers,
        "volumes": [
            {"name": "config", "configMap": {"name": names["config"]}},
            {"name": "tmp", "emptyDir": {}},
        ],
        **extra,
    }
    if owner.spec.service_account_name:
        spec["serviceAccountName"] = owner.spec.service_account_name
    pods = owner.spec.pods
    for key, value in (
        ("imagePullSecrets", [{"name": name} for name in pods.image_pull_secrets]),
        ("nodeSelector", dict(pods.node_selector)),
        ("tolerations", [dict(t) for t in pods.tolerations]),
        ("affinity", dict(pods.affinity)),
        ("priorityClassName", pods.priority_class_name),
    ):
        if value:
            spec[key] = value
    return spec


def _pod_metadata(owner: Owner, component: str, annotations: dict[str, str] | None = None) -> Manifest:
    """The user's pod labels and annotations, then ours (which the selectors and the roll rely on)."""
    pods = owner.spec.pods
    return {
        "labels": {**pods.labels, **labels(owner.name, component)},
        "annotations": {**pods.annotations, **(annotations or {})},
    }


def render_config_map(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, child_names(owner.name)["config"], "config"),
        "data": config_data(owner.spec),
    }


def render_service(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, child_names(owner.name)["writer"], "writer"),
        "spec": {
            "type": "ClusterIP",
            "selector": writer_selector(owner.name),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def render_deployment(owner: Owner) -> Manifest:
    spec = owner.spec
    env = storage_environment(spec)
    if spec.writer.auth_token_secret:
        env[AUTH_TOKEN_ENV] = spec.writer.auth_token_secret
    container = _container(owner, ["writer"], env, spec.writer.resources)
    container["ports"] = [
        {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
    ]
    container["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 5,
        "failureThreshold": 2,
    }
    container["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    # Opening (or creating) the table and taking the lease may take a while on a slow store.
    container["startupProbe"] = {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 2,
        "failureThreshold": 60,
    }
    template_metadata = _pod_metadata(
        owner,
        "writer",
        {
            CONFIG_HASH: config_hash(config_data(spec)),
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(METRICS_PORT),
            "prometheus.io/path": "/metrics",
        },
    )
    # In-flight commits finish within the writer's grace; Kubernetes must wait a little longer than that.
    grace = int(spec.writer.shutdown_grace_seconds) + 5
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, child_names(owner.name)["writer"], "writer"),
        "spec": {
            "replicas": 0 if spec.suspend else spec.writer.replicas,
            "selector": {"matchLabels": writer_selector(owner.name)},
            # A new pod is ready before an old one stops: ingest capacity never drops during a roll.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": template_metadata,
                "spec": _pod_spec(owner, [container], terminationGracePeriodSeconds=grace),
            },
        },
    }


def render_disruption_budget(owner: Owner) -> Manifest:
    """At most one writer evicted at a time (node drains, cluster upgrades); harmless with one replica."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, child_names(owner.name)["writer"], "writer"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": writer_selector(owner.name)}},
    }


def _render_cron_job(
    owner: Owner, component: str, command: str, *, schedule: str, suspended: bool, resources: Resources
) -> Manifest:
    args = [command, "--json", "--termination-log", TERMINATION_LOG]
    container = _container(owner, args, storage_environment(owner.spec), resources)
    job_labels = labels(owner.name, component)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(owner, child_names(owner.name)[component], component),
        "spec": {
            "schedule": schedule,
            "suspend": suspended,
            # A run still going when the next is due is not doubled (the lease would skip it anyway).
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": job_labels},
                "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "metadata": _pod_metadata(owner, component),
                        "spec": _pod_spec(owner, [container], restartPolicy="Never"),
                    },
                },
            },
        },
    }


def render_compaction(owner: Owner) -> Manifest:
    policy = owner.spec.compaction
    suspended = owner.spec.suspend or policy.suspend
    return _render_cron_job(
        owner,
        "compaction",
        "compact",
        schedule=policy.schedule,
        suspended=suspended,
        resources=policy.resources,
    )


def render_vacuum(owner: Owner) -> Manifest:
    policy = owner.spec.vacuum
    suspended = owner.spec.suspend or policy.suspend
    return _render_cron_job(
        owner, "vacuum", "vacuum", schedule=policy.schedule, suspended=suspended, resources=policy.resources
    )


def render(owner: Owner) -> list[Manifest]:
    """Every child, in the order to apply them (the ConfigMap before the pods that mount it)."""
    return [
        render_config_map(owner),
        render_service(owner),
        render_deployment(owner),
        render_disruption_budget(owner),
        render_compaction(owner),
        render_vacuum(owner),
    ]
