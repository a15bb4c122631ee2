"""The report every maintenance run returns (printed as JSON or a few lines, mapped to exit codes), and the
maintenance lease around each run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from deltaingest.locking.lease import Lease, Lock, held_if_free
from deltaingest.metrics import Metrics

log = logging.getLogger(__name__)

MAINTAINER_KEY = "deltaingest.maintainer"
MAINTENANCE_TOKEN_KEY = "deltaingest.maintenanceToken"

Status = Literal["done", "nothing-to-do", "skipped", "failed"]


@dataclass
class RunReport:
    """What one ``compact`` or ``vacuum`` run did, or why it did nothing.

    ``skipped`` means another process holds the maintenance lease: a normal outcome for a CronJob that
    overlaps a daemon, so it exits 0 like ``done`` and ``nothing-to-do``; only ``failed`` exits 1.
    """

    operation: Literal["compact", "vacuum"]
    table: str
    status: Status = "nothing-to-do"
    reason: str | None = None
    version_before: int | None = None
    version_after: int | None = None
    duration_seconds: float = 0.0
    totals: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "table": self.table,
            "status": self.status,
            "reason": self.reason,
            "versionBefore": self.version_before,
            "versionAfter": self.version_after,
            "durationSeconds": round(self.duration_seconds, 3),
            **self.totals,
            "items": self.items,
        }

    def summary(self) -> str:
        head = f"{self.operation} {self.table}: {self.status}"
        if self.reason:
            head += f" ({self.reason})"
        lines = [head]
        if self.version_before is not None:
            lines.append(
                f"  version {self.version_before} -> {self.version_after}, {self.duration_seconds:.2f}s"
            )
        lines.extend(f"  {key}: {value}" for key, value in self.totals.items())
        return "\n".join(lines)


def commit_metadata(lease: Lease) -> dict[str, str]:
    """What every maintenance commit records in its ``commitInfo``: who ran it, under which lease token."""
    metadata = {MAINTAINER_KEY: lease.holder}
    if lease.token is not None:
        metadata[MAINTENANCE_TOKEN_KEY] = str(lease.token)
    return metadata


def run_exclusive(
    operation: Literal["compact", "vacuum"],
    uri: str,
    lock: Lock,
    body: Callable[[RunReport, Lease], None],
    *,
    metrics: Metrics | None = None,
) -> RunReport:
    """Run ``body`` under the maintenance lease if it is free, else report ``skipped`` and who holds it.

    Exceptions become a ``failed`` report: a maintenance run must never take its caller (the daemon's loop,
    a CronJob's exit code) down with anything but its result.
    """
    started = time.perf_counter()
    report = RunReport(operation, uri)
    try:
        with held_if_free(lock) as lease:
            if lease is None:
                report.status = "skipped"
                report.reason = f"maintenance lease held by {lock.describe_holder() or 'another process'}"
            else:
                body(report, lease)
    except Exception as err:
        log.exception("%s of %s failed", operation, uri)
        report.status, report.reason = "failed", f"{type(err).__name__}: {err}"
    report.duration_seconds = time.perf_counter() - started
    if metrics is not None:
        _observe(report, metrics)
    return report


def _observe(report: RunReport, metrics: Metrics) -> None:
    totals = report.totals
    if report.operation == "compact":
        metrics.compaction_runs.labels(report.status).inc()
        metrics.compaction_duration.observe(report.duration_seconds)
        metrics.compaction_bytes_rewritten.inc(totals.get("bytesWritten", 0))
        metrics.compaction_bytes_read.inc(totals.get("bytesRead", 0))
        metrics.compaction_files_removed.inc(totals.get("filesRemoved", 0))
    else:
        metrics.vacuum_runs.labels(report.status).inc()
        metrics.vacuum_files_deleted.inc(totals.get("filesDeleted", 0))
