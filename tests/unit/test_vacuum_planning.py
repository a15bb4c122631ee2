"""Vacuum planning: the table's retention, refusing a shorter one, and which versions stay readable."""

from __future__ import annotations

import pytest

from deltaingest.maintenance.retention import (
    Commit,
    RetentionTooShort,
    check_retention,
    commit_from_history,
    history_complete,
    parse_interval_hours,
    plan_vacuum,
    table_retention_hours,
)
from deltaingest.table.store import relative_path

HOUR = 3600.0
NOW = 10_000_000.0


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("interval 7 days", 168),
        ("interval 1 week", 168),
        ("interval 2 hours", 2),
        ("30 minutes", 0.5),
        ("interval 90 seconds", 0.025),
        ("INTERVAL 1 DAY", 24),
    ],
)
def test_parse_interval(text: str, hours: float) -> None:
    assert parse_interval_hours(text) == pytest.approx(hours)


@pytest.mark.parametrize("text", ["7 days ago", "interval seven days", "interval 3 fortnights", ""])
def test_parse_interval_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read the interval"):
        parse_interval_hours(text)


def test_table_retention_defaults_to_a_week() -> None:
    assert table_retention_hours({}) == 168
    assert table_retention_hours({"delta.deletedFileRetentionDuration": "interval 2 days"}) == 48


def test_shorter_retention_is_refused_unless_forced() -> None:
    check_retention(168, 168, force=False)
    check_retention(200, 168, force=False)
    with pytest.raises(RetentionTooShort, match="shorter than the table's"):
        check_retention(1, 168, force=False)
    check_retention(0, 168, force=True)


def history(*commits: tuple[float, str, int | None]) -> list[Commit]:
    """Versions 0..n-1 given oldest first as (hours ago, operation, read version), returned newest first."""
    return [
        commit_from_history(
            {
                "version": version,
                "timestamp": (NOW - hours * HOUR) * 1000,
                "operation": operation,
                "operationParameters": {"mode": "Append"} if operation == "WRITE" else {},
                **({"readVersion": read} if read is not None else {}),
            }
        )
        for version, (hours, operation, read) in reversed(list(enumerate(commits)))
    ]


def test_history_entries_say_whether_a_commit_can_remove_files() -> None:
    def entry(operation: str, **extra: object) -> Commit:
        return commit_from_history({"version": 7, "timestamp": 1000, "operation": operation, **extra})

    assert not entry("WRITE", operationParameters={"mode": "Append"}).removes_files
    assert entry("WRITE", operationParameters={"mode": "Overwrite"}).removes_files
    assert entry("OPTIMIZE", readVersion=6) == Commit(7, 1.0, True, 6)
    assert not entry("VACUUM END").removes_files
    assert entry("MERGE").removes_files  # unknown or data-changing: assume it may
    assert entry("SOMETHING NEW").removes_files


def test_the_newest_versions_outside_the_window_stay_readable() -> None:
    # Appends and compactions 10 to 5 hours ago; retention 2 h; keep the newest 3 (versions 3, 4, 5).
    commits = history((10, "WRITE", None), (9, "WRITE", None), (8, "OPTIMIZE", 1), (7, "WRITE", None),
                      (6, "OPTIMIZE", 3), (5, "OPTIMIZE", 4))  # fmt: skip
    plan = plan_vacuum(commits, latest=5, now=NOW, retain_hours=2, keep_versions=3)
    assert plan.retention_hours == 2
    assert plan.oldest_kept_version == 3
    # Version 3 lost files in 4, version 4 in 5: both are named. The compaction at 2 removed files only
    # versions before 3 needed, and appends remove nothing.
    assert plan.keep_versions == (3, 4)


def test_removals_inside_the_window_are_left_to_delta_rs() -> None:
    commits = history((10, "WRITE", None), (9, "WRITE", None), (3, "OPTIMIZE", 1), (1, "OPTIMIZE", 2),
                      (0.5, "WRITE", None))  # fmt: skip
    plan = plan_vacuum(commits, latest=4, now=NOW, retain_hours=5, keep_versions=1)
    assert plan.oldest_kept_version == 1  # current 5 hours ago
    # The compaction at version 2 read version 1, committed 9 h ago: its tombstones may predate the cutoff,
    # so version 1 is named. The one at version 3 read version 2 (3 h ago): delta-rs keeps its tombstones.
    assert plan.keep_versions == (1,)


