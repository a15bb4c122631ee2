"""Two operator replicas with a Lease: the leader serves, the other takes over when it stops."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import kmock
import pytest

from deltaingest.k8s.handlers import LeaderElection, OperatorConfig, run_operator
from tests.kube import resource_path
from tests.operator import scenarios
from tests.operator.scenarios import Cluster, until_child

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def test_one_replica_serves_and_the_other_takes_over(
    k8s: kmock.KubernetesEmulator, no_operator: Cluster, lock_table: str
) -> None:
    cluster = no_operator
    k8s.resources["coordination.k8s.io/v1/leases"] = kmock.ResourceInfo(
        kind="Lease", namespaced=True, verbs={"get", "list", "watch", "create", "update", "patch"}
    )
    election = LeaderElection("deltaingest-operator", cluster.namespace, lease_seconds=3)
    base = OperatorConfig(
        image="",
        resync_seconds=1.0,
        liveness_port=None,
        metrics_port=None,
        server=str(k8s.url),
        leader_election=election,
    )
    # One event loop per operator, as in two pods: kopf cancels every task started in its loop after its
    # own start, so two operators in one loop would stop each other.
    threads, stops, readies = [], [], []
    for image in ("img:active", "img:standby"):
        stop, ready = threading.Event(), threading.Event()
        config = dataclasses.replace(base, image=image, identity=image)
        thread = threading.Thread(
            target=lambda config=config, stop=stop, ready=ready: asyncio.run(
                run_operator(config, stop_flag=stop, ready_flag=ready)
            ),
            daemon=True,
        )
        thread.start()
        threads.append(thread)
        stops.append(stop)
        readies.append(ready)
        if image == "img:active":  # the first to ask holds the Lease; the standby serves nothing yet
            assert await asyncio.to_thread(ready.wait, 30)
    try:
        lease = await cluster.api.get(
            resource_path("coordination.k8s.io/v1", "leases", namespace=cluster.namespace, name=election.name)
        )
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "img:active"
        table = await scenarios.create(cluster, lock_table=lock_table)
        deployment = await until_child(cluster, table.name, "Deployment")
        assert image_of(deployment) == "img:active"
        await asyncio.sleep(3)  # several resyncs: the standby must not fight over the children
        assert image_of(await until_child(cluster, table.name, "Deployment")) == "img:active"
        assert not readies[1].is_set()

        stops[0].set()
        await asyncio.to_thread(threads[0].join, 60)
        assert not threads[0].is_alive()
        # The Lease is not renewed any more: the standby takes it within a lease and serves.
        assert await asyncio.to_thread(readies[1].wait, 30)
        await until_child(cluster, table.name, "Deployment", lambda d: image_of(d) == "img:standby")
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 60)


def image_of(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
