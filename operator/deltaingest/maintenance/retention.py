"""What vacuum must keep, decided from the table's commit times and the policy. Pure: no I/O, no clock.

delta-rs deletes a removed file once its tombstone (``deletionTimestamp``) is older than ``retention_hours``
(whole hours), and keeps every file of the versions listed in ``keep_versions``. Versions must stay readable
from the one current at our exact cutoff (or the newest N, if that reaches further back) to the latest. A file
such a version needs and delta-rs would delete was removed by a later commit ``r`` whose tombstone is older
than delta-rs' cutoff; the version just before ``r`` needs it, so ``r - 1`` is kept. Listing only those
versions, not every version in the window, keeps delta-rs' work small: it loads each listed version.

A tombstone's timestamp is taken when the operation starts, not when it commits (a long compaction commits
minutes later), but never before the version it read was committed. So a removing commit whose read version
is newer than delta-rs' cutoff cannot carry a tombstone that delta-rs would delete.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_TABLE_RETENTION_HOURS = 168.0
_UNITS = {
    "nanosecond": 1 / 3.6e12,
    "microsecond": 1 / 3.6e9,
    "millisecond": 1 / 3.6e6,
    "second": 1 / 3600,
    "minute": 1 / 60,
    "hour": 1.0,
    "day": 24.0,
    "week": 168.0,
}


class RetentionTooShort(ValueError):
    """The requested retention is below the table's own ``delta.deletedFileRetentionDuration``."""


def parse_interval_hours(text: str) -> float:
    """``interval 7 days`` (Delta's CalendarInterval syntax) or ``7 days`` to hours."""
    match = re.fullmatch(r"\s*(?:interval\s+)?(\d+(?:\.\d+)?)\s+([a-z]+?)s?\s*", text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"cannot read the interval {text!r} (expected e.g. 'interval 7 days')")
    return float(match.group(1)) * _UNITS[match.group(2)]


def table_retention_hours(configuration: dict[str, str]) -> float:
    value = configuration.get("delta.deletedFileRetentionDuration")
    return DEFAULT_TABLE_RETENTION_HOURS if value is None else parse_interval_hours(value)


def check_retention(retain_hours: float, table_hours: float, *, force: bool) -> None:
    """Refuse a retention shorter than the table's unless forced: readers and writers rely on it."""
    if retain_hours < table_hours and not force:
        raise RetentionTooShort(
            f"retention {retain_hours:g}h is shorter than the table's delta.deletedFileRetentionDuration "
            f"({table_hours:g}h); files still in use by readers could be deleted. Pass --force (or set "
            "vacuum.force) if you mean it"
        )


@dataclass(frozen=True)
class Commit:
    """What vacuum planning needs from one entry of the table's history."""

    version: int
    timestamp: float  # seconds since the epoch
    removes_files: bool
    read_version: int | None = None  # the version the operation read, when the log records it


# Operations that never remove a data file; anything else (including ones we do not know) may.
_KEEPS_FILES = frozenset(
    {
        "VACUUM START",
        "VACUUM END",
        "CREATE TABLE",
        "SET TBLPROPERTIES",
        "ADD CONSTRAINT",
        "DROP CONSTRAINT",
        "ADD COLUMN",
        "UPDATE TABLE METADATA",
        "UPDATE FIELD METADATA",
    }
)
_UNKNOWN_START = 3600.0  # an operation without a read version may have started this long before its commit


def commit_from_history(entry: dict[str, Any]) -> Commit:
    operation = str(entry.get("operation", ""))
    parameters = entry.get("operationParameters") or {}
    if operation == "WRITE":
        removes = str(parameters.get("mode", "")).lower() != "append"
    else:
        removes = operation not in _KEEPS_FILES
    read = entry.get("readVersion")
    return Commit(
        int(entry["version"]), entry["timestamp"] / 1000, removes, int(read) if read is not None else None
    )


@dataclass(frozen=True)
class VacuumPlan:
    retention_hours: int  # what delta-rs is given
    keep_versions: tuple[int, ...]  # versions whose files delta-rs must keep in addition
    oldest_kept_version: int | None  # every version from this one on stays readable (None: not known)


def plan_vacuum(
    commits: Sequence[Commit],
    *,
    latest: int,
    now: float,
    retain_hours: float,
    keep_versions: int,
    complete: bool = True,
) -> VacuumPlan:
    """``commits`` are newest first and reach back at least to the newest commit at or before
    ``now - retain_hours`` when there is one (see ``history_needed``).

    Without ``complete`` history (a busy table: reading every commit of the window would cost more than the
    vacuum), the newest N versions are all inside the window anyway, and delta-rs gets the retention rounded
    up plus an hour, so that versions near the cutoff and compactions that started before it stay covered.
    """
    if not complete:
        return VacuumPlan(math.ceil(retain_hours) + 1, (), None)
    whole_hours = math.floor(retain_hours)
    coarse_cutoff = now - whole_hours * 3600  # delta-rs deletes tombstones older than this
    oldest = max(0, min(_current_at(commits, now - retain_hours * 3600), latest - keep_versions + 1))
    committed = {c.version: c.timestamp for c in commits}
    keep = set()
    for commit in commits:
        if not commit.removes_files or commit.version <= oldest:
            continue
        read_at = committed.get(commit.read_version) if commit.read_version is not None else None
        started = read_at if read_at is not None else commit.timestamp - _UNKNOWN_START
        if started <= coarse_cutoff:  # some of its tombstones may be older than delta-rs' cutoff
            keep.add(commit.version - 1)
    return VacuumPlan(whole_hours, tuple(sorted(keep)), oldest)


def history_complete(commits: Sequence[Commit], *, now: float, retain_hours: float) -> bool:
    """True when ``commits`` (newest first) have no gap and reach back to a commit at or before the exact
    cutoff, or to version 0. Judged from the commits themselves: delta-rs' ``history(limit)`` on a table
    loaded a few commits ago returns more or fewer entries than ``limit``."""
    if not commits:
        return True
    versions = [c.version for c in commits]
    if versions != list(range(versions[0], versions[0] - len(versions), -1)):
        return False
    return commits[-1].version == 0 or commits[-1].timestamp <= now - retain_hours * 3600


def _current_at(commits: Sequence[Commit], cutoff: float) -> int:
    """The version that was current at ``cutoff``: the newest committed at or before it (0 if none seen)."""
    for commit in commits:
        if commit.timestamp <= cutoff:
            return commit.version
    return 0
