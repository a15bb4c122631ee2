"""``deltaingest daemon``: the writer plus the compaction and vacuum loops in one process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from deltalake import DeltaTable

from deltaingest.config import Settings
from deltaingest.ingest.service import serve
from deltaingest.locking.factory import build_lock
from deltaingest.locking.lease import Lock, new_holder_id
from deltaingest.maintenance.compact import Compactor
from deltaingest.maintenance.report import RunReport
from deltaingest.maintenance.tables import Kept, kept_tables
from deltaingest.maintenance.vacuum import check_vacuum_policy, vacuum
from deltaingest.metrics import Metrics
from deltaingest.table.facts import active_files, summarize

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def run_daemon(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    metrics = Metrics()
    holder = new_holder_id()
    with contextlib.ExitStack() as locks:
        kept = []
        for table in kept_tables(settings):
            lock = build_lock(settings.locking, table.uri, scope="maintenance", holder=holder)
            locks.callback(lock.close)
            kept.append((table, lock))
        await serve(
            settings, stop=stop, metrics=metrics, background=maintenance_loops(settings, kept, metrics)
        )


def maintenance_loops(settings: Settings, kept: Sequence[tuple[Kept, Lock]], metrics: Metrics) -> list[Loop]:
    """The enabled loops, one per table and operation; each table under its own maintenance lease. An
    existing table's vacuum policy is checked before anything runs."""
    loops: list[Loop] = []
    compaction, retention = settings.compaction, settings.vacuum
    for table, lock in kept:
        # The table_* and last-success gauges are the table's; the dead-letter table's runs are logged and
        # count in the run metrics (a failure there shows in compaction_runs or vacuum_runs, result failed).
        gauges = None if table.dead_letters else metrics
        if compaction.enabled:
            compactor = Compactor(table.uri, table.options, table.compaction, lock=lock, metrics=metrics)
            loops.append(
                _every(compaction.interval_seconds, functools.partial(_compact_once, compactor, gauges))
            )
            if gauges is not None:
                _started(gauges, "compaction", compaction.interval_seconds)
        if retention.enabled:
            # A missing table is created by the writer; the runs check its policy then.
            if DeltaTable.is_deltatable(table.uri, storage_options=table.options):
                check_vacuum_policy(table.uri, table.options, table.vacuum)
            loops.append(
                _every(
                    retention.interval_seconds,
                    functools.partial(_vacuum_once, table, lock, metrics, gauges),
                )
            )
            if gauges is not None:
                _started(gauges, "vacuum", retention.interval_seconds)
    return loops


def _compact_once(compactor: Compactor, gauges: Metrics | None) -> None:
    report = compactor.run()
    _finished(gauges, "compaction", report)
    if gauges is None:
        return
    if report.status == "nothing-to-do":  # the files the run planned from are still the table's
        facts = report.totals["tableBefore"]
    else:
        table = DeltaTable(compactor.uri, storage_options=compactor.options)
        files = active_files(table)
        facts = summarize(table.version(), files, small_file_size=compactor.policy.small_file_size).as_dict()
    gauges.table_files.set(facts["files"])
    gauges.table_small_files.set(facts["smallFiles"])
    gauges.table_bytes.set(facts["bytes"])


def _vacuum_once(table: Kept, lock: Lock, metrics: Metrics, gauges: Metrics | None) -> None:
    _finished(gauges, "vacuum", vacuum(table.uri, table.options, table.vacuum, lock=lock, metrics=metrics))


def _started(metrics: Metrics, component: str, seconds: float) -> None:
    """The interval and a first "last success", so that an alert can tell a loop that never succeeds."""
    metrics.maintenance_interval.labels(component).set(seconds)
    metrics.maintenance_last_success.labels(component).set_to_current_time()


def _finished(gauges: Metrics | None, component: str, report: RunReport) -> None:
    """A run that did not fail moves the last success; ``skipped`` counts (another holder has the lease)."""
    _log(report)
    if gauges is not None and report.status != "failed":
        gauges.maintenance_last_success.labels(component).set_to_current_time()


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
