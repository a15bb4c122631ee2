"""The committer when a write fails: before it lands (retried) or after (acknowledged once, not rewritten).

No real store loses a response on demand, so the fault is injected around delta-rs' write call; the table,
the lock and everything else are real.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

import deltaingest.ingest.committer as committer_module
from deltaingest.config import Settings
from deltaingest.ingest.committer import Batch
from deltaingest.ingest.errors import CommitFailed
from deltaingest.ingest.service import Writer, open_writer
from deltaingest.locking.lease import Lease, LeaseLost, LockTimeout

SCHEMA = [{"name": "id", "type": "long", "nullable": False}]


@pytest.fixture
def writer(tmp_path: Path) -> Writer:
    settings = Settings.model_validate({"table": {"uri": str(tmp_path / "t"), "schema": SCHEMA}})
    opened = open_writer(settings)
    yield opened  # type: ignore[misc]
    opened.close()


def _ids(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {"id": pa.array(range(start, start + n), pa.int64())},
        schema=pa.schema([pa.field("id", pa.int64(), nullable=False)]),
    )


def _faulty(after_landing: bool, times: int) -> Callable[..., None]:
    real = committer_module.write_deltalake
    calls = {"n": 0}

    def write(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] <= times:
            if after_landing:
                real(*args, **kwargs)
            raise OSError("connection reset by peer")
        real(*args, **kwargs)

    return write


def _rows(writer: Writer) -> list[int]:
    return sorted(DeltaTable(writer.table.uri).to_pyarrow_table().column("id").to_pylist())


def test_lost_response_after_landing_is_acknowledged_not_rewritten(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(committer_module, "write_deltalake", _faulty(after_landing=True, times=1))
    result = writer.committer.commit([Batch(_ids(3)), Batch(_ids(2, 10), "p", 1)])
    assert result.written == (True, True)
    assert result.version == 1
    assert _rows(writer) == [0, 1, 2, 10, 11]  # exactly once, although the write was "retried"
    assert DeltaTable(writer.table.uri).version() == 1


def test_failure_before_landing_is_retried(writer: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(committer_module, "write_deltalake", _faulty(after_landing=False, times=2))
    result = writer.committer.commit([Batch(_ids(3))])
    assert result.version == 1
    assert _rows(writer) == [0, 1, 2]
    assert writer.metrics.commit_retries._value.get() == 2


def test_persistent_failure_fails_the_group_and_writes_nothing(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(committer_module, "write_deltalake", _faulty(after_landing=False, times=100))
    with pytest.raises(CommitFailed, match="after 5 attempt"):
        writer.committer.commit([Batch(_ids(3))])
    assert DeltaTable(writer.table.uri).version() == 0
    monkeypatch.undo()
    assert writer.committer.commit([Batch(_ids(1, 7))]).version == 1  # and the writer recovers
    assert _rows(writer) == [7]


def test_lost_lease_is_retried_under_a_new_lease(writer: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = committer_module.check_lease
    tokens: list[int | None] = []

    def expire_once(lease: Lease, margin: float = 1.0) -> None:
        tokens.append(lease.token)
        if len(tokens) == 1:
            raise LeaseLost("lease expired before the commit")
        real(lease, margin=margin)

    monkeypatch.setattr(committer_module, "check_lease", expire_once)
    result = writer.committer.commit([Batch(_ids(2))])
    assert result.version == 1 and _rows(writer) == [0, 1]
    assert len(tokens) == 2 and tokens[1] is not None and tokens[0] is not None and tokens[1] > tokens[0]
    assert writer.metrics.commit_retries._value.get() == 1


def test_lock_timeout_fails_the_group_at_once(writer: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    def busy() -> Lease:
        raise LockTimeout("held by someone else")

    monkeypatch.setattr(writer.lock, "acquire", busy)
    with pytest.raises(CommitFailed, match="after 1 attempt"):
        writer.committer.commit([Batch(_ids(1))])


def test_an_unlocked_writer_skips_the_log_read_yet_commits_a_sequence_once(
    s3_uri: str, cloud_env: dict[str, str]
) -> None:
    """Without a lock the writer trusts its own last commit and does not LIST the log before the next one.
    Two writers on one table (a misconfiguration, or a rolling update) must still commit a producer's
    sequence once: delta-rs refuses a commit whose txn app id a newer commit carries, and the committer
    re-reads the log and re-plans."""
    settings = Settings.model_validate(
        {"table": {"uri": s3_uri, "schema": SCHEMA}, "locking": {"kind": "none"}}
    )
    a, b = open_writer(settings), open_writer(settings)
    try:
        assert b.committer.commit([Batch(_ids(1, 100))]).version == 1
        lists = {"n": 0}
        real_refresh = b.table.refresh

        def counted_refresh() -> None:
            lists["n"] += 1
            real_refresh()

        b.table.refresh = counted_refresh  # type: ignore[method-assign]
        assert b.committer.commit([Batch(_ids(1, 101))]).version == 2
        assert lists["n"] == 0, "a lone unlocked writer re-read the log before committing"
        a.table.refresh()
        assert a.committer.commit([Batch(_ids(2, 0), "p", 5)]).written == (True,)  # b has not seen this
        retried = b.committer.commit([Batch(_ids(2, 0), "p", 5)])  # the producer's retry reaches b
        assert retried.written == (False,), "a sequence committed by the other writer was written again"
        assert b.committer.commit([Batch(_ids(1, 2), "p", 6)]).written == (True,)
    finally:
        a.close()
        b.close()
    rows = DeltaTable(s3_uri, storage_options=cloud_env).to_pyarrow_table().column("id").to_pylist()
    assert sorted(rows) == [0, 1, 2, 100, 101]
