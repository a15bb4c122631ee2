"""Blocking checks the operator runs in a thread: the facts of the table and its dead-letter table, and a
lock table that is there."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from deltaingest.config import effective_table
from deltaingest.delta_types import type_name
from deltaingest.k8s.conditions import Probe
from deltaingest.k8s.messages import explain
from deltaingest.k8s.spec import DeltaTableIngestSpec
from deltaingest.locking.dynamodb import dynamodb_client, ensure_lock_table
from deltaingest.locking.lease import LockError
from deltaingest.table.facts import active_files, summarize
from deltaingest.table.storage import secret_values, storage_options

PROBE_RETRIES = {"max_retries": "2", "retry_timeout": "10s"}


def probe_table(spec: DeltaTableIngestSpec, environ: Mapping[str, str]) -> Probe:
    """The table's version and file counts, read from its log with the workloads' credentials."""
    creates = spec.table.create_if_missing and bool(effective_table(spec.table, spec.source).columns)
    return _probe(spec.table.uri, spec, environ, created_by_writer=creates)


def probe_dead_letters(spec: DeltaTableIngestSpec, environ: Mapping[str, str]) -> Probe:
    """The dead-letter table's version and file counts (``writer.invalidRows: deadLetter``)."""
    uri = spec.writer.dead_letter.uri
    assert uri is not None  # the spec model requires it with invalidRows: deadLetter
    return _probe(uri, spec, environ, created_by_writer=True)


def _probe(
    uri: str, spec: DeltaTableIngestSpec, environ: Mapping[str, str], *, created_by_writer: bool
) -> Probe:
    # Retries well inside the probe's own timeout, so the cause reaches the status rather than "no answer":
    # without credentials, delta-rs retries the EC2 metadata endpoint (silent outside AWS) for 3 minutes.
    # spec.storage.options can still set them; the workloads keep delta-rs' own patience.
    options = {**PROBE_RETRIES, **storage_options(uri, overrides=spec.storage.options, environ=environ)}
    endpoint = options.get("AWS_ENDPOINT_URL")
    doing = f"reading {uri} at {endpoint}" if endpoint else f"reading {uri}"
    try:
        table = DeltaTable(uri, storage_options=options)
    except TableNotFoundError as err:
        if created_by_writer:
            return Probe(
                False, "TableNotFound", f"no Delta table at {uri} yet; the writer creates it at start"
            )
        return Probe(False, "TableNotFound", explain(err, doing, service="s3"))
    except Exception as err:  # delta-rs raises plain OSError/DeltaError for storage failures
        return Probe(False, "StorageError", explain(err, doing, service="s3", secrets=secret_values(options)))
    facts = summarize(
        table.version(), active_files(table), small_file_size=spec.compaction.small_file_size
    ).as_dict()
    columns = [(f.name, type_name(f.type)) for f in pa.schema(table.schema().to_arrow())]
    return Probe(True, "TableRead", f"version {facts['version']}, {facts['files']} files", facts, columns)


def probe_lock_table(spec: DeltaTableIngestSpec, environ: Mapping[str, str]) -> Probe:
    """Ensure the DynamoDB lock table exists (creating it when the spec asks) and is usable."""
    locking = spec.locking
    if locking.kind != "dynamodb":
        return Probe(True, "NotRequired", "locking.kind is none: a single writer replica needs no lock table")
    region = locking.region or environ.get("AWS_REGION")
    client = dynamodb_client(endpoint=locking.endpoint, region=region, credentials=environ)
    doing = f"checking DynamoDB table {locking.table_name} at {client.meta.endpoint_url}"
    try:
        ensure_lock_table(client, locking.table_name, create=locking.create_table)
        state = client.describe_table(TableName=locking.table_name)["Table"].get("TableStatus", "ACTIVE")
    except (LockError, ClientError, BotoCoreError) as err:
        message = explain(err, doing, service="dynamodb", secrets=secret_values(environ))
        return Probe(False, "LockTableError", message)
    if state != "ACTIVE":
        return Probe(False, "LockTableNotActive", f"{locking.table_name} is {state}")
    return Probe(True, "LockTableActive", f"DynamoDB table {locking.table_name} is ACTIVE")
