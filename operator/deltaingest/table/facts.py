"""Facts about a table read from its log: the active files (for the planner) and a summary for gauges."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

Partition = tuple[tuple[str, str | None], ...]  # (column, value as text or None) per partition column


@dataclass(frozen=True)
class DataFile:
    """One active file of the table: what the compaction planner and the gauges work from."""

    path: str
    size: int
    partition: Partition
    modified: float  # seconds since the epoch


def active_files(table: DeltaTable) -> list[DataFile]:
    """The files of the loaded version, with their partition values as strings (None for null)."""
    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    columns = table.metadata().partition_columns
    files: list[DataFile] = []
    for index, path in enumerate(actions["path"]):
        partition = tuple((c, _text(actions[f"partition.{c}"][index])) for c in columns)
        files.append(
            DataFile(
                path=path,
                size=int(actions["size_bytes"][index]),
                partition=partition,
                modified=int(actions["modification_time"][index]) / 1000,
            )
        )
    return files


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class TableFacts:
    version: int
    files: int
    small_files: int
    bytes: int

    def as_dict(self) -> dict[str, int]:
        return {
            "version": self.version,
            "files": self.files,
            "smallFiles": self.small_files,
            "bytes": self.bytes,
        }


def summarize(version: int, files: list[DataFile], *, small_file_size: int) -> TableFacts:
    return TableFacts(
        version=version,
        files=len(files),
        small_files=sum(1 for f in files if f.size < small_file_size),
        bytes=sum(f.size for f in files),
    )
