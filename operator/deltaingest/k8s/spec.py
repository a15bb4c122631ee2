"""The DeltaTableIngest resource as typed models: the one source of the CRD schema, defaults and checks.

Each policy section subclasses the settings model the workloads read (``config.py``), so a knob is declared
once and means the same in a settings file, on the command line and in a manifest. Cross-field checks are
written twice on purpose, in the two languages that need them: a pydantic validator for Python callers and a
CEL rule (``x-kubernetes-validations``) next to it, so the API server rejects the same manifest at apply time.

A rule must hold on every value the API server evaluates it on, and that is more than defaulted objects: it
checks each ``default`` as written, at its own level (``compaction: {}`` has no ``smallFileSize``), and a key
that is absent is an evaluation error, not a false. So every rule guards each optional field with ``has()``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, WithJsonSchema, model_validator

from deltaingest.config import (
    CompactionPolicy,
    DeadLetterSpec,
    LockPolicy,
    Model,
    OtlpLogsSpec,
    SourceSpec,
    TableSpec,
    VacuumPolicy,
    WriterPolicy,
    check_dead_letter_retention,
    check_source,
)
from deltaingest.otlp_layout import LOG_RECORD_COLUMNS

GROUP = "deltaingest.io"
VERSION = "v1alpha1"
KIND = "DeltaTableIngest"
PLURAL = "deltatableingests"
SINGULAR = "deltatableingest"
SHORT_NAMES = ["dti"]
API_VERSION = f"{GROUP}/{VERSION}"

# The longest child name is "<name>-compaction" and a CronJob name may have at most 52 characters
# (its Jobs append 11), so the resource name is capped at 52 - len("-compaction").
MAX_NAME_LENGTH = 41

# Object-store URIs only: every writer replica and maintenance Job must reach the same table.
TABLE_URI_PATTERN = r"^s3a?://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?$"
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"

# A Kubernetes quantity: 2, 500m, 1Gi. The API server parses it; the schema only says "int or string".
Quantity = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
]


def _cel(*rules: tuple[str, str]) -> ConfigDict:
    """Model config carrying CEL rules into the generated schema (checked by the API server)."""
    extra: dict[str, Any] = {
        "x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]
    }
    return ConfigDict(json_schema_extra=extra)


class SecretKeyRef(Model):
    """One key of a Secret in the resource's namespace."""

    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)


class Resources(Model):
    """Container resource requests and limits, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class Pods(Model):
    """Scheduling, pulling and metadata for every pod of the table (writers and maintenance Jobs)."""

    image_pull_secrets: list[str] = Field(default_factory=list, description="Secret names for the registry")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="As in a Pod spec")
    affinity: dict[str, Any] = Field(default_factory=dict, description="As in a Pod spec")
    priority_class_name: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict, description="Added to the operator's own labels")


class Table(TableSpec):
    """The Delta table: where it lives and, if it does not exist yet, how the writer creates it."""

    model_config = _cel(("self.uri == oldSelf.uri", "table.uri is immutable: create a new resource instead"))

    uri: str = Field(  # required here, optional in a settings file
        pattern=TABLE_URI_PATTERN, description="s3://bucket/path of the table (any S3-compatible store)"
    )


class OtlpLogs(OtlpLogsSpec):
    """OTLP/HTTP logs into a table of the log layout (its columns generated)."""

    model_config = _cel(
        (
            "!has(self.columns) || self.columns.all(c, !(c.column in ["
            + ", ".join(f"'{name}'" for name, _, _ in LOG_RECORD_COLUMNS)
            + "]) && self.columns.exists_one(d, d.column == c.column))",
            "source.otlp.columns repeat a column (or one of the log layout's)",
        )
    )


class Source(SourceSpec):
    """What the writer takes besides its own API."""

    otlp: OtlpLogs | None = Field(
        default=None,
        description="OTLP/HTTP logs on /v1/logs; the table's schema and partitioning are the log layout",
    )


class Credentials(Model):
    """Static S3 credentials from a Secret. Leave out to use the pod's identity (IRSA, Pod Identity)."""

    secret_name: str = Field(min_length=1, max_length=253)
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"
    session_token_key: str | None = None


class Storage(Model):
    """How workloads and the operator reach the object store."""

    endpoint: str | None = Field(
        default=None, pattern=r"^https?://", description="S3 endpoint (MinIO, SeaweedFS); default: AWS"
    )
    region: str | None = Field(default=None, description="Signing region; default us-east-1")
    credentials: Credentials | None = None
    options: dict[str, str] = Field(
        default_factory=dict, description="Extra delta-rs storage options (not secrets)"
    )


class Locking(LockPolicy):
    """The DynamoDB lease that serializes commits of the writer replicas and gives maintenance a lease."""

    kind: Literal["dynamodb", "none"] = Field(
        default="none", description="none: one writer replica; S3 conditional writes still guard the log"
    )


class DeadLetter(DeadLetterSpec):
    """The dead-letter table (an object-store URI), kept by the table's compaction and vacuum CronJobs."""

    uri: str | None = Field(
        default=None,
        pattern=TABLE_URI_PATTERN,
        description="s3://bucket/path of the dead-letter table (created when missing), outside the table's",
    )


class Writer(WriterPolicy):
    """The writer Deployment: the HTTP ingest path."""

    model_config = _cel(
        (
            "!has(self.invalidRows) || self.invalidRows != 'deadLetter' || "
            "(has(self.deadLetter) && has(self.deadLetter.uri))",
            "writer.invalidRows: deadLetter needs writer.deadLetter.uri",
        )
    )

    replicas: int = Field(default=1, ge=0, le=64, description="Writer pods (the scale subresource)")
    image: str | None = Field(default=None, description="Default: the operator's own image")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    resources: Resources = Field(default_factory=Resources)
    auth_token_secret: SecretKeyRef | None = Field(
        default=None, description="Clients must send this token as 'Authorization: Bearer ...'"
    )
    dead_letter: DeadLetter = Field(default_factory=DeadLetter)


