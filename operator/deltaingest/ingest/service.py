"""Wiring of one writer: table, lock, checkpointer and committer from the settings; and the HTTP service
with graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from aiohttp import web

from deltaingest.config import Settings, effective_table
from deltaingest.ingest.batcher import GroupCommitter
from deltaingest.ingest.committer import Committer
from deltaingest.ingest.deadletter import DEAD_LETTER_SCHEMA, dead_letter_spec
from deltaingest.ingest.server import IngestServer, metrics_app
from deltaingest.locking.factory import build_lock, lock_kind
from deltaingest.locking.lease import Lock, new_holder_id
from deltaingest.maintenance.checkpoint import Checkpointer, CheckpointSchedule
from deltaingest.metrics import Metrics
from deltaingest.protocol import RESCUED_COLUMN
from deltaingest.table.hot import (
    HotTable,
    LatestView,
    ensure_column,
    locate,
    locate_dead_letters,
    open_table,
)
from deltaingest.table.schema import arrow_schema
from deltaingest.table.storage import redact

log = logging.getLogger(__name__)


@dataclass
class Writer:
    """Everything that commits to one table from this process."""

    table: HotTable
    lock: Lock
    committer: Committer
    checkpointer: Checkpointer
    metrics: Metrics
    dead_letter_checkpointer: Checkpointer | None = None

    def close(self) -> None:
        self.checkpointer.close()
        if self.dead_letter_checkpointer is not None:
            self.dead_letter_checkpointer.close()
        self.lock.close()


def open_writer(settings: Settings, metrics: Metrics | None = None) -> Writer:
    """Open (or create) the table and build the commit path for it."""
    uri, options = locate(settings)
    metrics = metrics or Metrics()
    holder = new_holder_id()
    # The lock first: a misconfigured lock must fail the start before a missing table gets created.
    lock = build_lock(settings.locking, uri, scope="commit", holder=holder)
    try:
        table_spec = effective_table(settings.table, settings.source)
        loaded = open_table(uri, table_spec, options)
        if settings.writer.unknown_fields == "rescue":
            loaded = ensure_column(uri, options, loaded, RESCUED_COLUMN)
        table = HotTable(uri, options, loaded)
        if settings.source.otlp is not None:
            _check_columns(table, arrow_schema(table_spec.columns), "table.uri", "OTLP log layout")
        located = locate_dead_letters(settings)
        dead_letters = open_dead_letters(*located) if located else None
    except BaseException:
        lock.close()
        raise
    checkpointer = _checkpointer(table, settings, metrics)
    dead_letter_checkpointer = _checkpointer(dead_letters, settings, metrics) if dead_letters else None
    committer = Committer(
        table,
        lock,
        metrics=metrics,
        attempts=settings.writer.commit_attempts,
        on_commit=checkpointer.committed,
        dead_letters=dead_letters,
        on_dead_letter_commit=dead_letter_checkpointer.committed if dead_letter_checkpointer else None,
    )
    metrics.table_version.set(table.version())
    log.info(
        "writer %s on %s at version %d, lock %s, storage options %s",
        holder,
        uri,
        table.version(),
        lock_kind(settings.locking, uri),
        redact(options),
    )
    return Writer(table, lock, committer, checkpointer, metrics, dead_letter_checkpointer)


def _check_columns(table: HotTable, expected: pa.Schema, setting: str, what: str) -> None:
    """Refuse to start on a table that lacks (or mistypes) a column the writer fills."""
    missing = [f.name for f in expected if f not in table.schema]
    if missing:
        raise ValueError(f"{setting} {table.uri} is a Delta table without the {what} columns {missing}")


def open_dead_letters(dead_uri: str, options: dict[str, str]) -> HotTable:
    """The dead-letter table, created when missing; refused when its columns are not the dead-letter
    table's."""
    loaded = open_table(dead_uri, dead_letter_spec(dead_uri), options)
    table = HotTable(dead_uri, options, loaded)
    _check_columns(table, DEAD_LETTER_SCHEMA, "writer.deadLetter.uri", "dead-letter")
    log.info("dead letters go to %s at version %d", dead_uri, table.version())
    return table


def _checkpointer(table: HotTable, settings: Settings, metrics: Metrics) -> Checkpointer:
    return Checkpointer(
        uri=table.uri,
        options=table.options,
        schedule=CheckpointSchedule(
            every=settings.writer.checkpoint_every,
            min_interval=settings.writer.checkpoint_interval_seconds,
        ),
        start_version=table.version(),
        on_fresh=table.offer,
        metrics=metrics,
    )


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    metrics: Metrics | None = None,
    background: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = (),
) -> None:
    """Run the writer until SIGTERM/SIGINT (or ``stop``): then stop accepting, flush, and return.

    ``background`` loops (the daemon's maintenance) start once the writer is ready and get the stop event;
    shutdown waits for them to return, so a maintenance run in progress finishes or fails on its own terms.
    """
    writer = await asyncio.to_thread(open_writer, settings, metrics)
    spec = settings.writer
    token = os.environ.get(spec.auth_token_env) if spec.auth_token_env else None
    if spec.auth_token_env and not token:
        raise ValueError(f"writer.authTokenEnv names {spec.auth_token_env}, which is not set")
    group = GroupCommitter(writer.committer.commit, limits=spec.batching, metrics=writer.metrics)
    group.start()
    server = IngestServer(
        spec=spec,
        table=writer.table,
        group=group,
        latest=LatestView(writer.table.uri, writer.table.options),
        metrics=writer.metrics,
        auth_token=token,
        otlp_logs=settings.source.otlp,
    )
    # auto_decompress off: decode() inflates gzip itself, bounded by maxRequestBytes (a zip bomb stops early).
    runner = web.AppRunner(
        server.app(), access_log=None, shutdown_timeout=spec.shutdown_grace_seconds, auto_decompress=False
    )
    metrics_runner = web.AppRunner(metrics_app(writer.metrics), access_log=None)
    await runner.setup()
    await metrics_runner.setup()
    await web.TCPSite(runner, spec.host, spec.port).start()
    await web.TCPSite(metrics_runner, spec.host, spec.metrics_port).start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server.ready = True
    tasks = [asyncio.create_task(loop(stop)) for loop in background]
    log.info("listening on %s:%d (metrics on %d)", spec.host, spec.port, spec.metrics_port)
    print(f"deltaingest writer ready on {spec.host}:{spec.port}", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: no new requests, flushing queued commits")
        server.ready = False
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()  # stops listening, then waits for in-flight requests (their commits)
        await group.close()
        await metrics_runner.cleanup()
        server.close()
        await asyncio.to_thread(writer.close)
        log.info("writer stopped at version %d", writer.table.version())
