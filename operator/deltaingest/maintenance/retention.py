"""What vacuum must keep, decided from the table's commit times and the policy. Pure: no I/O, no clock.

delta-rs deletes a removed file once its removal is older than ``retention_hours`` (whole hours), and keeps
every file of the versions listed in ``keep_versions``. A file removed after the cutoff is still needed by
the version that was current at the cutoff, so versions from that one on stay readable. We add to
``keep_versions`` the newest N versions and, for a fractional retention, the versions between our exact
cutoff and the whole-hour one delta-rs applies.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

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
class VacuumPlan:
    retention_hours: int  # what delta-rs is given
    keep_versions: tuple[int, ...]  # versions whose files delta-rs must keep in addition
    oldest_kept_version: int  # every version from this one to the latest stays readable


def plan_vacuum(
    commits: Sequence[tuple[int, float]],
    *,
    latest: int,
    now: float,
    retain_hours: float,
    keep_versions: int,
) -> VacuumPlan:
    """``commits`` are (version, commit time in seconds), newest first, reaching back at least to the
    newest commit at or before ``now - retain_hours`` when there is one (see ``history_needed``)."""
    whole_hours = math.floor(retain_hours)
    exact = _current_at(commits, now - retain_hours * 3600)
    coarse = _current_at(commits, now - whole_hours * 3600)
    oldest = max(0, min(exact, latest - keep_versions + 1))
    # delta-rs itself keeps every version from ``coarse`` on; we name the older ones we also need.
    return VacuumPlan(whole_hours, tuple(range(oldest, coarse)), oldest)


def history_needed(commits: Sequence[tuple[int, float]], *, now: float, retain_hours: float) -> bool:
    """True while ``commits`` (newest first) do not yet reach a commit at or before the exact cutoff."""
    return bool(commits) and commits[-1][1] > now - retain_hours * 3600 and commits[-1][0] > 0


def _current_at(commits: Sequence[tuple[int, float]], cutoff: float) -> int:
    """The version that was current at ``cutoff``: the newest committed at or before it (0 if none seen)."""
    for version, committed in commits:
        if committed <= cutoff:
            return version
    return 0