class MaintenanceJob(Model):
    """What the two maintenance CronJobs share besides their schedule."""

    suspend: bool = Field(default=False, description="Suspend this CronJob only")
    resources: Resources = Field(default_factory=Resources)


class Compaction(CompactionPolicy, MaintenanceJob):
    """The compaction CronJob: each run checks the triggers and merges small files where they fire."""

    model_config = _cel(
        (
            "!has(self.smallFileSize) || !has(self.targetFileSize) || "
            "self.smallFileSize <= self.targetFileSize",
            "smallFileSize must not exceed targetFileSize",
        )
    )

    schedule: str = Field(default="*/5 * * * *", pattern=CRON_PATTERN, description="Cron schedule")


class Vacuum(VacuumPolicy, MaintenanceJob):
    """The vacuum CronJob: deletes files past the retention, then checkpoints and cleans up the log."""

    model_config = _cel(
        (
            "!has(self.full) || !self.full || !has(self.retainHours) || self.retainHours >= 1.0",
            "full vacuum needs retainHours of at least 1",
        )
    )

    schedule: str = Field(default="0 * * * *", pattern=CRON_PATTERN, description="Cron schedule")


class DeltaTableIngestSpec(Model):
    """A Delta table fed by writers and kept healthy by compaction and vacuum."""

    model_config = _cel(
        (
            "!has(self.writer) || !has(self.writer.replicas) || self.writer.replicas <= 1 || "
            "(has(self.locking) && has(self.locking.kind) && self.locking.kind == 'dynamodb')",
            "more than one writer replica needs locking.kind: dynamodb",
        ),
        (
            "!has(self.table.partitionBy) || !has(self.table.schema) || size(self.table.schema) == 0 || "
            "self.table.partitionBy.all(p, self.table.schema.exists(c, c.name == p))",
            "table.partitionBy names a column that is not in table.schema",
        ),
        (
            "!has(self.vacuum) || !has(self.vacuum.full) || !self.vacuum.full || !has(self.writer) || "
            "!has(self.writer.deadLetter) || !has(self.writer.deadLetter.retainHours) || "
            "self.writer.deadLetter.retainHours >= 1.0",
            "full vacuum needs writer.deadLetter.retainHours of at least 1",
        ),
        (
            "!has(self.source) || !has(self.source.otlp) || "
            "((!has(self.table.schema) || size(self.table.schema) == 0) && "
            "(!has(self.table.partitionBy) || size(self.table.partitionBy) == 0))",
            "source.otlp generates table.schema and table.partitionBy (the log layout): leave both out",
        ),
    )

    table: Table
    storage: Storage = Field(default_factory=Storage)
    locking: Locking = Field(default_factory=Locking)
    writer: Writer = Field(default_factory=Writer)
    compaction: Compaction = Field(default_factory=Compaction)
    vacuum: Vacuum = Field(default_factory=Vacuum)
    source: Source = Field(default_factory=Source)
    pods: Pods = Field(default_factory=Pods)
    suspend: bool = Field(default=False, description="Scale writers to 0 and suspend both CronJobs")
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount for the workloads (IRSA / Pod Identity on AWS)"
    )

    @model_validator(mode="after")
    def _replicas_need_a_lock(self) -> DeltaTableIngestSpec:
        if self.writer.replicas > 1 and self.locking.kind != "dynamodb":
            raise ValueError("more than one writer replica needs locking.kind: dynamodb")
        check_dead_letter_retention(self.vacuum, self.writer.dead_letter)
        check_source(self.table, self.source)
        return self


class Condition(Model):
    """A status condition in the shape every Kubernetes tool understands (metav1.Condition)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class WriterStatus(Model):
    desired: int = 0
    ready: int = 0
    summary: str = Field(default="0/0", description="ready/desired, for kubectl get")


class ColumnStatus(Model):
    name: str
    type: str


class TableFactsStatus(Model):
    """A table's version and file counts, as the operator last read them from its log."""

    version: int | None = None
    active_files: int | None = None
    small_files: int | None = None
    bytes: int | None = None
    checked_at: str | None = None


class TableStatus(TableFactsStatus):
    added_columns: list[ColumnStatus] = Field(
        default_factory=list,
        max_length=1000,
        description="Columns the table has beyond spec.table.schema (writer.schemaEvolution: addColumns, "
        "or added by hand): informational, not an error",
    )


class RunStatus(Model):
    """The outcome of the newest finished maintenance Job."""

    job: str
    result: Literal["Succeeded", "Failed"]
    start_time: str | None = None
    completion_time: str | None = None
    message: str | None = None


class DeltaTableIngestStatus(Model):
    """What the operator last saw; written on every reconcile."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int = Field(default=0, description="Ready writer pods (the scale subresource)")
    selector: str | None = Field(default=None, description="Writer pod selector (the scale subresource)")
    writers: WriterStatus = Field(default_factory=WriterStatus)
    table: TableStatus = Field(default_factory=TableStatus)
    dead_letter_table: TableFactsStatus | None = Field(
        default=None, description="The dead-letter table's facts (writer.invalidRows: deadLetter)"
    )
    last_compaction: RunStatus | None = None
    last_vacuum: RunStatus | None = None


def parse_spec(spec: Any) -> DeltaTableIngestSpec:
    """The resource's ``spec`` as a model; raises ``pydantic.ValidationError`` naming each bad field."""
    return DeltaTableIngestSpec.model_validate(spec)
