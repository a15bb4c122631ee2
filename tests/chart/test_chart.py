"""The Helm chart, with the real helm binary: lint, render with several value sets, validate every object."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deltaingest.k8s import metrics as operator_metrics
from deltaingest.metrics import Metrics
from tests.promql import selectors
from tests.tools import ROOT, helm

CHART = ROOT / "charts" / "deltaingest"
K8S_VERSION = "1.37.0"
# Kinds that are not part of Kubernetes itself: checked by their own assertions below instead.
NOT_BUILT_IN = {"PodMonitor", "PrometheusRule"}

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "namespaced-ha": [
        "--set=watch.mode=namespaced",
        "--set=watch.namespaces={analytics,billing}",
        "--set=replicaCount=2",
        "--set=metrics.podMonitor.enabled=true",
        "--set=dashboard.enabled=true",
        "--set=prometheusRule.enabled=true",
        "--set=logLevel=DEBUG",
    ],
    "custom": [
        "--set=image.repository=registry.example.com/deltaingest",
        "--set=image.tag=0.3.0-rc1",
        "--set=workloadImage=registry.example.com/deltaingest-workload:1",
        "--set=serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/op",
        "--set=imagePullSecrets[0].name=regcred",
        "--set=nodeSelector.pool=system",
        "--set=priorityClassName=system-cluster-critical",
        "--set=metrics.service.enabled=false",
        "--set=resyncSeconds=10",
    ],
}


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, check=False)


def render(values: list[str], *extra: str) -> list[dict[str, Any]]:
    result = run_helm("template", "di", str(CHART), "--namespace", "ops", *values, *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint(name: str) -> None:
    result = run_helm("lint", "--strict", str(CHART), *VALUE_SETS[name])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_object_is_valid_kubernetes(name: str) -> None:
    docs = render(VALUE_SETS[name], "--include-crds")
    checked = 0
    for doc in docs:
        if doc["kind"] in NOT_BUILT_IN:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 8


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def test_defaults_serve_every_namespace_with_one_replica() -> None:
    docs = render([])
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/deltaingest/deltaingest:0.3.0"
    assert "--all-namespaces" in container["args"]
    assert "--leader-election=di-deltaingest" in container["args"]  # even one replica: scaling stays safe
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {doc["metadata"]["name"] for doc in by_kind(docs, "ClusterRole")} == {
        "di-deltaingest",
        "di-deltaingest-discovery",
    }
    # The one Role: the leader-election Lease, in the release namespace.
    assert [(role["metadata"]["name"], role["metadata"]["namespace"]) for role in by_kind(docs, "Role")] == [
        ("di-deltaingest-leader-election", "ops")
    ]
    assert by_kind(docs, "PodMonitor") == []
    assert by_kind(docs, "ConfigMap") == []  # the dashboard is opt-in


def test_namespaced_mode_grants_only_those_namespaces() -> None:
    docs = render(VALUE_SETS["namespaced-ha"])
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=analytics" in args
    assert "--namespace=billing" in args
    assert "--leader-election=di-deltaingest" in args
    assert "--leader-election-namespace=ops" in args
    assert deployment["spec"]["replicas"] == 2
    roles = [
        (role["metadata"]["name"], role["metadata"]["namespace"], role) for role in by_kind(docs, "Role")
    ]
    assert sorted(ns for name, ns, _ in roles if name == "di-deltaingest") == ["analytics", "billing"]
    ((lease_role_namespace, lease_role),) = [
        (ns, r) for name, ns, r in roles if name.endswith("leader-election")
    ]
    assert lease_role_namespace == "ops"
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    (cluster_role,) = by_kind(docs, "ClusterRole")
    granted = {resource for rule in cluster_role["rules"] for resource in rule["resources"]}
    assert granted == {"customresourcedefinitions", "namespaces"}  # reads only, for kopf's discovery
    assert {rule_verb for rule in cluster_role["rules"] for rule_verb in rule["verbs"]} == {"list", "watch"}
    (monitor,) = by_kind(docs, "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    # The alerts group by the operator's own namespace and name labels, and writers' series by "name" too.
    assert endpoint["honorLabels"] is True
    (relabeling,) = endpoint["relabelings"]
    assert (relabeling["regex"], relabeling["targetLabel"]) == ("writer;(.+)", "name")
    (dashboard,) = by_kind(docs, "ConfigMap")
    assert json.loads(dashboard["data"]["deltaingest.json"])["uid"] == "deltaingest"


def test_the_operator_never_deletes() -> None:
    for values in VALUE_SETS.values():
        for doc in render(values):
            if doc["kind"] in ("Role", "ClusterRole"):
                for rule in doc["rules"]:
                    assert not {"delete", "deletecollection", "*"} & set(rule["verbs"]), rule
                    if "secrets" in rule["resources"]:
                        assert rule["verbs"] == ["get"]


def test_custom_values_reach_the_objects() -> None:
    docs = render(VALUE_SETS["custom"])
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/deltaingest:0.3.0-rc1"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["DELTAINGEST_IMAGE"] == "registry.example.com/deltaingest-workload:1"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert "--resync-seconds=10" in container["args"]
    (account,) = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/op"}
    assert by_kind(docs, "Service") == []


@pytest.mark.parametrize(
    "bad",
    [
        "--set=watch.mode=everywhere",
        "--set=replicaCount=0",
        "--set=image.pullPolicy=Sometimes",
        "--set=unknownKey=1",
        "--set=watch.namespaces={Bad_Name}",
        "--set=metrics.port=8080",
    ],
)
def test_values_schema_rejects_bad_values(bad: str) -> None:
    result = run_helm("template", "di", str(CHART), bad)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr or "at '/" in result.stderr


SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}


def exported_metrics() -> set[str]:
    """Every series name the writer, the daemon and the operator export."""
    names: set[str] = set()
    for registry in (operator_metrics.REGISTRY, Metrics().registry):
        # Labelled series have no samples yet: go by family name and type.
        for family in registry.collect():
            suffixes = SUFFIXES.get(family.type, [""])
            names.update(family.name + suffix for suffix in suffixes)
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads((CHART / "dashboards" / "deltaingest.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_queries_only_metrics_that_exist() -> None:
    used = {selector.metric for expr in dashboard_queries() for selector in selectors(expr)}
    assert used
    names = exported_metrics()
    assert used <= names, sorted(used - names)


def test_chart_crds_are_the_generated_ones() -> None:
    crds = {path.name for path in (CHART / "crds").iterdir()}
    assert crds == {"deltaingest.io_deltatableingests.yaml"}
    assert (CHART / "crds" / "deltaingest.io_deltatableingests.yaml").read_text() == (
        Path(ROOT / "crds" / "deltaingest.io_deltatableingests.yaml").read_text()
    )
