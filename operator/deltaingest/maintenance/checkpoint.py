"""Checkpoints and expired-log cleanup in a background thread, every N versions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from deltalake import DeltaTable

from deltaingest.metrics import Metrics

log = logging.getLogger(__name__)


def checkpoint_due(*, last: int, latest: int, every: int) -> bool:
    """A checkpoint is due once ``latest`` has crossed a multiple of ``every`` that ``last`` had not.

    Aligning to multiples means replicas that commit to the same table pick the same boundaries.
    """
    return latest // every > last // every


class Checkpointer:
    """Writes a checkpoint when the table crosses a multiple of ``every`` versions, then offers a table
    loaded from that checkpoint to ``on_fresh``. Failures are logged and counted; the next boundary retries.
    """

    def __init__(
        self,
        *,
        uri: str,
        options: dict[str, str],
        every: int,
        start_version: int,
        on_fresh: Callable[[DeltaTable], None],
        metrics: Metrics,
    ) -> None:
        self._uri, self._options, self._every = uri, options, every
        self._on_fresh = on_fresh
        self._metrics = metrics
        # Tables with history get a checkpoint soon after start, so the hot table's log stays short.
        self._last = start_version - every if start_version > 0 else 0
        self._latest = start_version
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)
        self._thread.start()

    def committed(self, version: int) -> None:
        """Non-blocking: note a committed version; the thread decides whether a checkpoint is due."""
        with self._wake:
            if version > self._latest:
                self._latest = version
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(
                    lambda: (
                        self._stopping
                        or checkpoint_due(last=self._last, latest=self._latest, every=self._every)
                    )
                )
                if self._stopping:
                    return
                version = self._latest
            self._checkpoint(version)
            self._last = version

    def _checkpoint(self, version: int) -> None:
        started = time.perf_counter()
        try:
            table = DeltaTable(self._uri, storage_options=self._options, version=version)
            table.create_checkpoint()
            table.cleanup_metadata()
            self._on_fresh(DeltaTable(self._uri, storage_options=self._options))
        except Exception:
            self._metrics.checkpoints.labels("failure").inc()
            log.exception("checkpoint at version %d failed; will retry at the next boundary", version)
            return
        self._metrics.checkpoints.labels("success").inc()
        self._metrics.checkpoint_duration.observe(time.perf_counter() - started)
        log.debug("checkpoint at version %d", version)

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=60)
