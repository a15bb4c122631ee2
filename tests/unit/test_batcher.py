"""Group commit semantics, with a commit function that records what it is given."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pyarrow as pa
import pytest

from deltaingest.config import BatchingSpec
from deltaingest.ingest.batcher import GroupCommitter, ShuttingDown
from deltaingest.ingest.committer import Batch, GroupResult
from deltaingest.ingest.errors import CommitFailed
from deltaingest.metrics import Metrics


class RecordingCommit:
    """Commits nothing; records groups; can be held mid-commit to let requests pile up."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.fail = False
        self.committed_keys: set[tuple[str, int]] = set()

    def __call__(self, batches: Sequence[Batch]) -> GroupResult:
        self.entered.set()
        self.release.wait(10)
        if self.fail:
            raise CommitFailed("store unavailable")
        self.groups.append([b.data.num_rows for b in batches])
        written = []
        for b in batches:
            key = (b.producer, b.sequence) if b.producer is not None and b.sequence is not None else None
            written.append(key not in self.committed_keys)
            if key is not None:
                self.committed_keys.add(key)
        return GroupResult(version=len(self.groups), written=tuple(written))


def rows(n: int) -> pa.Table:
    return pa.table({"x": list(range(n))})


def run(coro_factory, commit: RecordingCommit, limits: BatchingSpec | None = None):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        group = GroupCommitter(commit, limits=limits or BatchingSpec(), metrics=Metrics())
        group.start()
        try:
            return await coro_factory(group)
        finally:
            commit.release.set()
            await group.close()

    return asyncio.run(main())


def test_lone_request_commits_at_once() -> None:
    commit = RecordingCommit()
    ack = run(lambda g: g.submit(Batch(rows(3))), commit)
    assert (ack.version, ack.rows, ack.duplicate) == (1, 3, False)
    assert commit.groups == [[3]]


def test_requests_during_a_commit_form_the_next_group() -> None:
    commit = RecordingCommit()
    commit.release.clear()

    async def scenario(group: GroupCommitter):  # type: ignore[no-untyped-def]
        first = asyncio.create_task(group.submit(Batch(rows(1))))
        await asyncio.to_thread(commit.entered.wait, 10)  # first group is in flight and held
        rest = [asyncio.create_task(group.submit(Batch(rows(2)))) for _ in range(5)]
        await asyncio.sleep(0.05)
        commit.release.set()
        return await asyncio.gather(first, *rest)

    acks = run(scenario, commit)
    assert commit.groups == [[1], [2, 2, 2, 2, 2]]
    assert [a.version for a in acks] == [1, 2, 2, 2, 2, 2]


def test_row_limit_splits_groups() -> None:
    commit = RecordingCommit()
    commit.release.clear()

    async def scenario(group: GroupCommitter):  # type: ignore[no-untyped-def]
        first = asyncio.create_task(group.submit(Batch(rows(1))))
        await asyncio.to_thread(commit.entered.wait, 10)
        rest = [asyncio.create_task(group.submit(Batch(rows(4)))) for _ in range(3)]
        await asyncio.sleep(0.05)
        commit.release.set()
        return await asyncio.gather(first, *rest)

    run(scenario, commit, BatchingSpec(max_rows=8))
    assert commit.groups == [[1], [4, 4], [4]]


def test_max_delay_gathers_a_lone_burst() -> None:
    commit = RecordingCommit()

    async def scenario(group: GroupCommitter):  # type: ignore[no-untyped-def]
        tasks = [asyncio.create_task(group.submit(Batch(rows(1))))]
        await asyncio.sleep(0.01)
        tasks += [asyncio.create_task(group.submit(Batch(rows(1)))) for _ in range(3)]
        return await asyncio.gather(*tasks)

    run(scenario, commit, BatchingSpec(max_delay_ms=300))
    assert commit.groups == [[1, 1, 1, 1]]


def test_failed_commit_fails_every_request_in_the_group() -> None:
    commit = RecordingCommit()
    commit.fail = True

    async def scenario(group: GroupCommitter):  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(group.submit(Batch(rows(1))) for _ in range(3)), return_exceptions=True)

    results = run(scenario, commit)
    assert all(isinstance(r, CommitFailed) for r in results)


def test_same_sequence_in_flight_is_coalesced() -> None:
    commit = RecordingCommit()
    commit.release.clear()

    async def scenario(group: GroupCommitter):  # type: ignore[no-untyped-def]
        first = asyncio.create_task(group.submit(Batch(rows(2), "p", 1)))
        await asyncio.to_thread(commit.entered.wait, 10)
        retry = asyncio.create_task(group.submit(Batch(rows(2), "p", 1)))
        await asyncio.sleep(0.05)
        commit.release.set()
        return await asyncio.gather(first, retry)

    first, retry = run(scenario, commit)
    assert commit.groups == [[2]]
    assert not first.duplicate and retry.duplicate and retry.version == first.version


def test_close_flushes_queue_then_refuses() -> None:
    commit = RecordingCommit()

    async def main() -> None:
        group = GroupCommitter(commit, limits=BatchingSpec(), metrics=Metrics())
        group.start()
        pending = [asyncio.create_task(group.submit(Batch(rows(1)))) for _ in range(4)]
        await asyncio.sleep(0)
        await group.close()
        acks = await asyncio.wait_for(asyncio.gather(*pending), 1)
        assert [a.rows for a in acks] == [1, 1, 1, 1]
        with pytest.raises(ShuttingDown):
            await group.submit(Batch(rows(1)))

    asyncio.run(main())
    assert sum(len(g) for g in commit.groups) == 4
