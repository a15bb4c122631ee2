"""Vacuum under the maintenance lease: delete files no version inside the retention (or among the newest N)
needs, then write a checkpoint and clean up expired log files."""

from __future__ import annotations

import time

from deltalake import DeltaTable
from deltalake.transaction import CommitProperties

from deltaingest.config import VacuumSpec
from deltaingest.locking.lease import Lease, Lock
from deltaingest.maintenance.report import RunReport, commit_metadata, run_exclusive
from deltaingest.maintenance.retention import (
    check_retention,
    commit_from_history,
    history_complete,
    plan_vacuum,
    table_retention_hours,
)
from deltaingest.metrics import Metrics
from deltaingest.table.hot import NO_HOOKS
from deltaingest.table.store import existing, relative_path

_MAX_LISTED = 1000  # a report lists at most this many deleted paths
_MAX_HISTORY = 1000  # commits read to plan a vacuum; beyond, the plan falls back to a longer retention


def check_vacuum_policy(uri: str, options: dict[str, str], policy: VacuumSpec) -> None:
    """Raise ``RetentionTooShort`` before anything runs when the policy undercuts the table's retention."""
    configuration = DeltaTable(uri, storage_options=options).metadata().configuration
    check_retention(policy.retain_hours, table_retention_hours(configuration), force=policy.force)


def vacuum(
    uri: str,
    options: dict[str, str],
    policy: VacuumSpec,
    *,
    lock: Lock,
    dry_run: bool = False,
    now: float | None = None,
    metrics: Metrics | None = None,
) -> RunReport:
    """One vacuum run (``check_vacuum_policy`` first). A failed run is reported, not raised."""
    return run_exclusive(
        "vacuum",
        uri,
        lock,
        lambda report, lease: _vacuum(report, uri, options, policy, lease=lease, dry_run=dry_run, now=now),
        metrics=metrics,
    )


def _vacuum(
    report: RunReport,
    uri: str,
    options: dict[str, str],
    policy: VacuumSpec,
    *,
    lease: Lease,
    dry_run: bool,
    now: float | None,
) -> None:
    table = DeltaTable(uri, storage_options=options)
    check_retention(
        policy.retain_hours, table_retention_hours(table.metadata().configuration), force=policy.force
    )
    now = time.time() if now is None else now
    latest = table.version()
    report.version_before = latest
    limit = min(policy.keep_versions + 1, _MAX_HISTORY)
    while True:  # read history back to the retention cutoff, in growing steps, up to _MAX_HISTORY commits
        entries = (commit_from_history(entry) for entry in table.history(limit))
        commits = sorted((c for c in entries if c.version <= latest), key=lambda c: -c.version)
        complete = history_complete(commits, now=now, retain_hours=policy.retain_hours)
        if complete or limit >= _MAX_HISTORY:
            break
        limit = min(limit * 4, _MAX_HISTORY)
    plan = plan_vacuum(
        commits,
        latest=latest,
        now=now,
        retain_hours=policy.retain_hours,
        keep_versions=policy.keep_versions,
        complete=complete,
    )
    metadata = commit_metadata(lease)

    def run(dry: bool) -> list[str]:
        return table.vacuum(
            retention_hours=plan.retention_hours,
            dry_run=dry,
            enforce_retention_duration=False,  # checked above against our own (possibly fractional) retention
            keep_versions=list(plan.keep_versions) or None,
            commit_properties=CommitProperties(custom_metadata=metadata),
            post_commithook_properties=NO_HOOKS,
            full=policy.full,
        )

    # delta-rs lists expired tombstones until they leave the log, also when a run already deleted them.
    listed = run(True)
    present = existing(uri, options, listed)
    todo = listed if present is None else [p for p in listed if p in present]
    if dry_run or not todo:
        deleted = todo
    else:
        # delta-rs names a file it could not find by its full path, the others relative to the table.
        removed = [relative_path(p, uri) for p in run(False)]
        deleted = removed if present is None else [p for p in removed if p in present or p not in listed]
    checkpoint = None
    if not dry_run:
        table.update_incremental()
        table.create_checkpoint()
        table.cleanup_metadata()
        checkpoint = table.version()
    report.version_after = table.version()
    report.status = "done" if deleted or checkpoint is not None else "nothing-to-do"
    report.totals = {
        "filesDeleted": 0 if dry_run else len(deleted),
        "filesToDelete": len(deleted) if dry_run else 0,
        "dryRun": dry_run,
        "full": policy.full,
        "retainHours": policy.retain_hours,
        "keepVersions": policy.keep_versions,
        "oldestKeptVersion": plan.oldest_kept_version,
        "retentionGivenToDeltaRs": plan.retention_hours,
        "checkpointVersion": checkpoint,
    }
    report.items = [{"path": path} for path in sorted(deleted)[:_MAX_LISTED]]
