"""Rendering a DeltaTableIngest into its children: pure functions over the spec model."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from deltaingest.config import Settings
from deltaingest.k8s.render import CONFIG_HASH, Owner, config_data, render
from deltaingest.k8s.spec import parse_spec

SPEC: dict[str, Any] = {
    "table": {"uri": "s3://lake/events", "schema": [{"name": "id", "type": "long"}]},
    "storage": {"endpoint": "http://minio:9000", "credentials": {"secretName": "s3"}},
}


def owner(spec: dict[str, Any] | None = None) -> Owner:
    return Owner(name="events", namespace="data", uid="u-1", spec=parse_spec(spec or SPEC), image="img:1")


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in manifests}


def test_children_with_defaults() -> None:
    children = by_kind(render(owner()))
    assert sorted(children) == [
        "ConfigMap/events-config",
        "CronJob/events-compaction",
        "CronJob/events-vacuum",
        "Deployment/events-writer",
        "PodDisruptionBudget/events-writer",
        "Service/events-writer",
    ]
    deployment = children["Deployment/events-writer"]
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "img:1"
    assert container["args"] == ["writer", "--config", "/etc/deltaingest/config.yaml"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    env = {item["name"]: item for item in container["env"]}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    compaction = children["CronJob/events-compaction"]["spec"]
    assert compaction["schedule"] == "*/5 * * * *"
    assert compaction["concurrencyPolicy"] == "Forbid"
    assert compaction["successfulJobsHistoryLimit"] == 3
    assert compaction["failedJobsHistoryLimit"] == 3
    job_container = compaction["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert job_container["args"] == [
        "compact",
        "--json",
        "--termination-log",
        "/dev/termination-log",
        "--config",
        "/etc/deltaingest/config.yaml",
    ]
    vacuum = children["CronJob/events-vacuum"]["spec"]
    assert vacuum["schedule"] == "0 * * * *"
    for child in children.values():
        assert child["metadata"]["namespace"] == "data"
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == "u-1"
        assert ref["controller"] is True


def test_every_child_is_a_valid_kubernetes_object() -> None:
    for manifest in render(owner()):
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)


def test_config_map_is_the_workload_settings() -> None:
    spec = {
        **SPEC,
        "writer": {"batching": {"maxRows": 10}, "authTokenSecret": {"name": "tok", "key": "t"}},
        "vacuum": {"retainHours": 200},
        "locking": {"kind": "dynamodb", "tableName": "locks"},
    }
    settings = Settings.model_validate(yaml.safe_load(config_data(parse_spec(spec))["config.yaml"]))
    assert settings.table.uri == "s3://lake/events"
    assert settings.writer.batching.max_rows == 10
    assert settings.writer.port == 8080
    assert settings.writer.auth_token_env == "DELTAINGEST_AUTH_TOKEN"
    assert settings.vacuum.retain_hours == 200
    assert settings.locking.kind == "dynamodb"
    assert settings.locking.table_name == "locks"
    assert "minio" not in config_data(parse_spec(spec))["config.yaml"]  # storage reaches pods as env


def pod_hash(spec: dict[str, Any]) -> str:
    deployment = by_kind(render(owner(spec)))["Deployment/events-writer"]
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH])


def test_config_hash_changes_with_the_config_only() -> None:
    base = pod_hash(SPEC)
    assert pod_hash(SPEC) == base  # deterministic
    assert pod_hash({**SPEC, "writer": {"batching": {"maxRows": 7}}}) != base
    assert pod_hash({**SPEC, "compaction": {"fanIn": 8}}) != base
    # Scaling or suspending must not restart the writers that keep running.
    assert pod_hash({**SPEC, "writer": {"replicas": 1}}) == base
    assert pod_hash({**SPEC, "suspend": True}) == base


@pytest.mark.parametrize(
    ("spec_changes", "replicas", "compaction_suspended", "vacuum_suspended"),
    [
        ({}, 1, False, False),
        ({"suspend": True}, 0, True, True),
        ({"compaction": {"suspend": True}}, 1, True, False),
        ({"vacuum": {"suspend": True}}, 1, False, True),
        ({"writer": {"replicas": 0}}, 0, False, False),
    ],
)
def test_suspend(
    spec_changes: dict[str, Any], replicas: int, compaction_suspended: bool, vacuum_suspended: bool
) -> None:
    children = by_kind(render(owner({**SPEC, **spec_changes})))
    assert children["Deployment/events-writer"]["spec"]["replicas"] == replicas
    assert children["CronJob/events-compaction"]["spec"]["suspend"] is compaction_suspended
    assert children["CronJob/events-vacuum"]["spec"]["suspend"] is vacuum_suspended


def test_overrides() -> None:
    spec = {
        **SPEC,
        "serviceAccountName": "irsa",
        "locking": {"kind": "dynamodb"},
        "writer": {
            "replicas": 3,
            "image": "mirror/deltaingest:1",
            "imagePullPolicy": "Always",
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}},
            "authTokenSecret": {"name": "tok", "key": "token"},
        },
    }
    deployment = by_kind(render(owner(spec)))["Deployment/events-writer"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert pod["serviceAccountName"] == "irsa"
    assert container["image"] == "mirror/deltaingest:1"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}}
    env = {item["name"]: item for item in container["env"]}
    assert env["DELTAINGEST_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "tok", "key": "token"}


def test_pod_placement_reaches_every_pod() -> None:
    toleration = {"key": "dedicated", "operator": "Equal", "value": "lake", "effect": "NoSchedule"}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
    ]}}}  # fmt: skip
    spec = {
        **SPEC,
        "pods": {
            "imagePullSecrets": ["regcred"],
            "nodeSelector": {"pool": "lake"},
            "tolerations": [toleration],
            "affinity": affinity,
            "priorityClassName": "ingest",
            "annotations": {"team": "data"},
            # The operator's own labels win: the Service and the Deployment select on them.
            "labels": {"team": "data", "app.kubernetes.io/component": "mine"},
        },
    }
    children = by_kind(render(owner(spec)))
    templates = [
        children["Deployment/events-writer"]["spec"]["template"],
        children["CronJob/events-compaction"]["spec"]["jobTemplate"]["spec"]["template"],
        children["CronJob/events-vacuum"]["spec"]["jobTemplate"]["spec"]["template"],
    ]
    for template in templates:
        pod = template["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["nodeSelector"] == {"pool": "lake"}
        assert pod["tolerations"] == [toleration]
        assert pod["affinity"] == affinity
        assert pod["priorityClassName"] == "ingest"
        assert template["metadata"]["annotations"]["team"] == "data"
        assert template["metadata"]["labels"]["team"] == "data"
        assert template["metadata"]["labels"]["app.kubernetes.io/component"] in (
            "writer",
            "compaction",
            "vacuum",
        )
    for manifest in render(owner(spec)):
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)


def test_dead_letter_and_evolution_settings_reach_the_writers() -> None:
    writer = {
        "invalidRows": "deadLetter",
        "deadLetter": {"uri": "s3://lake/events_dead"},
        "schemaEvolution": "addColumns",
        "inferTimestamps": True,
    }
    data = config_data(parse_spec({**SPEC, "writer": writer}))["config.yaml"]
    settings = Settings.model_validate(yaml.safe_load(data))
    assert settings.writer.invalid_rows == "deadLetter"
    assert settings.writer.dead_letter.uri == "s3://lake/events_dead"
    assert settings.writer.schema_evolution == "addColumns" and settings.writer.infer_timestamps


def test_a_log_tables_source_reaches_the_writers() -> None:
    spec = {**SPEC, "table": {"uri": "s3://lake/logs"}, "source": {"otlp": {"partitionByDate": False}}}
    settings = Settings.model_validate(yaml.safe_load(config_data(parse_spec(spec))["config.yaml"]))
    assert settings.source.otlp is not None and not settings.source.otlp.partition_by_date
    assert [c.column for c in settings.source.otlp.columns] == ["service_name"]
    assert settings.table.columns == []  # generated by the writer, from the same settings model
