"""Exactly-once planning and checkpoint scheduling (pure functions)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaingest.ingest.committer import Batch, plan_writes
from deltaingest.maintenance.checkpoint import CheckpointSchedule, seconds_until_checkpoint

DATA = pa.table({"x": [1]})


def test_plan_writes_skips_committed_sequences_and_records_highest() -> None:
    committed = {"p": 5}
    batches = [
        Batch(DATA),  # no identity: always written
        Batch(DATA, "p", 5),  # retry of a committed sequence
        Batch(DATA, "p", 6),
        Batch(DATA, "p", 8),
        Batch(DATA, "q", 0),  # new producer
    ]
    written, txns = plan_writes(batches, committed.get)
    assert written == (True, False, True, True, True)
    assert txns == {"p": 8, "q": 0}


def test_plan_writes_asks_once_per_producer() -> None:
    calls: list[str] = []

    def committed(producer: str) -> int | None:
        calls.append(producer)
        return None

    plan_writes([Batch(DATA, "p", 1), Batch(DATA, "p", 2)], committed)
    assert calls == ["p"]


def test_plan_writes_nothing_new() -> None:
    written, txns = plan_writes([Batch(DATA, "p", 1)], {"p": 3}.get)
    assert written == (False,)
    assert txns == {}


EVERY_10 = CheckpointSchedule(every=10, min_interval=2.0)


@pytest.mark.parametrize(
    ("last", "latest", "every", "due"),
    [(0, 24, 25, False), (0, 25, 25, True), (24, 26, 25, True), (25, 49, 25, False), (30, 30, 25, False)],
)
def test_a_checkpoint_is_due_at_each_multiple_of_every(last: int, latest: int, every: int, due: bool) -> None:
    """Without a time gate: versions alone decide, at multiples, so replicas pick the same versions."""
    wait = seconds_until_checkpoint(CheckpointSchedule(every=every), last=last, latest=latest, idle=0)
    assert (wait == 0.0) is due and (wait is None) is not due


@pytest.mark.parametrize(("idle", "wait"), [(0.0, 2.0), (1.5, 0.5), (2.0, 0.0), (5.0, 0.0)])
def test_a_due_checkpoint_waits_out_the_minimum_interval(idle: float, wait: float) -> None:
    assert seconds_until_checkpoint(EVERY_10, last=0, latest=10, idle=idle) == pytest.approx(wait)


def test_a_due_checkpoint_does_not_wait_for_its_cost_without_an_interval() -> None:
    """Back to back: spacing checkpoints lengthens the log every commit re-reads (measured slower)."""
    assert seconds_until_checkpoint(CheckpointSchedule(every=10), last=0, latest=10, idle=0.0) == 0.0


def test_a_long_tail_is_checkpointed_however_slow_checkpoints_are() -> None:
    """The catch-up of every commit reads the log since the last checkpoint: that tail stays bounded."""
    assert EVERY_10.max_tail == 500
    slow = CheckpointSchedule(every=10, min_interval=300.0)
    assert seconds_until_checkpoint(slow, last=100, latest=599, idle=0.0) == pytest.approx(300.0)
    assert seconds_until_checkpoint(slow, last=100, latest=600, idle=0.0) == 0.0
    assert seconds_until_checkpoint(slow, last=600, latest=605, idle=0.0) is None  # no boundary crossed
