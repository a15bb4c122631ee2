"""Typed settings for the table, the writer and the lock: one model shared by the CLI and the CRD."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from deltaingest.delta_types import parse_type
from deltaingest.otlp_layout import DATE_COLUMN, LOG_RECORD_COLUMNS


class Model(BaseModel):
    """Base for every settings model: camelCase in files (as in Kubernetes), snake_case in code, no extras."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ColumnSpec(Model):
    """One column of the table schema, typed with Delta's type names (``long``, ``decimal(10,2)``, ...)."""

    name: str = Field(min_length=1, max_length=255)
    type: str = Field(
        min_length=1, max_length=1024, description="Delta type: long, string, timestamp, array<int>, ..."
    )
    nullable: bool = True

    @field_validator("type")
    @classmethod
    def _type_parses(cls, value: str) -> str:
        parse_type(value)
        return value


class TableSpec(Model):
    """What the table is and, when it does not exist yet, how to create it."""

    uri: str | None = None
    # The caps keep the CRD's CEL rules over these lists within the API server's cost budget.
    columns: list[ColumnSpec] = Field(default_factory=list, alias="schema", max_length=1000)
    partition_by: list[Annotated[str, Field(max_length=255)]] = Field(default_factory=list, max_length=16)
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


class DeadLetterSpec(Model):
    """Where rows that cannot be written go with ``invalidRows: deadLetter``: a Delta table of their own."""

    uri: str | None = Field(
        default=None,
        description="The dead-letter Delta table (created when missing), reached with the table's storage "
        "options; not inside the table's own directory",
    )
    retain_hours: float | None = Field(
        default=None,
        ge=0,
        description="Vacuum retention of the dead-letter table, in hours; default: vacuum.retainHours",
    )


class WriterPolicy(Model):
    """How the writer batches, validates and commits: shared by the settings file and the custom resource."""

    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_inflight_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A request body not fully received by then gets 408"
    )
    unknown_fields: Literal["reject", "drop", "rescue"] = Field(
        default="reject",
        description="Fields not in the table: refuse the request, drop them, or rescue them (and values "
        "that fit no nullable column) as JSON into the _rescued_data column",
    )
    schema_evolution: Literal["none", "addColumns"] = Field(
        default="none",
        description="addColumns: top-level fields not in the table become new nullable columns, typed from "
        "the data and added in the commit of their rows; none: unknownFields decides",
    )
    infer_timestamps: bool = Field(
        default=False,
        description="With addColumns: a new field whose strings are all ISO-8601 date-times becomes a "
        "timestamp column (UTC; no offset means UTC) instead of a string column",
    )
    invalid_rows: Literal["reject", "deadLetter"] = Field(
        default="reject",
        description="Rows that cannot be written (a non-nullable column missing, null or unfit, an unknown "
        "field under reject, an NDJSON line that is not JSON): refuse the request, or write them to the "
        "deadLetter table and the request's good rows to the table",
    )
    dead_letter: DeadLetterSpec = Field(default_factory=DeadLetterSpec)
    checkpoint_every: int = Field(
        default=10,
        ge=1,
        description="Write a checkpoint (off the request path) after N versions, one at a time, no sooner "
        "than checkpointIntervalSeconds after the last, and always after 50 times N",
    )
    checkpoint_interval_seconds: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="At most one checkpoint in this many seconds: each rewrites the table's whole state",
    )
    commit_attempts: int = Field(default=5, ge=1, le=100)
    shutdown_grace_seconds: float = Field(
        default=25.0, ge=0, le=3600, description="On SIGTERM, finish in-flight commits within this time"
    )

    @model_validator(mode="after")
    def _dead_letter_has_a_table(self) -> Self:
        if self.invalid_rows == "deadLetter" and not self.dead_letter.uri:
            raise ValueError("writer.invalidRows is deadLetter, but writer.deadLetter.uri is not set")
        return self


class WriterSpec(WriterPolicy):
    """The HTTP ingest server."""

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    auth_token_env: str | None = Field(
        default=None, description="Name of an environment variable holding a bearer token clients must send"
    )


