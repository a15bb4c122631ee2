"""A real Prometheus scrapes a live writer, a live ``deltaingest daemon`` and the operator (against kmock,
with a DeltaTableIngest on SeaweedFS and moto), loads the chart's rendered alerts, and answers every dashboard
panel's and every alert's PromQL through its HTTP API: each metric they read has series there."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio
import yaml

from deltaingest.devservers import free_port
from tests.chart.test_alerts import KUBE_STATE_METRICS, alerts, rule_object, rules_file
from tests.chart.test_chart import dashboard_queries
from tests.helpers import WriterProcess, event, get_quiet, ndjson, post, settings_file
from tests.operator import scenarios
from tests.operator.running import OperatorThread, kmock_operator_config
from tests.operator.scenarios import Cluster
from tests.promql import selectors
from tests.tools import prometheus

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


class PrometheusServer:
    """``prometheus`` on loopback, with the test's config and storage directory, scraping every second."""

    def __init__(self, directory: Path, scrape_configs: list[dict[str, Any]], rule_file: Path) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rule_file)],
            "scrape_configs": scrape_configs,
        }
        config_path = directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = directory / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    prometheus(),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str, **params: str) -> Any:
        """The ``data`` of an API answer; an error answer raises, with Prometheus' message."""
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as err:
            body = json.loads(err.read())
        if body["status"] != "success":
            raise ValueError(body.get("error"))
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=expr)["result"]
        return result

    def ready(self) -> bool:
        return get_quiet(f"http://127.0.0.1:{self.port}/-/ready") == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest_asyncio.fixture
async def operator_with_metrics(k8s: kmock.KubernetesEmulator) -> AsyncIterator[int]:
    """The operator as in the other kmock tests, with its metrics port on loopback (the port)."""
    port = free_port()
    config = dataclasses.replace(
        kmock_operator_config(k8s, "deltaingest:test"), metrics_port=port, bind="127.0.0.1"
    )
    operator = OperatorThread(config)
    await operator.start()
    yield port
    await operator.stop()


def problems(server: PrometheusServer, rules: list[str], table: str) -> list[str]:
    """What is not (yet) as it should be; empty when every query, rule and label checks out."""
    found: list[str] = []
    panels = dashboard_queries()
    for expr in [*panels, *rules]:
        try:
            result = server.query(expr)
        except ValueError as err:
            found.append(f"{expr}: {err}")
            continue
        if expr in panels and not result:  # an alert's answer is empty unless it fires
            found.append(f"panel {expr!r}: no series")
    for selector in {s for expr in [*panels, *rules] for s in selectors(expr)}:
        if selector.metric in KUBE_STATE_METRICS:
            continue
        series = server.query(selector.metric)
        if not series:
            found.append(f"{selector.metric}: no series")
        for label in selector.labels:
            if series and not any(label in item["metric"] for item in series):
                found.append(f"{selector.metric}: no series has the label {label!r}")
    for group in server.get("/api/v1/rules")["groups"]:
        for rule in group["rules"]:
            if rule["health"] != "ok":
                found.append(f"rule {rule['name']}: {rule['health']} {rule.get('lastError', '')}")
    # kmock runs no Deployment controller: the table's writers never get ready, and the alert is pending.
    pending = [
        alert["labels"]
        for alert in server.get("/api/v1/alerts")["alerts"]
        if alert["labels"]["alertname"] == "DeltaIngestWritersDown" and alert["state"] == "pending"
    ]
    expected = {"alertname": "DeltaIngestWritersDown", "severity": "critical", "namespace": "tables"}
    if pending != [{**expected, "name": table}]:
        found.append(f"DeltaIngestWritersDown pending for {pending}, not for tables/{table}")
    return found


async def test_prometheus_answers_every_panel_and_alert_from_live_processes(
    no_operator: Cluster,
    operator_with_metrics: int,
    lock_table: str,
    tmp_path: Path,
    writers: list[WriterProcess],
) -> None:
    cluster = no_operator
    table = await scenarios.create(cluster, lock_table=lock_table)
    await scenarios.until_resource(cluster, table.name, scenarios.has_condition("TableReachable"))

    env = {**cluster.seaweed.env(), **cluster.moto.env()}
    config = settings_file(
        tmp_path,
        locking={"kind": "dynamodb", "tableName": f"{lock_table}-processes"},
        compaction={"intervalSeconds": 1},
        vacuum={"intervalSeconds": 1},
    )
    for command in ("writer", "daemon"):
        uri = f"s3://{cluster.seaweed.bucket}/monitoring-{uuid.uuid4().hex[:8]}"
        process = await asyncio.to_thread(WriterProcess, uri, config, env, tmp_path, command=command)
        writers.append(process)
        response = await asyncio.to_thread(post, process.ingest_url, ndjson([event(1), event(2)]))
        assert response.status == 200, response.body
    writer, daemon = writers

    # The labels the chart's PodMonitor gives: the operator's own namespace and name labels win
    # (honorLabels); a writer pod's series get its DeltaTableIngest's name.
    def target(port: int, **labels: str) -> dict[str, Any]:
        return {"targets": [f"127.0.0.1:{port}"], "labels": labels}

    scrape_configs = [
        {
            "job_name": "deltaingest",
            "honor_labels": True,
            "static_configs": [
                target(operator_with_metrics, namespace="deltaingest", pod="deltaingest-operator-0"),
                target(writer.metrics_port, namespace="tables", pod="events-writer-0", name="events"),
                target(daemon.metrics_port, namespace="tables", pod="daemon-0", name="daemon"),
            ],
        }
    ]
    rule = rule_object()
    rules = [item["expr"] for item in alerts(rule)]
    server = PrometheusServer(tmp_path, scrape_configs, rules_file(tmp_path, rule))
    try:
        deadline = time.monotonic() + 120
        while not await asyncio.to_thread(server.ready):
            assert server.process.poll() is None and time.monotonic() < deadline, server.log()
            await asyncio.sleep(0.2)
        # Rates need two scrapes, the daemon's run counters a first run, the rules a first evaluation.
        while (found := await asyncio.to_thread(problems, server, rules, table.name)) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.5)
        assert found == [], found
        operator_down = await asyncio.to_thread(server.query, "ALERTS{alertname='DeltaIngestOperatorDown'}")
        assert operator_down == []
    finally:
        server.stop()