def test_a_compaction_that_started_before_the_cutoff_and_committed_after_it_is_covered() -> None:
    commits = history((5, "WRITE", None), (2.1, "WRITE", None), (1.9, "OPTIMIZE", 1), (0.1, "WRITE", None))
    plan = plan_vacuum(commits, latest=3, now=NOW, retain_hours=2, keep_versions=1)
    assert plan.oldest_kept_version == 1
    assert plan.keep_versions == (1,)  # its tombstones date from its start, 2.1 h ago
    later = history((5, "WRITE", None), (1.95, "WRITE", None), (1.9, "OPTIMIZE", 1), (0.1, "WRITE", None))
    assert plan_vacuum(later, latest=3, now=NOW, retain_hours=2, keep_versions=1).keep_versions == ()


def test_a_removal_without_a_read_version_is_assumed_to_have_started_an_hour_earlier() -> None:
    commits = history((5, "WRITE", None), (3, "WRITE", None), (1.5, "DELETE", None), (0.1, "WRITE", None))
    assert plan_vacuum(commits, latest=3, now=NOW, retain_hours=2, keep_versions=1).keep_versions == (1,)


def test_fractional_retention_names_the_versions_delta_rs_would_not_keep() -> None:
    # 0.5 h: delta-rs gets 0 whole hours and would delete every tombstone; versions from 1 on must stay.
    commits = history((2, "WRITE", None), (1, "WRITE", None), (0.4, "OPTIMIZE", 1), (0.2, "WRITE", None),
                      (0.1, "OPTIMIZE", 3))  # fmt: skip
    plan = plan_vacuum(commits, latest=4, now=NOW, retain_hours=0.5, keep_versions=1)
    assert plan.retention_hours == 0
    assert plan.oldest_kept_version == 1
    assert plan.keep_versions == (1, 3)


def test_a_table_younger_than_the_retention_keeps_every_version() -> None:
    commits = history((0.3, "WRITE", None), (0.2, "OPTIMIZE", 0), (0.1, "WRITE", None))
    plan = plan_vacuum(commits, latest=2, now=NOW, retain_hours=0.5, keep_versions=1)
    assert plan.oldest_kept_version == 0
    assert plan.keep_versions == (0,)


def test_history_is_read_back_to_the_cutoff() -> None:
    recent = history((3, "WRITE", None), (2, "WRITE", None), (1, "WRITE", None))[:2]  # versions 2 and 1
    assert not history_complete(recent, now=NOW, retain_hours=2.5)
    assert history_complete(recent, now=NOW, retain_hours=1.5)
    young = history((0.2, "WRITE", None), (0.1, "WRITE", None))
    assert history_complete(young, now=NOW, retain_hours=5)  # reaches version 0


def test_history_with_a_gap_is_not_complete() -> None:
    commits = history((3, "WRITE", None), (2, "WRITE", None), (1, "WRITE", None), (0.5, "WRITE", None))
    assert not history_complete([commits[0], commits[2], commits[3]], now=NOW, retain_hours=2.5)


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("part-1.parquet", "/data/t"),
        ("/data/t/part-1.parquet", "/data/t"),
        ("s3://bucket/lake/t/part-1.parquet", "s3://bucket/lake/t"),
        ("lake/t/part-1.parquet", "s3://bucket/lake/t/"),
    ],
)
def test_paths_delta_rs_reports_are_made_relative_to_the_table(path: str, uri: str) -> None:
    assert relative_path(path, uri) == "part-1.parquet"


def test_without_the_whole_window_in_history_delta_rs_gets_a_longer_retention() -> None:
    recent = history((3, "WRITE", None), (2, "OPTIMIZE", 0), (1, "WRITE", None))[:2]
    plan = plan_vacuum(recent, latest=2, now=NOW, retain_hours=2.5, keep_versions=10, complete=False)
    assert plan.retention_hours == 4  # rounded up, plus an hour
    assert plan.keep_versions == ()
    assert plan.oldest_kept_version is None
