"""`deltaingest operator` as a process: kubeconfig login, liveness and metrics endpoints, clean SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import kmock
import pytest
import yaml

from deltaingest.devservers import MotoDynamoDB, SeaweedFS, free_port
from tests.kube import KubeAPI
from tests.operator import scenarios
from tests.operator.scenarios import Cluster, has_condition, until_child, until_resource
from tests.operator.waiting import eventually, http_get

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "not-checked"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
                "current-context": "kmock",
            }
        )
    )
    return path


async def test_operator_command(
    k8s: kmock.KubernetesEmulator, tmp_path: Path, seaweed: SeaweedFS, moto: MotoDynamoDB, lock_table: str
) -> None:
    """Logs in through a kubeconfig, as on a laptop; the table's version reaches the metrics."""
    liveness, metrics = free_port(), free_port()
    command = [
        sys.executable, "-m", "deltaingest", "operator", "--all-namespaces", "--image", "img:cli",
        "--liveness-port", str(liveness), "--metrics-port", str(metrics), "--bind", "127.0.0.1",
        "--resync-seconds", "1",
    ]  # fmt: skip
    env = {"KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", str(k8s.url))), "PATH": "/usr/bin:/bin"}
    log = (tmp_path / "operator.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        api = await KubeAPI.connect(str(k8s.url))
        cluster = Cluster(api, "tables", seaweed, moto, fake_controller=True, bump_generation=True)
        table = await scenarios.create(cluster, lock_table=lock_table)
        deployment = await until_child(cluster, table.name, "Deployment")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "img:cli"
        await until_resource(cluster, table.name, has_condition("TableReachable"))

        async def alive() -> bool:
            return (await asyncio.to_thread(http_get, f"http://127.0.0.1:{liveness}/healthz"))[0] == 200

        await eventually(alive)

        async def scraped() -> str | None:
            status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{metrics}/metrics")
            return body if status == 200 and "deltaingest_operator_table_version{" in body else None

        body = await eventually(scraped)
        assert f'deltaingest_operator_table_version{{name="{table.name}",namespace="tables"}} 1.0' in body
        assert 'deltaingest_operator_reconciles_total{result="ok"}' in body
        await api.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code: int | None = await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            code = None
        process.kill()
        log.close()
    assert code == 0, (tmp_path / "operator.log").read_text()
