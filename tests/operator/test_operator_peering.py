"""Two operator replicas with kopf peering: the higher priority serves, the other takes over when it stops."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import kmock
import kopf
import pytest

from deltaingest.k8s.api import KubeAPI
from deltaingest.k8s.handlers import OperatorConfig, run_operator
from tests.operator import scenarios
from tests.operator.scenarios import Cluster, until_child

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def test_one_replica_serves_and_the_other_takes_over(
    k8s: kmock.KubernetesEmulator, no_operator: Cluster, lock_table: str
) -> None:
    cluster = no_operator
    k8s.resources["kopf.dev/v1/clusterkopfpeerings"] = kmock.ResourceInfo(
        kind="ClusterKopfPeering", namespaced=False, verbs={"get", "list", "watch", "patch", "create"}
    )
    api = KubeAPI(kopf.ConnectionInfo(server=str(k8s.url)))
    await api.request(
        "POST",
        "/apis/kopf.dev/v1/clusterkopfpeerings",
        body={"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "ha"}},
    )
    base = OperatorConfig(
        image="", resync_seconds=1.0, liveness_port=None, metrics_port=None, server=str(k8s.url), peering="ha"
    )
    # One event loop per operator, as in two pods: kopf cancels every task started in its loop after its
    # own start, so two operators in one loop would stop each other.
    threads, stops = [], []
    for image, priority in (("img:active", 200), ("img:standby", 100)):
        stop, ready = threading.Event(), threading.Event()
        config = dataclasses.replace(base, image=image, priority=priority)
        thread = threading.Thread(
            target=lambda config=config, stop=stop, ready=ready: asyncio.run(
                run_operator(config, stop_flag=stop, ready_flag=ready)
            ),
            daemon=True,
        )
        thread.start()
        threads.append(thread)
        stops.append(stop)
        assert await asyncio.to_thread(ready.wait, 30)
    try:
        table = await scenarios.create(cluster, lock_table=lock_table)
        deployment = await until_child(cluster, table.name, "Deployment")
        assert image_of(deployment) == "img:active"
        await asyncio.sleep(3)  # several resyncs: the standby must not fight over the children
        assert image_of(await until_child(cluster, table.name, "Deployment")) == "img:active"

        stops[0].set()
        await asyncio.to_thread(threads[0].join, 60)
        assert not threads[0].is_alive()
        await until_child(cluster, table.name, "Deployment", lambda d: image_of(d) == "img:standby")
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 60)
        await api.close()


def image_of(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
