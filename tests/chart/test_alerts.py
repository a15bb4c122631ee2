"""The chart's PrometheusRule: a valid object, rules that promtool accepts, and promtool unit tests in which
every alert fires and does not fire (tests/chart/alert_tests.yaml). The real Prometheus evaluating them
against live processes is tests/operator/test_monitoring.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.chart.test_chart import by_kind, exported_metrics, render
from tests.crd_validation import validate
from tests.promql import selectors
from tests.tools import ROOT, promtool

ENABLED = ["--set=prometheusRule.enabled=true"]
UNIT_TESTS = ROOT / "tests" / "chart" / "alert_tests.yaml"
DOCS = ROOT / "docs" / "operator.md"
# Series the project cannot know itself, read from kube-state-metrics (the runbook says which alert needs it).
KUBE_STATE_METRICS = {
    "kube_cronjob_created",
    "kube_cronjob_next_schedule_time",
    "kube_cronjob_spec_suspend",
    "kube_cronjob_status_last_schedule_time",
    "kube_cronjob_status_last_successful_time",
}

_DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
# The PrometheusRule schema of the Prometheus Operator's CRD (monitoring.coreos.com_prometheusrules.yaml,
# operator 0.82), restated for the fields it has; unknown fields are refused (kubectl --validate=strict).
PROMETHEUS_RULE_CRD = {
    "spec": {
        "versions": [
            {
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "required": ["spec"],
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "groups": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["name"],
                                            "properties": {
                                                "name": {"type": "string", "minLength": 1},
                                                "interval": {"type": "string", "pattern": _DURATION},
                                                "query_offset": {"type": "string", "pattern": _DURATION},
                                                "labels": _STRINGS,
                                                "limit": {"type": "integer"},
                                                "partial_response_strategy": {"type": "string"},
                                                "rules": {
                                                    "type": "array",
                                                    "items": {
                                                        "type": "object",
                                                        "required": ["expr"],
                                                        "properties": {
                                                            "alert": {"type": "string"},
                                                            "record": {"type": "string"},
                                                            "expr": {"x-kubernetes-int-or-string": True},
                                                            "for": {"type": "string", "pattern": _DURATION},
                                                            "keep_firing_for": {
                                                                "type": "string",
                                                                "minLength": 1,
                                                                "pattern": _DURATION,
                                                            },
                                                            "labels": _STRINGS,
                                                            "annotations": _STRINGS,
                                                        },
                                                    },
                                                },
                                            },
                                        },
                                    }
                                },
                            },
                        },
                    }
                }
            }
        ]
    }
}


def rule_object(*extra: str) -> dict[str, Any]:
    (rule,) = by_kind(render([*ENABLED, *extra]), "PrometheusRule")
    return rule


def alerts(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for group in rule["spec"]["groups"] for item in group["rules"]]


def rules_file(directory: Path, rule: dict[str, Any]) -> Path:
    """The rules as a Prometheus rule file: what the Prometheus Operator writes from the object."""
    path = directory / "deltaingest-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def test_off_by_default() -> None:
    assert by_kind(render([]), "PrometheusRule") == []


def test_the_rule_is_a_valid_prometheus_rule() -> None:
    rule = rule_object("--set=prometheusRule.labels.release=kube-prometheus-stack")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["namespace"] == "ops"
    assert validate(PROMETHEUS_RULE_CRD, rule) == []
    # The schema check itself refuses what the CRD refuses.
    broken = yaml.safe_load(yaml.safe_dump(rule))
    broken["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    broken["spec"]["groups"][0]["rules"][1]["severity"] = "page"
    errors = validate(PROMETHEUS_RULE_CRD, broken)
    assert len(errors) == 2, errors


def test_promtool_checks_the_rendered_rules(tmp_path: Path) -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(rules_file(tmp_path, rule_object()))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(rule_object()))} rules found" in result.stdout


def test_promtool_unit_tests_fire_and_do_not_fire_each_alert(tmp_path: Path) -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(rules_file(tmp_path, rule_object()))]
    path = tmp_path / "alert_tests.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

    cases = [case for group in tests["tests"] for case in group["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    names = {item["alert"] for item in alerts(rule_object())}
    assert fired == names, names ^ fired
    assert silent == names, names ^ silent


def test_thresholds_come_from_the_values() -> None:
    rule = rule_object(
        "--set=prometheusRule.thresholds.ackLatencyP99Seconds=2",
        "--set=prometheusRule.thresholds.maintenanceOverdueRuns=5",
    )
    exprs = {item["alert"]: item["expr"] for item in alerts(rule)}
    assert exprs["DeltaIngestAckLatencyHigh"].endswith("> 2")
    assert "> 5 * maintenance_interval_seconds" in exprs["DeltaIngestDaemonMaintenanceOverdue"]
    assert "> 5 * max by (namespace, cronjob)" in exprs["DeltaIngestMaintenanceOverdue"]


def test_every_alert_links_to_its_runbook_section() -> None:
    headings = re.findall(r"^### (DeltaIngest\w+)$", DOCS.read_text(), flags=re.M)
    rule = rule_object("--set=prometheusRule.runbookUrl=https://wiki.example.com/deltaingest")
    names = [item["alert"] for item in alerts(rule)]
    assert sorted(headings) == sorted(names)
    for item in alerts(rule):
        assert (
            item["annotations"]["runbook_url"]
            == f"https://wiki.example.com/deltaingest#{item['alert'].lower()}"
        )
        assert item["labels"]["severity"] in ("critical", "warning")


def test_alerts_read_only_metrics_that_are_exported() -> None:
    used = {s.metric for item in alerts(rule_object()) for s in selectors(item["expr"])}
    exported = exported_metrics()
    assert used - KUBE_STATE_METRICS <= exported, sorted(used - KUBE_STATE_METRICS - exported)
    assert used >= KUBE_STATE_METRICS  # the list names only what an alert reads
