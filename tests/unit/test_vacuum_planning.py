"""Vacuum planning: the table's retention, refusing a shorter one, and which versions stay readable."""

from __future__ import annotations

import pytest

from deltaingest.maintenance.retention import (
    RetentionTooShort,
    check_retention,
    history_needed,
    parse_interval_hours,
    plan_vacuum,
    table_retention_hours,
)

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


def commits(*ages_hours: float) -> list[tuple[int, float]]:
    """Versions 0..n-1 committed ``ages_hours`` ago (oldest first in the arguments), newest first."""
    return [(v, NOW - age * HOUR) for v, age in reversed(list(enumerate(ages_hours)))]


def test_whole_hours_keep_the_newest_versions_outside_the_window() -> None:
    # Versions 0..5 at 10, 9, ..., 5 hours ago; retention 2 h; keep 3: versions 3, 4, 5 are all old.
    history = commits(10, 9, 8, 7, 6, 5)
    plan = plan_vacuum(history, latest=5, now=NOW, retain_hours=2, keep_versions=3)
    assert plan.retention_hours == 2
    # delta-rs keeps what version 5 (current at the cutoff) needs; we name 3 and 4.
    assert plan.keep_versions == (3, 4)
    assert plan.oldest_kept_version == 3


def test_versions_inside_the_window_are_left_to_delta_rs() -> None:
    history = commits(10, 9, 3, 1, 0.5)
    plan = plan_vacuum(history, latest=4, now=NOW, retain_hours=5, keep_versions=1)
    # Version 1 was current 5 hours ago: from it on everything stays, by delta-rs' own rule.
    assert plan.keep_versions == ()
    assert plan.oldest_kept_version == 1


def test_fractional_retention_names_the_versions_delta_rs_would_not_keep() -> None:
    # 0.5 h: delta-rs gets 0 whole hours, so every version after the 30-minute cutoff is named.
    history = commits(2, 1, 0.4, 0.2, 0.1)
    plan = plan_vacuum(history, latest=4, now=NOW, retain_hours=0.5, keep_versions=1)
    assert plan.retention_hours == 0
    assert plan.oldest_kept_version == 1  # current at the cutoff
    assert plan.keep_versions == (1, 2, 3)  # 4 is the latest, which delta-rs always keeps


def test_a_table_younger_than_the_retention_keeps_everything() -> None:
    plan = plan_vacuum(commits(0.3, 0.2, 0.1), latest=2, now=NOW, retain_hours=0.5, keep_versions=1)
    assert plan.oldest_kept_version == 0
    assert plan.keep_versions == (0, 1)


def test_history_is_read_back_to_the_cutoff() -> None:
    recent = commits(3, 2, 1)[:2]  # versions 2 and 1 only
    assert history_needed(recent, now=NOW, retain_hours=2.5)
    assert not history_needed(recent, now=NOW, retain_hours=1.5)
    assert not history_needed(commits(0.2, 0.1), now=NOW, retain_hours=5)  # reached version 0
