"""`deltaingest operator` logs in to a TLS API server through each kind of kubeconfig and does its work.

Issue 11: with a kubeconfig carrying inline base64 certificates (kind, k3d, EKS) every reconcile failed in
the operator's own client, while kopf's watches worked. Only the operator talks to ``secure_k8s``; the test
creates the resource and reads the results on kmock's plain port.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest

from deltaingest.k8s.spec import API_VERSION, KIND, PLURAL
from tests.operator.tls import CLIENT_USER, Auth, Login, SecureAPI, write_kubeconfig
from tests.operator.waiting import eventually

pytestmark = pytest.mark.asyncio

NAMESPACE = "tables"


@contextlib.asynccontextmanager
async def operator_process(kubeconfig: Path, log_path: Path) -> AsyncIterator[None]:
    """The operator as a process logging in with ``kubeconfig``."""
    command = [
        sys.executable, "-m", "deltaingest", "operator", "--all-namespaces", "--image", "img:login",
        "--liveness-port", "0", "--metrics-port", "0", "--resync-seconds", "1",
    ]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}, stdout=log, stderr=log
        )
    try:
        yield
    finally:
        # Killed: the clean SIGTERM exit is test_operator_cli's to check, and kopf winds down for seconds.
        process.kill()
        await asyncio.to_thread(process.wait)
        # pytest shows this only for a failing test: the operator's side of the failure.
        print(log_path.read_text())


async def get(k8s: kmock.KubernetesEmulator, path: str) -> dict[str, Any] | None:
    async with k8s.get(path) as response:
        return await response.json() if response.status == 200 else None


@pytest.mark.parametrize(
    ("login", "auth"),
    [
        ("inline", "client-certificate"),
        ("files", "client-certificate"),
        ("token", "token"),
        # Beyond issue 11's three shapes: EKS's exec credential plugin, which kopf's own kubeconfig login
        # does not run (a client library's login does).
        ("exec", "token"),
    ],
)
async def test_operator_logs_in_and_reconciles(
    k8s: kmock.KubernetesEmulator, secure_k8s: SecureAPI, tmp_path: Path, login: Login, auth: Auth
) -> None:
    """The operator creates the children and writes the status there, logged in as the kubeconfig says."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    collection = f"/apis/{API_VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        # What a real API server would set and kmock does not.
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "resourceVersion": "1",
        },
        # No such Secret: the reconcile reads it through the operator's client and reports it missing,
        # without reaching for any store.
        "spec": {"table": {"uri": "s3://tables/login"}, "storage": {"credentials": {"secretName": "absent"}}},
    }
    async with k8s.post(collection, json=manifest) as response:
        assert response.ok, await response.text()
    deployments = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"

    async def deployment() -> dict[str, Any] | None:
        return await get(k8s, f"{deployments}/{name}-writer")

    async def reported() -> dict[str, Any] | None:
        body = await get(k8s, f"{collection}/{name}")
        conditions = {c["type"]: c for c in ((body or {}).get("status") or {}).get("conditions") or []}
        return conditions.get("TableReachable")

    async with operator_process(write_kubeconfig(tmp_path, secure_k8s, login), tmp_path / "operator.log"):
        created = await eventually(deployment)
        assert created["spec"]["template"]["spec"]["containers"][0]["image"] == "img:login"
        table = await eventually(reported)
        assert (table["status"], table["reason"]) == ("False", "SecretMissing")

    assert {seen.auth for seen in secure_k8s.seen} == {auth}
    if auth == "client-certificate":
        assert {seen.user for seen in secure_k8s.seen} == {CLIENT_USER}
    # The child came through the TLS endpoint, written by the operator's own client.
    assert any(seen.method != "GET" and seen.path.startswith(deployments) for seen in secure_k8s.seen)