class LockPolicy(Model):
    """Where the DynamoDB lease lives and how it behaves: shared by the settings file and the resource."""

    table_name: str = Field(
        default="deltaingest_locks", min_length=3, max_length=255, pattern=r"^[a-zA-Z0-9_.-]+$"
    )
    endpoint: str | None = Field(default=None, description="DynamoDB endpoint; default: AWS for the region")
    region: str | None = None
    create_table: bool = Field(default=True, description="Create the lock table (with TTL) when missing")
    lease_seconds: float = Field(
        default=20.0,
        ge=1,
        le=3600,
        description="Maintenance lease: a compaction or vacuum run that stops renewing loses it after this",
    )
    commit_lease_seconds: float = Field(
        default=1.0,
        ge=0.2,
        le=60,
        description=(
            "Commit lease, kept across commits and renewed four times per lease: a writer that dies "
            "stalls the others' commits for about this long"
        ),
    )
    retry_min_ms: float = Field(default=2.0, gt=0, le=60_000)
    retry_max_ms: float = Field(default=50.0, gt=0, le=60_000)
    acquire_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)


class LockSpec(LockPolicy):
    """The commit lock. ``auto``: a lock file for local tables, none for object stores."""

    kind: Literal["auto", "none", "file", "dynamodb"] = "auto"


MIB = 1024 * 1024


class CompactionPolicy(Model):
    """When to merge small files and how (see ``maintenance/planner.py`` for the exact rules)."""

    target_file_size: int = Field(
        default=128 * MIB, ge=1024, description="Size of the files compaction writes"
    )
    small_file_size: int = Field(
        default=32 * MIB, ge=1, description="Files below this count as small for the triggers and gauges"
    )
    min_small_files: int = Field(
        default=32, ge=2, description="Trigger: this many small files (older than minAge) in a partition"
    )
    min_small_bytes: int = Field(
        default=128 * MIB, ge=1, description="Trigger: small files (older than minAge) adding up to this"
    )
    max_interval_seconds: float = Field(
        default=300.0, gt=0, description="Trigger: a small file (older than minAge) has waited this long"
    )
    min_age_seconds: float = Field(
        default=10.0, ge=0, description="Files younger than this do not count towards any trigger"
    )
    fan_in: int = Field(
        default=4,
        ge=2,
        le=64,
        description="Rewrite a file only into an output at least this many times its size (bounds rewrites)",
    )
    z_order_by: list[str] = Field(
        default_factory=list, description="Z-order these columns when compacting (rewrites whole partitions)"
    )
    attempts: int = Field(
        default=3, ge=1, le=20, description="Runs of one plan before giving up on a conflict"
    )

    @model_validator(mode="after")
    def _sizes_consistent(self) -> Self:
        if self.small_file_size > self.target_file_size:
            raise ValueError("compaction.smallFileSize must not exceed compaction.targetFileSize")
        return self


class CompactionSpec(CompactionPolicy):
    """Compaction in the all-in-one daemon: the policy plus how often the daemon evaluates it."""

    enabled: bool = True
    interval_seconds: float = Field(
        default=30.0, gt=0, description="How often the daemon evaluates the triggers"
    )


class VacuumPolicy(Model):
    """Which unreferenced files to delete."""

    retain_hours: float = Field(
        default=168.0, ge=0, description="Keep every file a version committed within this window needs"
    )
    keep_versions: int = Field(
        default=10, ge=1, le=1000, description="Also keep every file the newest N versions need, however old"
    )
    force: bool = Field(
        default=False,
        description="Allow a retention shorter than the table's delta.deletedFileRetentionDuration",
    )
    full: bool = Field(
        default=False,
        description="Also delete unreferenced files (left by crashed writers) older than the retention",
    )

    @model_validator(mode="after")
    def _full_needs_an_hour(self) -> Self:
        # In full mode a file is judged by its age alone; a writer's file not yet committed is seconds old.
        if self.full and self.retain_hours < 1:
            raise ValueError(
                "vacuum.full needs retainHours of at least 1: younger files may be uncommitted writes"
            )
        return self


class VacuumSpec(VacuumPolicy):
    """Vacuum in the all-in-one daemon: the policy plus how often the daemon runs it."""

    enabled: bool = True
    interval_seconds: float = Field(default=3600.0, gt=0, description="How often the daemon vacuums")


class OtlpColumn(Model):
    """An attribute of every log record given a column of its own (its value as text), besides the JSON."""

    attribute: str = Field(min_length=1, max_length=255, description="Attribute key, e.g. service.name")
    column: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    scope: Literal["resource", "scope", "record"] = Field(
        default="resource", description="Whose attributes: the resource's, the scope's or the record's"
    )


