"""``deltaingest daemon``: the writer plus the compaction and vacuum loops in one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from deltalake import DeltaTable

from deltaingest.config import Settings
from deltaingest.ingest.service import serve
from deltaingest.locking.factory import build_lock
from deltaingest.locking.lease import Lock, new_holder_id
from deltaingest.maintenance.compact import Compactor
from deltaingest.maintenance.report import RunReport
from deltaingest.maintenance.vacuum import check_vacuum_policy, vacuum
from deltaingest.metrics import Metrics
from deltaingest.table.facts import active_files, summarize
from deltaingest.table.hot import locate

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def run_daemon(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    uri, options = locate(settings)
    metrics = Metrics()
    lock = build_lock(settings.locking, uri, scope="maintenance", holder=new_holder_id())
    try:
        await serve(
            settings,
            stop=stop,
            metrics=metrics,
            background=maintenance_loops(settings, uri, options, lock, metrics),
        )
    finally:
        lock.close()


def maintenance_loops(
    settings: Settings, uri: str, options: dict[str, str], lock: Lock, metrics: Metrics
) -> list[Loop]:
    """The enabled loops. An existing table's vacuum policy is checked before anything runs."""
    loops: list[Loop] = []
    compaction, retention = settings.compaction, settings.vacuum
    compactor = Compactor(uri, options, compaction, lock=lock, metrics=metrics)

    def compact_once() -> None:
        report = compactor.run()
        _finished(metrics, "compaction", report)
        if report.status == "nothing-to-do":  # the files the run planned from are still the table's
            facts = report.totals["tableBefore"]
        else:
            table = DeltaTable(uri, storage_options=options)
            files = active_files(table)
            facts = summarize(table.version(), files, small_file_size=compaction.small_file_size).as_dict()
        metrics.table_files.set(facts["files"])
        metrics.table_small_files.set(facts["smallFiles"])
        metrics.table_bytes.set(facts["bytes"])

    def vacuum_once() -> None:
        _finished(metrics, "vacuum", vacuum(uri, options, retention, lock=lock, metrics=metrics))

    if compaction.enabled:
        loops.append(_every(compaction.interval_seconds, compact_once))
        _started(metrics, "compaction", compaction.interval_seconds)
    if retention.enabled:
        if DeltaTable.is_deltatable(uri, storage_options=options):  # else the writer creates it; runs check
            check_vacuum_policy(uri, options, retention)
        loops.append(_every(retention.interval_seconds, vacuum_once))
        _started(metrics, "vacuum", retention.interval_seconds)
    return loops


def _started(metrics: Metrics, component: str, seconds: float) -> None:
    """The interval and a first "last success", so that an alert can tell a loop that never succeeds."""
    metrics.maintenance_interval.labels(component).set(seconds)
    metrics.maintenance_last_success.labels(component).set_to_current_time()


def _finished(metrics: Metrics, component: str, report: RunReport) -> None:
    """A run that did not fail moves the last success; ``skipped`` counts (another holder has the lease)."""
    _log(report)
    if report.status != "failed":
        metrics.maintenance_last_success.labels(component).set_to_current_time()


def _every(seconds: float, run: Callable[[], None]) -> Loop:
    async def loop(stop: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), timeout=seconds)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(run)
            except Exception:  # a failed run is logged; the next interval tries again
                log.exception("maintenance run failed")

    return loop


def _log(report: RunReport) -> None:
    level = logging.WARNING if report.status == "failed" else logging.INFO
    if report.status in ("done", "failed"):
        log.log(level, "%s", report.summary())
    else:
        log.debug("%s", report.summary())
