"""Two operator replicas with a Lease: the leader serves, the other takes over when it stops."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import kmock
import pytest

from deltaingest.devservers import free_port
from deltaingest.k8s.handlers import LeaderElection
from tests.kube import resource_path
from tests.operator import scenarios
from tests.operator.running import OperatorThread, kmock_operator_config
from tests.operator.scenarios import Cluster, until_child
from tests.operator.waiting import http_get

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def test_one_replica_serves_and_the_other_takes_over(
    k8s: kmock.KubernetesEmulator, no_operator: Cluster, lock_table: str
) -> None:
    cluster = no_operator
    k8s.resources["coordination.k8s.io/v1/leases"] = kmock.ResourceInfo(
        kind="Lease", namespaced=True, verbs={"get", "list", "watch", "create", "update", "patch"}
    )
    election = LeaderElection("deltaingest-operator", cluster.namespace, lease_seconds=3)
    base = dataclasses.replace(kmock_operator_config(k8s, ""), leader_election=election)
    health = free_port()
    active = OperatorThread(dataclasses.replace(base, image="img:active", identity="img:active"))
    standby = OperatorThread(
        dataclasses.replace(
            base, image="img:standby", identity="img:standby", liveness_port=health, bind="127.0.0.1"
        )
    )
    await active.start()  # the first to ask holds the Lease
    await standby.start(wait=False)  # a standby serves nothing until it holds it
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
        assert not standby.ready.is_set()
        # A standby is alive for the kubelet, or it would be restarted while it waits.
        assert (await asyncio.to_thread(http_get, f"http://127.0.0.1:{health}/healthz"))[0] == 200

        await active.stop()
        # The leader released the Lease as it stopped: the standby takes it at its next try and serves.
        assert await asyncio.to_thread(standby.ready.wait, 30)
        await until_child(cluster, table.name, "Deployment", lambda d: image_of(d) == "img:standby")
    finally:
        await active.stop()
        await standby.stop()


def image_of(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
