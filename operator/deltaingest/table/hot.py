"""Opening (or creating) a Delta table, and keeping one loaded between commits."""

from __future__ import annotations

import logging
import os
import threading

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.schema import Field as DeltaField
from deltalake.schema import PrimitiveType
from deltalake.transaction import PostCommitHookProperties

from deltaingest.config import Settings, TableSpec
from deltaingest.table.schema import arrow_schema, normalize
from deltaingest.table.storage import is_object_store, redact, storage_options

log = logging.getLogger(__name__)

# Checkpoints and log cleanup are scheduled by us (the checkpointer, vacuum), never as a side effect of a
# commit: inside a writer's commit they would add their latency to a request.
NO_HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)


class TableMissing(RuntimeError):
    """The table does not exist and the settings do not allow or describe creating it."""


def resolve_uri(uri: str) -> str:
    """Object-store URIs as given; local paths made absolute so every process agrees on them."""
    if is_object_store(uri):
        return uri.rstrip("/")
    return os.path.abspath(uri.removeprefix("file://"))


def locate(settings: Settings) -> tuple[str, dict[str, str]]:
    """The table's resolved URI and its delta-rs storage options, or a clear error without a URI."""
    if not settings.table.uri:
        raise ValueError("no table URI: pass --table or set table.uri in the config file")
    uri = resolve_uri(settings.table.uri)
    return uri, storage_options(uri, overrides=settings.storage_options)


def locate_dead_letters(settings: Settings) -> tuple[str, dict[str, str]] | None:
    """The dead-letter table's resolved URI and storage options (the table's) with ``invalidRows:
    deadLetter``, else None. Refused when it is the table or lies inside it (the table's vacuum would delete
    its files)."""
    if settings.writer.invalid_rows != "deadLetter":
        return None
    uri, _ = locate(settings)
    assert settings.writer.dead_letter.uri is not None  # the settings model requires it here
    dead_uri = resolve_uri(settings.writer.dead_letter.uri)
    if dead_uri == uri or dead_uri.startswith(uri + "/") or uri.startswith(dead_uri + "/"):
        raise ValueError(
            f"writer.deadLetter.uri {dead_uri} must be a table of its own, outside the table {uri}"
        )
    return dead_uri, storage_options(dead_uri, overrides=settings.storage_options)


def open_table(uri: str, spec: TableSpec, options: dict[str, str]) -> DeltaTable:
    """Load the table, creating it from ``spec`` when absent (and allowed)."""
    try:
        return DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        pass
    if not spec.columns:
        raise TableMissing(
            f"table {uri} does not exist and the settings give no schema to create it from "
            "(set table.schema in the --config file)"
        )
    if not spec.create_if_missing:
        raise TableMissing(f"table {uri} does not exist and table.createIfMissing is false")
    if not is_object_store(uri):
        os.makedirs(uri, exist_ok=True)
    log.info("creating table %s (storage options %s)", uri, redact(options))
    try:
        DeltaTable.create(
            uri,
            arrow_schema(spec.columns),
            mode="error",
            partition_by=spec.partition_by or None,
            name=spec.name,
            description=spec.description,
            configuration=spec.properties or None,
            storage_options=options,
        )
    except Exception:
        # Another replica may have created it between our check and our create: that is fine.
        if not DeltaTable.is_deltatable(uri, storage_options=options):
            raise
    return DeltaTable(uri, storage_options=options)


def ensure_column(uri: str, options: dict[str, str], table: DeltaTable, name: str) -> DeltaTable:
    """The table with a nullable string column ``name``, added (one metadata commit) when absent.

    Another writer may add it at the same moment: if our commit fails, the table is read again and only a
    table still without the column is an error."""
    if name in table.schema().to_arrow().names:
        return table
    log.info("adding column %s (string, nullable) to %s", name, uri)
    try:
        table.alter.add_columns(
            DeltaField(name, PrimitiveType("string"), nullable=True), post_commithook_properties=NO_HOOKS
        )
    except Exception:
        table = DeltaTable(uri, storage_options=options)
        if name not in table.schema().to_arrow().names:
            raise
    return DeltaTable(uri, storage_options=options)


class HotTable:
    """One ``DeltaTable`` kept loaded, so a commit does not re-read the log.

    delta-rs' cost per commit grows with the number of log files since the last checkpoint, and a loaded
    table never notices checkpoints written later. The checkpointer therefore hands us a freshly loaded
    table after each checkpoint (``offer``) and the committer swaps it in at its next ``refresh``.
    Only the committer thread calls anything but ``offer``.
    """

    def __init__(self, uri: str, options: dict[str, str], table: DeltaTable) -> None:
        self.uri = uri
        self.options = options
        self._table = table
        self._fresh: DeltaTable | None = None
        self._guard = threading.Lock()
        self.schema = self._read_schema()

    @property
    def table(self) -> DeltaTable:
        return self._table

    def version(self) -> int:
        return int(self._table.version())

    def offer(self, fresh: DeltaTable) -> None:
        """Called from the checkpointer thread with a table loaded after a checkpoint."""
        with self._guard:
            self._fresh = fresh

    def has_fresh(self) -> bool:
        return self._fresh is not None

    def refresh(self) -> None:
        """Bring the table to the latest version, swapping in an offered fresh load first."""
        with self._guard:
            fresh, self._fresh = self._fresh, None
        if fresh is not None:
            self._table = fresh
        self._table.update_incremental()
        self.reread_schema()

    def reload(self) -> None:
        """Load from scratch: after a failed commit the loaded state is no longer trusted."""
        with self._guard:
            self._fresh = None
        self._table = DeltaTable(self.uri, storage_options=self.options)
        self.reread_schema()

    def _read_schema(self) -> pa.Schema:
        return normalize(pa.schema(self._table.schema().to_arrow()))

    def reread_schema(self) -> None:
        """Take the loaded table's schema again: after a refresh, or a commit of ours that added columns."""
        schema = self._read_schema()
        if schema != self.schema:
            log.info("table schema changed to %s", schema)
            self.schema = schema


class LatestView:
    """A second loaded copy of the table, brought to the latest version on each read.

    For answers that must hold across replicas (a producer's committed sequence): the committer's table is
    only as new as this process's last commit. Loaded on first use; calls are serialized.
    """

    def __init__(self, uri: str, options: dict[str, str]) -> None:
        self._uri = uri
        self._options = options
        self._table: DeltaTable | None = None
        self._guard = threading.Lock()

    def transaction(self, app_id: str) -> tuple[int | None, int]:
        """The latest ``txn`` version of ``app_id`` (None if it never committed), and the table version."""
        with self._guard:
            if self._table is None:
                self._table = DeltaTable(self._uri, storage_options=self._options)
            else:
                self._table.update_incremental()
            return self._table.transaction_version(app_id), int(self._table.version())
