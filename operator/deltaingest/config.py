"""Typed settings for the table, the writer and the lock: one model shared by the CLI and (later) the CRD."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """Base for every settings model: camelCase in files (as in Kubernetes), snake_case in code, no extras."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ColumnSpec(Model):
    """One column of the table schema, typed with Delta's type names (``long``, ``decimal(10,2)``, ...)."""

    name: str = Field(min_length=1)
    type: str = Field(min_length=1, description="Delta type: long, string, timestamp, array<int>, ...")
    nullable: bool = True

    @field_validator("type")
    @classmethod
    def _type_parses(cls, value: str) -> str:
        from deltaingest.table.schema import parse_type  # noqa: PLC0415 (schema imports this module)

        parse_type(value)
        return value


class TableSpec(Model):
    """What the table is and, when it does not exist yet, how to create it."""

    uri: str | None = None
    columns: list[ColumnSpec] = Field(default_factory=list, alias="schema")
    partition_by: list[str] = Field(default_factory=list)
    properties: dict[str, str] = Field(default_factory=dict)
    create_if_missing: bool = True
    name: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _columns_consistent(self) -> TableSpec:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names in schema: {dupes}")
        missing = [p for p in self.partition_by if p not in names]
        if self.columns and missing:
            raise ValueError(f"partitionBy names columns that are not in the schema: {missing}")
        return self


class BatchingSpec(Model):
    """Group-commit limits: a group closes when any limit is reached or no commit is in flight."""

    max_rows: int = Field(default=200_000, ge=1)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_delay_ms: float = Field(
        default=0.0, ge=0, le=60_000, description="Extra wait for more requests before a commit; 0 = none"
    )


class WriterSpec(Model):
    """The HTTP ingest server."""

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_inflight_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A request body not fully received by then gets 408"
    )
    unknown_fields: Literal["reject", "drop"] = "reject"
    checkpoint_every: int = Field(
        default=10, ge=1, description="Write a checkpoint (off the request path) every N versions"
    )
    commit_attempts: int = Field(default=5, ge=1, le=100)
    auth_token_env: str | None = Field(
        default=None, description="Name of an environment variable holding a bearer token clients must send"
    )
    shutdown_grace_seconds: float = Field(default=25.0, ge=0)


class LockSpec(Model):
    """The commit lock. ``auto``: a lock file for local tables, none for object stores."""

    kind: Literal["auto", "none", "file", "dynamodb"] = "auto"
    table_name: str = "deltaingest_locks"
    endpoint: str | None = None
    region: str | None = None
    create_table: bool = True
    lease_seconds: float = Field(default=20.0, ge=1, le=3600)
    retry_min_ms: float = Field(default=2.0, gt=0)
    retry_max_ms: float = Field(default=50.0, gt=0)
    acquire_timeout_seconds: float = Field(default=30.0, gt=0)


class Settings(Model):
    """Everything a ``deltaingest`` process needs besides credentials (which come from the environment)."""

    table: TableSpec = Field(default_factory=TableSpec)
    storage_options: dict[str, str] = Field(default_factory=dict)
    writer: WriterSpec = Field(default_factory=WriterSpec)
    locking: LockSpec = Field(default_factory=LockSpec)


def load_settings(path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read a YAML (or JSON) settings file and apply CLI overrides given as a nested dict."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        data = loaded
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    return Settings.model_validate(data)
