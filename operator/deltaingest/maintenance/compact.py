"""Compaction: plan from the table's active files, rewrite with delta-rs, all under the maintenance lease.

delta-rs commits compaction with ``dataChange=false`` and resolves conflicts with concurrent appends by
retrying at the next version, so writers are never blocked and never fail because of it. When a run still
loses every retry (a very busy table), the partition is planned again from the newer version.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import CommitProperties

from deltaingest.config import CompactionSpec
from deltaingest.locking.lease import Lease, Lock, check_lease
from deltaingest.maintenance.planner import (
    PartitionPlan,
    compression_ratio,
    describe,
    partition_filters,
    plan_compaction,
)
from deltaingest.maintenance.report import RunReport, commit_metadata, run_exclusive
from deltaingest.metrics import Metrics
from deltaingest.table.facts import active_files, summarize
from deltaingest.table.hot import NO_HOOKS

log = logging.getLogger(__name__)

_MAX_SKIPPED_ITEMS = 50  # a report lists at most this many skipped partitions
_HISTORY = 200  # commits searched for earlier compactions (their compression ratio)
_REMEMBERED = 20  # a Compactor's own runs that make its compression estimate


class CompactionFailed(RuntimeError):
    """A partition could not be committed after every attempt; the table is unchanged for it."""


def compact(
    uri: str,
    options: dict[str, str],
    policy: CompactionSpec,
    *,
    lock: Lock,
    force: bool = False,
    now: float | None = None,
    compression: float | None = None,
    metrics: Metrics | None = None,
) -> RunReport:
    """One compaction run. Never raises for a failed run: the report says ``failed`` and why.

    ``compression`` (output bytes per input byte) defaults to what the table's recent history shows.
    """
    return run_exclusive(
        "compact",
        uri,
        lock,
        lambda report, lease: _compact(
            report, uri, options, policy, lease=lease, force=force, now=now, compression=compression
        ),
        metrics=metrics,
    )


class Compactor:
    """Compaction runs of one table again and again (the daemon's loop, the benchmark).

    Remembers what its own runs read and wrote: on a busy table the last commits seldom include a
    compaction, so the history alone would often leave the compression unknown.
    """

    def __init__(
        self,
        uri: str,
        options: dict[str, str],
        policy: CompactionSpec,
        *,
        lock: Lock,
        metrics: Metrics | None = None,
    ) -> None:
        self.uri, self.options, self.policy = uri, options, policy
        self._lock, self._metrics = lock, metrics
        self._recent: deque[tuple[int, int]] = deque(maxlen=_REMEMBERED)

    def run(self, *, force: bool = False) -> RunReport:
        known = compression_ratio(self._recent) if self._recent else None
        report = compact(
            self.uri,
            self.options,
            self.policy,
            lock=self._lock,
            force=force,
            compression=known,
            metrics=self._metrics,
        )
        if report.totals.get("bytesRead"):
            self._recent.append((report.totals["bytesRead"], report.totals["bytesWritten"]))
        return report


def _compact(
    report: RunReport,
    uri: str,
    options: dict[str, str],
    policy: CompactionSpec,
    *,
    lease: Lease,
    force: bool,
    now: float | None,
    compression: float | None,
) -> None:
    table = DeltaTable(uri, storage_options=options)
    report.version_before = table.version()
    if compression is None:
        compression = compression_ratio(_past_compactions(table))
    files = active_files(table)
    before = summarize(report.version_before, files, small_file_size=policy.small_file_size)
    plan = plan_compaction(
        files,
        policy,
        now=time.time() if now is None else now,
        force=force,
        compression=compression,
    )
    metadata = commit_metadata(lease)
    totals = {"partitions": 0, "filesRemoved": 0, "filesAdded": 0, "bytesRead": 0, "bytesWritten": 0}
    for part in plan.partitions:
        check_lease(lease)
        result = _run_partition(table, part, policy, metadata)
        removed, added = _file_stats(result, "filesRemoved"), _file_stats(result, "filesAdded")
        counts = {
            "filesRemoved": int(result.get("numFilesRemoved", 0)),
            "filesAdded": int(result.get("numFilesAdded", 0)),
            "bytesRead": int(removed.get("totalSize", 0)),
            "bytesWritten": int(added.get("totalSize", 0)),
        }
        for key, value in counts.items():
            totals[key] += value
        totals["partitions"] += 1 if counts["filesRemoved"] else 0
        item = {
            "partition": describe(part.partition),
            "reason": part.reason,
            "targetSize": part.target_size,
            **counts,
        }
        report.items.append(item)
        log.info("compacted %s (%s): %s", describe(part.partition), part.reason, counts)
    for skipped in plan.skipped[:_MAX_SKIPPED_ITEMS]:
        report.items.append({"partition": describe(skipped.partition), "skipped": skipped.reason})
    report.totals = {
        **totals,
        "partitionsSkipped": len(plan.skipped),
        "compression": round(compression, 3),
        "tableBefore": before.as_dict(),  # the facts planned from, current when nothing was compacted
    }
    table.update_incremental()
    report.version_after = table.version()
    if totals["filesRemoved"]:
        report.status = "done"
    elif len(plan.skipped) == 1:
        report.reason = plan.skipped[0].reason
    elif plan.skipped:
        report.reason = f"no partition met a trigger ({len(plan.skipped)} partitions)"
    else:
        report.reason = "the table has no files"


def _run_partition(
    table: DeltaTable, part: PartitionPlan, policy: CompactionSpec, metadata: dict[str, str]
) -> dict[str, Any]:
    filters = partition_filters(part.partition) or None
    for attempt in range(1, policy.attempts + 1):
        properties = CommitProperties(custom_metadata=metadata)
        try:
            if policy.z_order_by:
                return table.optimize.z_order(
                    policy.z_order_by,
                    partition_filters=filters,
                    target_size=policy.target_file_size,
                    commit_properties=properties,
                    post_commithook_properties=NO_HOOKS,
                )
            return table.optimize.compact(
                partition_filters=filters,
                target_size=part.target_size,
                commit_properties=properties,
                post_commithook_properties=NO_HOOKS,
            )
        except CommitFailedError as err:
            if attempt == policy.attempts:
                raise CompactionFailed(
                    f"{describe(part.partition)}: no commit after {attempt} attempts: {err}"
                ) from err
            log.warning(
                "compaction of %s lost its commit (%s); running it again on the newer version",
                describe(part.partition),
                err,
            )
            table.update_incremental()
    raise AssertionError("unreachable")


def _past_compactions(table: DeltaTable) -> list[tuple[int, int]]:
    """(bytes read, bytes written) of the OPTIMIZE commits among the last ``_HISTORY`` commits."""
    found = []
    for commit in table.history(_HISTORY):
        metrics = commit.get("operationMetrics") or {}
        if commit.get("operation") == "OPTIMIZE" and metrics:
            found.append((_file_stats(metrics, "filesRemoved").get("totalSize", 0),
                          _file_stats(metrics, "filesAdded").get("totalSize", 0)))  # fmt: skip
    return found


def _file_stats(result: dict[str, Any], key: str) -> dict[str, Any]:
    value = result.get(key) or {}
    return json.loads(value) if isinstance(value, str) else dict(value)