class OtlpLogsSpec(Model):
    """The writer takes OpenTelemetry logs (OTLP/HTTP ``POST /v1/logs``) into a table of log records."""

    columns: list[OtlpColumn] = Field(
        default_factory=lambda: [OtlpColumn(attribute="service.name", column="service_name")],
        max_length=64,
        description="Attributes promoted to columns of their own; default: service.name as service_name",
    )
    partition_by_date: bool = Field(
        default=True, description="Partition the table by the records' UTC date (the date column)"
    )

    @model_validator(mode="after")
    def _columns_are_new(self) -> Self:
        taken = {name for name, _, _ in LOG_RECORD_COLUMNS}
        names = [c.column for c in self.columns]
        clashes = sorted({n for n in names if n in taken or names.count(n) > 1})
        if clashes:
            raise ValueError(f"source.otlp.columns: {clashes} repeat a column (or one of the log layout's)")
        return self


class SourceSpec(Model):
    """What the writer takes besides its own API (which it always serves)."""

    otlp: OtlpLogsSpec | None = Field(
        default=None,
        description="OTLP/HTTP logs on /v1/logs; the table's schema and partitioning are the log layout",
    )


def log_columns(otlp: OtlpLogsSpec) -> list[ColumnSpec]:
    """The columns of a log table: the layout's, then the promoted attributes' (text)."""
    layout = [ColumnSpec(name=n, type=t) for n, t, _ in LOG_RECORD_COLUMNS]
    return layout + [ColumnSpec(name=c.column, type="string") for c in otlp.columns]


def effective_table(table: TableSpec, source: SourceSpec) -> TableSpec:
    """The table as the writer creates and checks it: with ``source.otlp``, the log layout's columns (and
    the date partition) in place of a schema of the user's."""
    if source.otlp is None:
        return table
    partition_by = [DATE_COLUMN] if source.otlp.partition_by_date else []
    return table.model_copy(update={"columns": log_columns(source.otlp), "partition_by": partition_by})


class Settings(Model):
    """Everything a ``deltaingest`` process needs besides credentials (which come from the environment)."""

    table: TableSpec = Field(default_factory=TableSpec)
    storage_options: dict[str, str] = Field(default_factory=dict)
    writer: WriterSpec = Field(default_factory=WriterSpec)
    locking: LockSpec = Field(default_factory=LockSpec)
    compaction: CompactionSpec = Field(default_factory=CompactionSpec)
    vacuum: VacuumSpec = Field(default_factory=VacuumSpec)
    source: SourceSpec = Field(default_factory=SourceSpec)

    @model_validator(mode="after")
    def _dead_letter_retention_fits(self) -> Self:
        check_dead_letter_retention(self.vacuum, self.writer.dead_letter)
        check_source(self.table, self.source)
        return self


def check_source(table: TableSpec, source: SourceSpec) -> None:
    """A log table's schema and partitions are the layout's: the settings must not give their own."""
    if source.otlp is not None and (table.columns or table.partition_by):
        raise ValueError(
            "source.otlp generates table.schema and table.partitionBy (the log layout): leave both out"
        )


def check_dead_letter_retention(vacuum: VacuumPolicy, dead_letter: DeadLetterSpec) -> None:
    """The dead-letter retention obeys the vacuum's own rule: a full vacuum needs at least an hour."""
    retain_hours = dead_letter.retain_hours
    if vacuum.full and retain_hours is not None and retain_hours < 1:
        raise ValueError(
            "vacuum.full needs writer.deadLetter.retainHours of at least 1: younger files may be "
            "uncommitted writes"
        )


def dead_letter_policies(settings: Settings) -> tuple[CompactionSpec, VacuumSpec]:
    """How the dead-letter table is kept: the table's compaction without z-ordering (its columns are not
    the table's), and the table's vacuum with ``writer.deadLetter.retainHours`` when that is set."""
    dead_letter, vacuum = settings.writer.dead_letter, settings.vacuum
    check_dead_letter_retention(vacuum, dead_letter)
    if dead_letter.retain_hours is not None:
        vacuum = vacuum.model_copy(update={"retain_hours": dead_letter.retain_hours})
    return settings.compaction.model_copy(update={"z_order_by": []}), vacuum


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
