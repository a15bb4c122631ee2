"""Group commit: requests that arrive while a commit is in flight are merged into the next one.

A lone request never waits on a timer (unless ``max_delay_ms`` asks for it): when nothing is in flight the
loop commits at once. Limits on rows and bytes cap a group; what does not fit waits for the next.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from deltaingest.config import BatchingSpec
from deltaingest.ingest.committer import Batch, GroupResult
from deltaingest.ingest.errors import CommitFailed, IngestError
from deltaingest.metrics import Metrics


@dataclass(frozen=True)
class Ack:
    """What the client is told once its rows are committed (or were already committed): the table's rows,
    and how many went to the dead-letter table."""

    version: int
    rows: int
    duplicate: bool
    dead_lettered: int = 0


@dataclass
class _Pending:
    batch: Batch
    nbytes: int
    arrived: float
    future: asyncio.Future[Ack]


class ShuttingDown(CommitFailed):
    """The writer is draining and takes no new requests."""


class GroupCommitter:
    """Owns the commit loop task and the single commit thread."""

    def __init__(
        self, commit: Callable[[Sequence[Batch]], GroupResult], *, limits: BatchingSpec, metrics: Metrics
    ) -> None:
        self._commit = commit
        self._limits = limits
        self._metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._by_key: dict[tuple[str, int], asyncio.Future[Ack]] = {}
        self._wake = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="committer")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def submit(self, batch: Batch) -> Ack:
        """Queue one request's rows; resolves when they are committed. Cancellation of the caller (a client
        that hung up) does not cancel the commit: the rows are written and the sequence recorded."""
        if self._closing:
            raise ShuttingDown("the writer is shutting down; retry on another replica")
        key = (
            (batch.producer, batch.sequence)
            if batch.producer is not None and batch.sequence is not None
            else None
        )
        if key is not None and key in self._by_key:
            # The same sequence is already queued or committing (a client retry raced its original).
            ack = await asyncio.shield(self._by_key[key])
            return Ack(ack.version, ack.rows, duplicate=True, dead_lettered=ack.dead_lettered)
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        # A client that hung up leaves nobody to read a failure; mark it read so asyncio does not warn.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        if key is not None:
            self._by_key[key] = future
            future.add_done_callback(lambda _: self._by_key.pop(key, None))
        self._queue.append(_Pending(batch, int(batch.data.nbytes), time.monotonic(), future))
        self._wake.set()
        return await asyncio.shield(future)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                if self._closing:
                    return
                continue
            await self._linger()
            group = self._take_group()
            started = time.monotonic()
            for pending in group:
                self._metrics.commit_stage.labels("queue_wait").observe(started - pending.arrived)
            try:
                result = await loop.run_in_executor(self._executor, self._commit, [p.batch for p in group])
            except IngestError as err:
                for pending in group:
                    _settle(pending.future, error=err)
            except Exception as err:  # anything unexpected still fails the group as a whole
                for pending in group:
                    _settle(pending.future, error=CommitFailed(f"commit failed: {err}"))
            else:
                for index, (pending, written) in enumerate(zip(group, result.written, strict=True)):
                    if index in result.refused:
                        _settle(pending.future, error=result.refused[index])
                        continue
                    if not written:
                        self._metrics.duplicates.inc()
                    batch = pending.batch
                    ack = Ack(result.version, batch.data.num_rows, not written, len(batch.dead))
                    _settle(pending.future, ack=ack)
            if self._queue or self._closing:
                self._wake.set()

    async def _linger(self) -> None:
        """With ``max_delay_ms`` > 0, wait for more requests until a limit is reached or the delay is up."""
        delay = self._limits.max_delay_ms / 1000
        if delay <= 0 or self._closing:
            return
        deadline = self._queue[0].arrived + delay
        while not self._full() and (remaining := deadline - time.monotonic()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    def _full(self) -> bool:
        rows = sum(p.batch.data.num_rows for p in self._queue)
        size = sum(p.nbytes for p in self._queue)
        return rows >= self._limits.max_rows or size >= self._limits.max_bytes

    def _take_group(self) -> list[_Pending]:
        group = [self._queue.popleft()]
        rows, size = group[0].batch.data.num_rows, group[0].nbytes
        while self._queue:
            nxt = self._queue[0]
            if (
                rows + nxt.batch.data.num_rows > self._limits.max_rows
                or size + nxt.nbytes > self._limits.max_bytes
            ):
                break
            group.append(self._queue.popleft())
            rows += nxt.batch.data.num_rows
            size += nxt.nbytes
        return group

    async def close(self) -> None:
        """Stop taking requests, commit everything queued, stop the loop and the commit thread."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)


def _settle(
    future: asyncio.Future[Ack], *, ack: Ack | None = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert ack is not None
        future.set_result(ack)
