"""The checkpointer beside the committer, on a real table: commits never wait for a checkpoint, and the
committer takes the table loaded from a checkpoint at its next commit."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from deltaingest.config import Settings
from deltaingest.ingest.committer import Batch
from deltaingest.ingest.service import open_writer
from deltaingest.maintenance.checkpoint import Checkpointer
from tests.helpers import wait_for

SCHEMA = [{"name": "id", "type": "long", "nullable": False}]


def _ids(start: int, n: int = 1) -> pa.Table:
    return pa.table(
        {"id": pa.array(range(start, start + n), pa.int64())},
        schema=pa.schema([pa.field("id", pa.int64(), nullable=False)]),
    )


def _checkpoints(uri: str) -> list[str]:
    return sorted(p.name for p in (Path(uri) / "_delta_log").glob("*.checkpoint.parquet"))


def test_commits_go_on_while_a_checkpoint_is_held_up_and_then_use_its_fresh_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()
    real = Checkpointer._checkpoint

    def held_up(self: Checkpointer, version: int) -> None:
        started.set()
        assert release.wait(timeout=60), "the test never released the checkpoint"
        real(self, version)

    monkeypatch.setattr(Checkpointer, "_checkpoint", held_up)
    uri = str(tmp_path / "t")
    settings = Settings.model_validate(
        {
            "table": {"uri": uri, "schema": SCHEMA},
            "writer": {"checkpointEvery": 2, "checkpointIntervalSeconds": 0},
        }
    )
    writer = open_writer(settings)
    try:
        writer.committer.commit([Batch(_ids(0))])
        writer.committer.commit([Batch(_ids(1))])  # version 2: a checkpoint is due
        assert started.wait(timeout=60)
        # The checkpoint thread is stuck; the committer is not: ten more groups land meanwhile.
        versions = [writer.committer.commit([Batch(_ids(i), "p", i)]).version for i in range(2, 12)]
        assert versions == list(range(3, 13)) and _checkpoints(uri) == []
        release.set()
        wait_for(writer.table.has_fresh, "the checkpointer's fresh table")
        assert _checkpoints(uri) == ["00000000000000000002.checkpoint.parquet"]
        # The next commit swaps the fresh table in (loaded from the checkpoint) and catches up from there.
        assert writer.committer.commit([Batch(_ids(12), "p", 12)]).version == 13
        assert not writer.table.has_fresh()
        assert writer.table.table.transaction_version("p") == 12
    finally:
        release.set()
        writer.close()
    assert sorted(DeltaTable(uri).to_pyarrow_table().column("id").to_pylist()) == list(range(13))
