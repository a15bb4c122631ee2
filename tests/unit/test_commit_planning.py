"""Exactly-once planning and checkpoint boundaries (pure functions)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaingest.ingest.committer import Batch, plan_writes
from deltaingest.maintenance.checkpoint import checkpoint_due

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


@pytest.mark.parametrize(
    ("last", "latest", "every", "due"),
    [(0, 24, 25, False), (0, 25, 25, True), (24, 26, 25, True), (25, 49, 25, False), (30, 30, 25, False)],
)
def test_checkpoint_due(last: int, latest: int, every: int, due: bool) -> None:
    assert checkpoint_due(last=last, latest=latest, every=every) is due
