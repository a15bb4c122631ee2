"""``Producer`` and ``AsyncProducer``: send batches to deltaingest writers exactly once.

Each batch goes with the producer's id and a sequence (``X-Producer-Id``, ``X-Sequence``). The writer
commits a sequence at most once and acknowledges a retry of a committed one as a duplicate, so the client
retries freely (see ``delivery``). Sequences must rise: a batch whose sequence is at or below the last
committed one is taken for a retry and not written. So batches go one at a time, in order; after a batch
fails for good the producer refuses further batches, and a new producer resumes from the writer's
answer to ``committed()``.

Without ``sequence`` the producer numbers batches itself, continuing after the committed sequence it asks
the writers for on its first send. With ``sequence`` (a source offset: a file position, a Kafka offset) the
caller owns the numbering and resumes its source after ``committed()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from deltaingest.client.delivery import (
    Answer,
    Call,
    ClientError,
    Endpoints,
    Exchange,
    Outcome,
    Rejected,
    RetryPolicy,
    Sleep,
    exchange,
)
from deltaingest.client.encode import Body, encode
from deltaingest.protocol import (
    INGEST_PATH,
    MAX_SEQUENCE,
    PRODUCER_HEADER,
    PRODUCERS_PATH,
    SEQUENCE_HEADER,
    producer_id_problem,
)


class SequenceTaken(ClientError):
    """The writer already held this auto-numbered sequence on the batch's first attempt: a batch of an
    earlier producer with this id (still in flight when it stopped) committed it. This batch was not
    written; the producer stops, and a new one resumes after the committed sequence."""


class ProducerFailed(ClientError):
    """An earlier batch was not acknowledged: sending later ones could reorder sequences. Make a new
    producer; it resumes from the committed sequence."""


@dataclass(frozen=True)
class Ack:
    """A committed batch: the table version holding it, its rows, whether the writer had already
    committed this sequence (a retry's duplicate; its rows are in the table once), and how many of its rows
    went to the dead-letter table (with ``writer.invalidRows: deadLetter``; ``rows`` does not count them)."""

    sequence: int
    version: int
    rows: int
    duplicate: bool = False
    dead_lettered: int = 0


class _Numbering:
    """The producer's identity, its next sequence, and whether it may still send. Shared by both kinds."""

    def __init__(
        self,
        urls: str | Sequence[str],
        producer_id: str,
        *,
        token: str | None,
        compress: bool,
        policy: RetryPolicy,
    ) -> None:
        if (problem := producer_id_problem(producer_id)) is not None:
            raise ValueError(problem)
        self.producer_id = producer_id
        self.endpoints = Endpoints([urls] if isinstance(urls, str) else list(urls))
        self.policy = policy
        self.compress = compress
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.next: int | None = None  # unknown until the committed sequence is read
        self.failure: BaseException | None = None
        self.failed_sequence: int | None = None
        self.closed = False

    def committed_exchange(self) -> Exchange:
        path = f"{PRODUCERS_PATH}/{urllib.parse.quote(self.producer_id, safe='')}"
        return exchange(self.endpoints, "GET", path, dict(self.auth), None, policy=self.policy)

    def start(self, committed: Answer) -> None:
        """Continue after the committed sequence (or after one taken meanwhile, whichever is later)."""
        sequence = committed.body.get("sequence")
        after = 0 if sequence is None else int(sequence) + 1
        self.next = max(self.next or 0, after)

    def check(self) -> None:
        if self.failure is not None:
            raise ProducerFailed(
                f"batch {self.failed_sequence} was not acknowledged "
                f"({type(self.failure).__name__}: {self.failure}); sending later ones could reorder "
                "sequences: make a new producer, it resumes after the committed sequence"
            ) from self.failure
        if self.closed:
            raise ProducerFailed("the producer is closed")

    def take(self, sequence: int | None) -> tuple[int, bool]:
        """The sequence for the next batch, and whether the producer numbered it itself (``self.next`` must
        be known then)."""
        self.check()
        auto = sequence is None
        if sequence is None:
            assert self.next is not None
            sequence = self.next
        if not 0 <= sequence <= MAX_SEQUENCE:
            raise ValueError(f"sequence must be between 0 and {MAX_SEQUENCE}, got {sequence}")
        if self.next is not None and sequence < self.next:
            raise ValueError(
                f"sequence {sequence} is below this producer's next ({self.next}): "
                "the writer would take it for a retry"
            )
        self.next = sequence + 1
        return sequence, auto

    @contextlib.contextmanager
    def delivering(self, sequence: int) -> Iterator[None]:
        """Around a delivery: unless refused, the batch's fate is unknown and the producer stops."""
        try:
            yield
        except Rejected:
            raise  # refused as sent, so never written: later batches may go on
        except BaseException as err:
            self.failure, self.failed_sequence = err, sequence
            raise

    def acknowledge(self, sequence: int, auto: bool, answer: Answer) -> Ack:
        ack = Ack(
            sequence,
            int(answer.body["version"]),
            int(answer.body["rows"]),
            bool(answer.body.get("duplicate")),
            int(answer.body.get("deadLettered", 0)),
        )
        if ack.duplicate and auto and answer.attempts == 1:
            # Not a retry of ours: someone else's batch holds this number, and ours was not written.
            raise SequenceTaken(
                f"sequence {sequence} was already committed for {self.producer_id!r} by an earlier producer "
                "(a batch still in flight when it stopped); this batch was not written"
            )
        return ack

    def ingest_exchange(self, body: Body, sequence: int) -> Exchange:
        headers = {
            **body.headers(),
            **self.auth,
            PRODUCER_HEADER: self.producer_id,
            SEQUENCE_HEADER: str(sequence),
        }
        return exchange(self.endpoints, "POST", INGEST_PATH, headers, body.data, policy=self.policy)


def _decoded(status: int, payload: bytes, retry_after: str | None) -> Outcome:
    try:
        body = json.loads(payload) if payload else None
    except ValueError:
        body = None
    return Outcome(status, body if isinstance(body, dict) else None, retry_after)


class Producer:
    """Blocking producer: ``send`` returns once the batch is committed. Thread-safe; batches from several
    threads go one at a time, numbered in the order they get the producer."""

    def __init__(
        self,
        urls: str | Sequence[str],
        producer_id: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        delivery_timeout: float = 120.0,
        compress: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._state = _Numbering(
            urls, producer_id, token=token, compress=compress, policy=RetryPolicy(delivery_timeout)
        )
        self._timeout = timeout
        self._ssl = ssl_context
        self._connections: dict[str, http.client.HTTPConnection] = {}
        self._guard = threading.Lock()

    @property
    def producer_id(self) -> str:
        return self._state.producer_id

    def committed(self) -> int | None:
        """The last sequence the table holds for this producer (None: none yet), from any writer."""
        with self._guard:
            sequence = self._run(self._state.committed_exchange()).body.get("sequence")
            return None if sequence is None else int(sequence)

    def send(self, data: Any, sequence: int | None = None) -> Ack:
        """Commit one batch (rows, a pyarrow Table or a polars DataFrame); see the module for ``sequence``."""
        body = encode(data, compress=self._state.compress)
        with self._guard:
            self._state.check()
            if sequence is None and self._state.next is None:
                self._state.start(self._run(self._state.committed_exchange()))
            taken, auto = self._state.take(sequence)
            with self._state.delivering(taken):
                return self._state.acknowledge(
                    taken, auto, self._run(self._state.ingest_exchange(body, taken))
                )

    def close(self) -> None:
        with self._guard:
            self._state.closed = True
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, steps: Exchange) -> Answer:
        outcome: Outcome | None = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = None
            else:
                outcome = self._call(step)

    def _call(self, call: Call) -> Outcome:
        parts = urllib.parse.urlsplit(call.url)
        base = f"{parts.scheme}://{parts.netloc}"
        connection = self._connections.get(base)
        if connection is None:
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(
                    parts.netloc, timeout=self._timeout, context=self._ssl
                )
            else:
                connection = http.client.HTTPConnection(parts.netloc, timeout=self._timeout)
            self._connections[base] = connection
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(call.method, path, body=call.body, headers=call.headers)
            response = connection.getresponse()
            payload = response.read()
        except BaseException as err:
            # A broken (or half-used) keep-alive connection is not reused: the next attempt opens a new one.
            connection.close()
            del self._connections[base]
            if isinstance(err, OSError | http.client.HTTPException):
                return Outcome(None, error=f"{type(err).__name__}: {err}")
            raise
        return _decoded(response.status, payload, response.getheader("Retry-After"))


class AsyncProducer:
    """Asyncio producer. ``send`` waits for the commit; ``submit`` queues a batch and returns a future,
    waiting only while ``max_in_flight`` batches are queued or on the wire (backpressure). Queued batches
    are delivered one at a time, in the order they were submitted."""

    def __init__(
        self,
        urls: str | Sequence[str],
        producer_id: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        delivery_timeout: float = 120.0,
        compress: bool = False,
        max_in_flight: int = 8,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._state = _Numbering(
            urls, producer_id, token=token, compress=compress, policy=RetryPolicy(delivery_timeout)
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl: ssl.SSLContext | bool = ssl_context or True
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(max_in_flight)
        self._order = asyncio.Lock()  # FIFO: batches reach the wire in the order they took a sequence
        self._pending: set[asyncio.Task[Ack]] = set()

    @property
    def producer_id(self) -> str:
        return self._state.producer_id

    async def committed(self) -> int | None:
        """The last sequence the table holds for this producer (None: none yet), from any writer."""
        async with self._order:
            sequence = (await self._run(self._state.committed_exchange())).body.get("sequence")
            return None if sequence is None else int(sequence)

    async def send(self, data: Any, sequence: int | None = None) -> Ack:
        """Commit one batch and return its acknowledgement."""
        return await (await self.submit(data, sequence))

    async def submit(self, data: Any, sequence: int | None = None) -> asyncio.Future[Ack]:
        """Queue one batch; the returned future resolves to its acknowledgement (or its error)."""
        body = encode(data, compress=self._state.compress)
        self._state.check()
        await self._slots.acquire()
        try:
            if sequence is None and self._state.next is None:
                async with self._order:
                    if self._state.next is None:
                        self._state.start(await self._run(self._state.committed_exchange()))
            taken, auto = self._state.take(sequence)
        except BaseException:
            self._slots.release()
            raise
        # Tasks take their first step in creation order and the lock is FIFO: wire order is sequence order.
        task = asyncio.ensure_future(self._deliver(body, taken, auto))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        # Released when the task ends however it ends, even cancelled before its first step.
        task.add_done_callback(lambda _: self._slots.release())
        return task

    async def flush(self) -> None:
        """Wait until every submitted batch is acknowledged or failed (cancelling the wait cancels none)."""
        if self._pending:
            await asyncio.wait(set(self._pending))

    async def close(self) -> None:
        """Refuse new batches, wait for the submitted ones, close the connections."""
        self._state.closed = True
        try:
            await self.flush()
        finally:
            if self._session is not None and not self._pending:  # a cancelled close leaves them running
                await self._session.close()
                self._session = None

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _deliver(self, body: Body, sequence: int, auto: bool) -> Ack:
        async with self._order:
            if self._state.failure is not None:
                self._state.check()
            with self._state.delivering(sequence):
                answer = await self._run(self._state.ingest_exchange(body, sequence))
                return self._state.acknowledge(sequence, auto, answer)

    async def _run(self, steps: Exchange) -> Answer:
        outcome: Outcome | None = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                outcome = None
            else:
                outcome = await self._call(step)

    async def _call(self, call: Call) -> Outcome:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(
                call.method, call.url, data=call.body, headers=call.headers, ssl=self._ssl
            ) as response:
                payload = await response.read()
                return _decoded(response.status, payload, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as err:
            return Outcome(None, error=f"{type(err).__name__}: {err}")
