"""Table creation from settings and background checkpoints, on a local table and on SeaweedFS."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from deltaingest.config import Settings
from deltaingest.ingest.committer import Batch
from deltaingest.ingest.service import open_writer
from deltaingest.table.hot import TableMissing
from tests.helpers import wait_for

SCHEMA = [
    {"name": "id", "type": "long", "nullable": False},
    {"name": "day", "type": "date"},
]
ARROW = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("day", pa.date32())])


def _batch(start: int, n: int = 5) -> Batch:
    days = [f"2024-05-0{1 + i % 3}" for i in range(start, start + n)]
    return Batch(
        pa.table({"id": list(range(start, start + n)), "day": pa.array(days).cast(pa.date32())}, ARROW)
    )


def test_created_with_partitions_and_properties(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    properties = {"delta.targetFileSize": "134217728", "delta.logRetentionDuration": "interval 7 days"}
    table_spec = {
        "uri": uri,
        "schema": SCHEMA,
        "partitionBy": ["day"],
        "name": "events",
        "properties": properties,
    }
    settings = Settings.model_validate({"table": table_spec})
    writer = open_writer(settings)
    try:
        writer.committer.commit([_batch(0, 6)])
    finally:
        writer.close()
    table = DeltaTable(uri)
    metadata = table.metadata()
    assert metadata.partition_columns == ["day"]
    assert metadata.name == "events"
    assert metadata.configuration["delta.targetFileSize"] == "134217728"
    assert sorted(p.name for p in Path(uri).glob("day=*")) == [
        "day=2024-05-01",
        "day=2024-05-02",
        "day=2024-05-03",
    ]
    assert table.to_pyarrow_table().num_rows == 6


def test_existing_table_wins_over_settings_and_missing_table_is_refused(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    open_writer(Settings.model_validate({"table": {"uri": uri, "schema": SCHEMA}})).close()
    other = [{"name": "x", "type": "string"}]
    writer = open_writer(Settings.model_validate({"table": {"uri": uri, "schema": other}}))
    try:
        assert writer.table.schema.names == ["id", "day"]
    finally:
        writer.close()
    with pytest.raises(TableMissing, match="createIfMissing is false"):
        open_writer(Settings.model_validate({"table": {"uri": str(tmp_path / "u"), "schema": SCHEMA,
                                                       "createIfMissing": False}}))  # fmt: skip
    assert not (tmp_path / "u" / "_delta_log").exists()


@pytest.mark.parametrize("where", ["local", "seaweedfs"])
def test_background_checkpoints_and_hot_table_swap(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if where == "seaweedfs":
        request.getfixturevalue("cloud_env")
        uri = request.getfixturevalue("s3_uri")
    else:
        uri = str(tmp_path / "t")
    settings = Settings.model_validate(
        {"table": {"uri": uri, "schema": SCHEMA}, "writer": {"checkpointEvery": 4}}
    )
    writer = open_writer(settings)
    try:
        for i in range(10):
            writer.committer.commit([_batch(i * 5)])
        checkpoints = writer.metrics.checkpoints.labels("success")
        wait_for(lambda: checkpoints._value.get() >= 2, "two background checkpoints")
        for i in range(10, 14):  # commits after the swap to a table loaded from a checkpoint
            writer.committer.commit([_batch(i * 5)])
        assert writer.table.version() == 14
    finally:
        writer.close()
    table = DeltaTable(uri, storage_options=writer.table.options)
    assert table.version() == 14
    assert sorted(table.to_pyarrow_table().column("id").to_pylist()) == list(range(70))
    assert len([h for h in table.history() if h["operation"] == "WRITE"]) == 14
    if where == "local":
        assert list(Path(uri, "_delta_log").glob("*.checkpoint.parquet"))
        assert Path(uri, "_delta_log", "_last_checkpoint").exists()
