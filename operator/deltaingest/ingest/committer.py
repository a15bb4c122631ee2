"""One group commit: take the lock, bring the table up to date, drop already-committed sequences, append,
stamp the commit with the fencing token, release. Runs on the single commit thread.

With a dead-letter table, a group's dead rows are committed there after the table's commit, under the same
lease, with the producers' sequences as ``txn`` actions of the dead-letter table too: a retry after the first
of the two commits landed (on any replica) finds its sequence committed in the table and writes only the dead
rows still missing. Which batches a group writes is decided before anything is written, so the two commits
always hold the same batches."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import pyarrow as pa
from deltalake import write_deltalake
from deltalake.transaction import CommitProperties, Transaction

from deltaingest.ingest.deadletter import DEAD_LETTER_SCHEMA
from deltaingest.ingest.decode import DeadRow
from deltaingest.ingest.errors import CommitFailed, Unprocessable
from deltaingest.ingest.group_schema import fit_group
from deltaingest.locking.lease import Lease, Lock, LockTimeout, check_lease
from deltaingest.metrics import Metrics
from deltaingest.table.hot import NO_HOOKS, HotTable

log = logging.getLogger(__name__)

FENCING_TOKEN_KEY = "deltaingest.fencingToken"
WRITER_KEY = "deltaingest.writer"
COMMIT_ID_KEY = "deltaingest.commitId"
# How many recent commits to search for one whose outcome was ambiguous.
_HISTORY_SEARCH = 200


@dataclass(frozen=True)
class Batch:
    """The rows of one request, already validated, and its exactly-once identity if the producer sent one;
    with dead-lettering, also the rows set apart and what the dead-letter table records of the request."""

    data: pa.Table
    producer: str | None = None
    sequence: int | None = None
    dead: tuple[DeadRow, ...] = ()
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    request_id: str | None = None
    source: Literal["http", "otlp"] = "http"  # the front door: the writer's own API, or OTLP logs


def dead_letter_rows(batches: Sequence[Batch]) -> pa.Table:
    """The dead rows of ``batches``, in order, each with its batch's identity: rows for the dead-letter
    table."""
    dead = [(batch, row) for batch in batches for row in batch.dead]
    return pa.Table.from_pydict(
        {
            "raw": [row.raw for _, row in dead],
            "error": [row.error for _, row in dead],
            "field": [row.field for _, row in dead],
            "row_number": [row.row for _, row in dead],
            "received_at": [batch.received_at for batch, _ in dead],
            "producer_id": [batch.producer for batch, _ in dead],
            "sequence": [batch.sequence for batch, _ in dead],
            "request_id": [batch.request_id for batch, _ in dead],
        },
        schema=DEAD_LETTER_SCHEMA,
    )


@dataclass(frozen=True)
class GroupResult:
    """Where a group landed. ``written[i]`` is False when batch i was a retry of a committed sequence, or
    when it was refused: ``refused[i]`` then says why (its new columns disagree with the group's or the
    table's); the rest of the group is committed without it."""

    version: int
    written: tuple[bool, ...]
    refused: dict[int, Unprocessable] = field(default_factory=dict)


def plan_writes(
    batches: Sequence[Batch], committed: Callable[[str], int | None]
) -> tuple[tuple[bool, ...], dict[str, int]]:
    """Which batches to write, and the ``txn`` version to record per producer. Pure given ``committed``.

    A batch whose sequence is at or below its producer's committed version was already written (a retry
    after a lost acknowledgement) and is acknowledged without writing. Delta allows one ``txn`` per app id
    and commit, so a producer with several batches in the group records its highest sequence.
    """
    written: list[bool] = []
    txns: dict[str, int] = {}
    known: dict[str, int | None] = {}
    for batch in batches:
        if batch.producer is None or batch.sequence is None:
            written.append(True)
            continue
        if batch.producer not in known:
            known[batch.producer] = committed(batch.producer)
        last = known[batch.producer]
        fresh = last is None or batch.sequence > last
        written.append(fresh)
        if fresh:
            txns[batch.producer] = max(txns.get(batch.producer, batch.sequence), batch.sequence)
    return tuple(written), txns


class Committer:
    """Commits groups of batches to one table, serialized by ``lock`` across processes."""

    def __init__(
        self,
        table: HotTable,
        lock: Lock,
        *,
        metrics: Metrics,
        attempts: int = 5,
        on_commit: Callable[[int], None] | None = None,
        dead_letters: HotTable | None = None,
        on_dead_letter_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._table = table
        self._table_id = table.table.metadata().id
        self._dead_letters = dead_letters
        self._on_dead_letter_commit = on_dead_letter_commit
        self._lock = lock
        self._metrics = metrics
        self._attempts = attempts
        self._on_commit = on_commit
        # Our own txn app id: after an ambiguous failure it tells whether the commit landed after all.
        self._app_id = f"deltaingest-writer:{lock.holder}"
        self._commit_seq = 0
        self._suspect = False  # the loaded table may be wrong after a failed attempt
        self._dead_letters_suspect = False
        # The plan of the last write sent for the current group: if that write landed although we saw an
        # error, a retry must acknowledge it with this plan instead of writing again.
        self._sent_plan: tuple[tuple[bool, ...], dict[int, Unprocessable]] | None = None

    def commit(self, batches: Sequence[Batch]) -> GroupResult:
        self._commit_seq += 1
        commit_id = self._commit_seq
        started = time.perf_counter()
        self._sent_plan = None
        for attempt in range(1, self._attempts + 1):
            try:
                result = self._attempt(batches, commit_id)
            except Exception as err:
                self._suspect = self._dead_letters_suspect = True
                # A lock we already waited acquireTimeoutSeconds for is final; a lost lease or a failed
                # lock call is retried like any other attempt, under a new lease.
                if attempt == self._attempts or isinstance(err, LockTimeout):
                    self._metrics.commits.labels("failure").inc()
                    raise CommitFailed(f"commit failed after {attempt} attempt(s): {err}") from err
                self._metrics.commit_retries.inc()
                log.warning("commit attempt %d failed, retrying: %s", attempt, err)
                time.sleep(min(0.05 * 2**attempt, 2.0))
                continue
            self._metrics.commits.labels("success").inc()
            self._metrics.commit_duration.observe(time.perf_counter() - started)
            self._metrics.table_version.set(result.version)
            rows = sum(b.data.num_rows for b, w in zip(batches, result.written, strict=True) if w)
            for batch, written in zip(batches, result.written, strict=True):
                if written and batch.data.num_rows:
                    self._metrics.source_rows.labels(batch.source).inc(batch.data.num_rows)
            if rows:
                self._metrics.batch_rows.observe(rows)
                self._metrics.batch_requests.observe(sum(result.written))
                self._metrics.ingest_rows.inc(rows)
            if self._on_commit is not None:
                self._on_commit(result.version)
            return result
        raise AssertionError("unreachable")

    def _attempt(self, batches: Sequence[Batch], commit_id: int) -> GroupResult:
        stage = self._metrics.commit_stage
        waited = time.perf_counter()
        lease = self._lock.acquire()
        locked = time.perf_counter()
        self._metrics.lock_wait.observe(locked - waited)
        stage.labels("lock").observe(locked - waited)
        try:
            self._catch_up(lease)
            stage.labels("catch_up").observe(time.perf_counter() - locked)
            result = self._commit_table(batches, commit_id, lease)
            self._write_dead_letters(batches, result.refused, commit_id, lease)
            lease.release_version = self._table.version()
            return result
        finally:
            self._lock.release(lease)

    def _commit_table(self, batches: Sequence[Batch], commit_id: int, lease: Lease) -> GroupResult:
        """The group's commit to the table, or what an earlier attempt's landed commit holds."""
        writing = time.perf_counter()
        table = self._table.table
        if self._sent_plan is not None and (table.transaction_version(self._app_id) or -1) >= commit_id:
            # The previous attempt's commit landed although we saw an error: acknowledge it, once.
            return GroupResult(self._find_version(commit_id), *self._sent_plan)
        written, refused, fresh, added = self._fit(batches, table.transaction_version)
        _, txns = plan_writes(fresh, table.transaction_version)
        data = pa.concat_tables([b.data for b in fresh]) if fresh else None
        if data is None or (data.num_rows == 0 and not txns):
            # Nothing for the table: every batch a duplicate or refused, or only unsequenced dead rows.
            return GroupResult(self._table.version(), written, refused)
        metadata = self._metadata(commit_id, lease)
        now_ms = int(time.time() * 1000)
        transactions = [Transaction(app, seq, now_ms) for app, seq in txns.items()]
        transactions.append(Transaction(self._app_id, commit_id, now_ms))
        check_lease(lease)
        self._sent_plan = written, refused
        # With no good rows but sequences to record (a request all dead letters), an empty append still
        # commits the txn actions: a retry of the request is then a duplicate here too.
        write_deltalake(
            table,
            data,
            mode="append",
            # New columns join the table's schema in this same commit (nullable, appended at the end).
            schema_mode="merge" if added else None,
            commit_properties=CommitProperties(custom_metadata=metadata, app_transactions=transactions),
            post_commithook_properties=NO_HOOKS,
        )
        self._metrics.commit_stage.labels("write").observe(time.perf_counter() - writing)
        if added:
            log.info("added columns %s to %s", list(added), self._table.uri)
            self._table.reread_schema()
        return GroupResult(self._table.version(), written, refused)

    def _fit(
        self, batches: Sequence[Batch], committed: Callable[[str], int | None]
    ) -> tuple[tuple[bool, ...], dict[int, Unprocessable], list[Batch], tuple[str, ...]]:
        """Which batches are written, which are refused and why, the written ones in the schema the group
        commits with (the table's as of now, plus the new columns they bring), and those new columns."""
        written, _ = plan_writes(batches, committed)
        indices = [i for i, w in enumerate(written) if w]
        fitted = fit_group(self._table.schema, [batches[i].data for i in indices])
        refused = {i: d for i, d in zip(indices, fitted.batches, strict=True) if isinstance(d, Unprocessable)}
        fresh = [
            replace(batches[i], data=d)
            for i, d in zip(indices, fitted.batches, strict=True)
            if not isinstance(d, Unprocessable)
        ]
        return tuple(w and i not in refused for i, w in enumerate(written)), refused, fresh, fitted.added

    def _metadata(self, commit_id: int, lease: Lease) -> dict[str, str]:
        return {
            WRITER_KEY: self._lock.holder,
            COMMIT_ID_KEY: str(commit_id),
            **({FENCING_TOKEN_KEY: str(lease.token)} if lease.token is not None else {}),
        }

    def _write_dead_letters(
        self, batches: Sequence[Batch], refused: dict[int, Unprocessable], commit_id: int, lease: Lease
    ) -> None:
        """Commit the dead rows of the group's batches that are in the table (written now, or duplicates of
        a committed sequence) to the dead-letter table, unless an earlier attempt (ours: our app id at this
        commit id) or replica (the producer's sequence) already did. A duplicate's dead rows are missing
        when a writer stopped between the two commits of its first try."""
        candidates = [b for i, b in enumerate(batches) if b.dead and i not in refused]
        if self._dead_letters is None or not candidates:
            return
        dead_letters = self._dead_letters
        if self._dead_letters_suspect:
            dead_letters.reload()
            self._dead_letters_suspect = False
        else:
            dead_letters.refresh()  # another replica may have written dead letters since
        table = dead_letters.table
        if (table.transaction_version(self._app_id) or -1) >= commit_id:
            return
        new, txns = plan_writes(candidates, lambda p: table.transaction_version(self._dead_letter_app(p)))
        todo = [b for b, n in zip(candidates, new, strict=True) if n]
        if not todo:
            return
        now_ms = int(time.time() * 1000)
        transactions = [Transaction(self._dead_letter_app(p), seq, now_ms) for p, seq in txns.items()]
        transactions.append(Transaction(self._app_id, commit_id, now_ms))
        check_lease(lease)
        write_deltalake(
            table,
            dead_letter_rows(todo),
            mode="append",
            commit_properties=CommitProperties(
                custom_metadata=self._metadata(commit_id, lease), app_transactions=transactions
            ),
            post_commithook_properties=NO_HOOKS,
        )
        self._metrics.dead_letters.inc(sum(len(b.dead) for b in todo))
        if self._on_dead_letter_commit is not None:
            self._on_dead_letter_commit(dead_letters.version())

    def _dead_letter_app(self, producer: str) -> str:
        """A producer's ``txn`` app id in the dead-letter table, which other tables' writers may share: the
        producer id at the table's id."""
        return f"{producer}@{self._table_id}"

    def _catch_up(self, lease: Lease) -> None:
        """Make the loaded table current, skipping the log read when the lock says nothing changed."""
        if self._suspect:
            self._table.reload()
            self._suspect = False
        elif (
            lease.known_version is None
            or lease.known_version != self._table.version()
            or self._table.has_fresh()
        ):
            self._table.refresh()

    def _find_version(self, commit_id: int) -> int:
        for entry in self._table.table.history(_HISTORY_SEARCH):
            if entry.get(WRITER_KEY) == self._lock.holder and entry.get(COMMIT_ID_KEY) == str(commit_id):
                return int(entry["version"])
        return self._table.version()
