"""An operator the tests start and stop, on a thread and event loop of its own, as in a pod of its own.

kopf owns the loop it runs in: when it stops, it cancels the tasks started there after it and closes what
they held (a test's own API session among them), so the operator never shares the test's loop.
"""

from __future__ import annotations

import asyncio
import threading

import kmock

from deltaingest.k8s.handlers import OperatorConfig, run_operator


class OperatorThread:
    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(run_operator(config, stop_flag=self._stop, ready_flag=self.ready)),
            daemon=True,
        )

    async def start(self, *, wait: bool = True) -> None:
        """Start it and, with ``wait``, wait until it serves (a standby of a leader election does not)."""
        self._thread.start()
        if wait:
            assert await asyncio.to_thread(self.ready.wait, 60), "the operator did not start"

    async def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, 60)
        assert not self._thread.is_alive(), "the operator did not stop within 60 s"


def kmock_operator_config(k8s: kmock.KubernetesEmulator, image: str) -> OperatorConfig:
    """How the tests run an operator against kmock: no auth, a 1 s resync and retry, no ports."""
    return OperatorConfig(
        image=image,
        resync_seconds=1.0,
        retry_seconds=1.0,
        liveness_port=None,
        metrics_port=None,
        server=str(k8s.url),
    )
