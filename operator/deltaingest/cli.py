"""Command-line entry points: parse arguments, build settings, call into the packages."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from deltaingest import __version__
from deltaingest.config import Settings, effective_table, load_settings
from deltaingest.delta_types import SchemaError
from deltaingest.ingest.committer import Batch
from deltaingest.ingest.decode import DecodeOptions, decode
from deltaingest.ingest.errors import IngestError
from deltaingest.locking.lease import LockError
from deltaingest.table.hot import TableMissing
from deltaingest.table.storage import parse_key_values

log = logging.getLogger("deltaingest")

EXIT_USAGE = 2  # bad arguments, settings or input: retrying will not help
EXIT_FAILED = 1  # the operation failed: a retry may succeed
DEFAULT_IMAGE = f"ghcr.io/deltaingest/deltaingest:{__version__}"


def _table_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", help="table URI: s3://bucket/path or a local path")
    parser.add_argument("--config", type=Path, help="YAML settings file (schema, batching, lock, ...)")
    parser.add_argument(
        "--storage-option", action="append", default=[], metavar="KEY=VALUE", help="delta-rs storage option"
    )
    parser.add_argument(
        "--lock",
        choices=["auto", "none", "file", "dynamodb"],
        help="lock kind for commits and the maintenance lease (default auto: a lock file for local tables)",
    )
    parser.add_argument("--lock-table", help="DynamoDB lock table name (default: deltaingest_locks)")
    parser.add_argument(
        "--no-create-lock-table",
        action="store_true",
        help="never create the DynamoDB lock table (for IAM roles without dynamodb:CreateTable)",
    )


def _send_arguments(send: argparse.ArgumentParser) -> None:
    send.add_argument(
        "--url", action="append", required=True, help="writer base URL (repeat for failover across replicas)"
    )
    send.add_argument("--producer-id", required=True, help="exactly-once id; the same id resumes the upload")
    send.add_argument("--input", required=True, help="NDJSON file, or - for standard input")
    send.add_argument("--batch-rows", type=int, default=10_000, help="lines per request (default 10000)")
    send.add_argument(
        "--token-env",
        default="DELTAINGEST_TOKEN",
        help="environment variable holding the writers' bearer token, if they need one (default %(default)s)",
    )
    send.add_argument("--gzip", action="store_true", help="compress the requests")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    send.add_argument(
        "--delivery-timeout",
        type=float,
        default=120.0,
        help="seconds to keep retrying one batch across the URLs before giving up (default 120)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deltaingest", description="Real-time ingest into Delta Lake tables, and their upkeep."
    )
    parser.add_argument("--version", action="version", version=f"deltaingest {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default INFO; WARNING for bench and demo, whose reports are the output",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    writer = commands.add_parser("writer", help="run the HTTP ingest server")
    _table_arguments(writer)
    writer.add_argument("--host", help="listen address (default 0.0.0.0)")
    writer.add_argument("--port", type=int, help="ingest port (default 8080)")
    writer.add_argument("--metrics-port", type=int, help="Prometheus port (default 9090)")

    write = commands.add_parser("write", help="append an NDJSON file in batches, validating all of it first")
    _table_arguments(write)
    write.add_argument("--input", required=True, help="NDJSON file, or - for standard input")
    write.add_argument("--batch-rows", type=int, default=100_000, help="rows per commit (default 100000)")
    write.add_argument(
        "--producer-id",
        help="exactly-once id: re-running the same input with the same id writes nothing twice",
    )

    _send_arguments(
        commands.add_parser(
            "send",
            help="upload NDJSON to writers over HTTP, exactly once; run it again to resume after a crash",
        )
    )
    daemon = commands.add_parser("daemon", help="the writer plus the compaction and vacuum loops")
    _table_arguments(daemon)
    daemon.add_argument("--host", help="listen address (default 0.0.0.0)")
    daemon.add_argument("--port", type=int, help="ingest port (default 8080)")
    daemon.add_argument("--metrics-port", type=int, help="Prometheus port (default 9090)")

    compact = commands.add_parser(
        "compact", help="merge small files when the policy's triggers say so (exit 0 also when skipped)"
    )
    _table_arguments(compact)
    compact.add_argument(
        "--force",
        action="store_true",
        help="ignore triggers, minimum age and tiers: compact every partition with mergeable files",
    )
    compact.add_argument("--json", action="store_true", help="print the report as JSON")
    compact.add_argument(
        "--termination-log", metavar="PATH", help="also write a one-line summary here (Kubernetes Jobs)"
    )

    vacuum = commands.add_parser("vacuum", help="delete unreferenced files past the retention, checkpoint")
    _table_arguments(vacuum)
    vacuum.add_argument("--retain-hours", type=float, help="retention window in hours (default 168)")
    vacuum.add_argument("--keep-versions", type=int, help="also keep the newest N versions (default 10)")
    vacuum.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    vacuum.add_argument(
        "--force",
        action="store_true",
        help="allow a retention shorter than the table's delta.deletedFileRetentionDuration",
    )
    vacuum.add_argument(
        "--full",
        action="store_true",
        help="also delete unreferenced files (from crashed writers) older than the retention; needs >= 1 h",
    )
    vacuum.add_argument("--json", action="store_true", help="print the report as JSON")
    vacuum.add_argument(
        "--termination-log", metavar="PATH", help="also write a one-line summary here (Kubernetes Jobs)"
    )

    demo = commands.add_parser(
        "demo", help="the daemon on a local table (or --s3) under synthetic HTTP load, with a report"
    )
    demo.add_argument("--table", default=".demo/events", help="local table path (replaced if present)")
    demo.add_argument("--s3", action="store_true", help="SeaweedFS and the DynamoDB lock on moto instead")
    demo.add_argument("--seconds", type=float, default=30.0)
    demo.add_argument("--clients", type=int, default=4)
    demo.add_argument("--rows", type=int, default=1000, help="rows per request")

    _bench_arguments(commands.add_parser("bench", help="benchmarks"))

    _operator_arguments(
        commands.add_parser("operator", help="run the Kubernetes operator for DeltaTableIngest resources")
    )

    commands.add_parser("crd", help="print the DeltaTableIngest CustomResourceDefinition (YAML)")
    openapi = commands.add_parser(
        "openapi", help="print the writer's OpenAPI document for the table a settings file describes"
    )
    openapi.add_argument("--config", type=Path, required=True, help="YAML settings file with table.schema")
    return parser


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench_kinds = bench.add_subparsers(dest="bench", required=True)
    bench_writer = bench_kinds.add_parser(
        "writer", help="commit and HTTP latency/throughput vs the naive baseline"
    )
    bench_writer.add_argument("--commits", type=int, default=300)
    bench_writer.add_argument("--rows", type=int, default=1000, help="rows per commit")
    bench_writer.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    bench_writer.add_argument("--http-seconds", type=float, default=10.0, help="duration of the HTTP load")
    bench_writer.add_argument("--http-rows", type=int, default=10_000, help="rows per NDJSON request")
    bench_writer.add_argument("--arrow-rows", type=int, default=50_000, help="rows per Arrow IPC request")
    bench_writer.add_argument("--output", type=Path, help="also write the JSON report here")
    growth = bench_kinds.add_parser(
        "growth", help="per-commit latency, CPU and memory as the table ages, with and without compaction"
    )
    growth.add_argument("--commits", type=int, default=20_000, help="commits per run (one per request)")
    growth.add_argument("--window", type=int, default=1000, help="commits per reported window")
    growth.add_argument("--storage", choices=["seaweedfs", "local"], default="seaweedfs")
    growth.add_argument("--no-compaction", action="store_true", help="skip the run with compaction alongside")
    growth.add_argument(
        "--compaction-interval", type=float, default=60.0, help="the daemon's compaction interval (seconds)"
    )
    growth.add_argument(
        "--naive-commits", type=int, default=20_000, help="commits of the naive loop (0: skip it)"
    )
    growth.add_argument("--output", type=Path, help="also write the JSON report here")
    bench_maintenance = bench_kinds.add_parser(
        "maintenance", help="write amplification, small files and read speed with the compaction policy"
    )
    bench_maintenance.add_argument("--rows", type=int, default=2_000_000)
    bench_maintenance.add_argument("--rows-per-commit", type=int, default=1000)
    bench_maintenance.add_argument(
        "--policy", help='compaction settings as JSON, over the bench defaults, e.g. {"fanIn": 8}'
    )
    bench_maintenance.add_argument(
        "--storage", choices=["seaweedfs", "local"], default="seaweedfs", help="where the tables live"
    )
    bench_maintenance.add_argument(
        "--workdir", type=Path, help="where the two tables go (default: a temp dir)"
    )
    bench_maintenance.add_argument("--keep", action="store_true", help="keep the tables afterwards")
    bench_maintenance.add_argument("--output", type=Path, help="also write the JSON report here")


def _operator_arguments(op: argparse.ArgumentParser) -> None:
    scope = op.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", action="append", default=[], help="watch this namespace (repeatable); default: all"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (default)")
    op.add_argument(
        "--image",
        default=os.environ.get("DELTAINGEST_IMAGE", DEFAULT_IMAGE),
        help="workload image when a resource names none (default: $DELTAINGEST_IMAGE or %(default)s)",
    )
    op.add_argument(
        "--leader-election",
        metavar="LEASE",
        help="elect one serving replica with this coordination.k8s.io Lease (for more than one replica)",
    )
    op.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default: $POD_NAMESPACE or %(default)s)",
    )
    op.add_argument(
        "--lease-seconds",
        type=int,
        default=15,
        help="how long a leader's Lease lasts unrenewed: a standby takes over within it (min 3)",
    )
    op.add_argument("--resync-seconds", type=float, default=30.0, help="status and drift check interval")
    op.add_argument("--liveness-port", type=int, default=8080, help="/healthz port (0: off)")
    op.add_argument("--metrics-port", type=int, default=9090, help="Prometheus port (0: off)")
    op.add_argument("--bind", default="0.0.0.0", help="address for the liveness and metrics ports")


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.table:
        overrides["table"] = {"uri": args.table}
    if args.storage_option:
        overrides["storageOptions"] = parse_key_values(args.storage_option)
    locking: dict[str, Any] = {}
    if args.lock:
        locking["kind"] = args.lock
    if args.lock_table:
        locking["tableName"] = args.lock_table
    if args.no_create_lock_table:
        locking["createTable"] = False
    if locking:
        overrides["locking"] = locking
    writer = {
        key: value
        for key, value in (
            ("host", getattr(args, "host", None)),
            ("port", getattr(args, "port", None)),
            ("metricsPort", getattr(args, "metrics_port", None)),
        )
        if value is not None
    }
    if writer:
        overrides["writer"] = writer
    if args.command == "vacuum":
        retention = {
            key: value
            for key, value in (
                ("retainHours", args.retain_hours),
                ("keepVersions", args.keep_versions),
                ("force", args.force or None),
                ("full", args.full or None),
            )
            if value is not None
        }
        if retention:
            overrides["vacuum"] = retention
    return load_settings(args.config, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = args.command in ("bench", "demo")
    logging.basicConfig(
        level=args.log_level or ("WARNING" if quiet else "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "bench":
            if args.bench == "growth":
                from deltaingest.bench.growth import run as run_growth  # noqa: PLC0415

                return run_growth(args)
            if args.bench == "maintenance":
                from deltaingest.bench.maintenance import run as run_maintenance  # noqa: PLC0415

                return run_maintenance(args)
            from deltaingest.bench.writer import run as run_bench  # noqa: PLC0415 (dev-only dependencies)

            return run_bench(args)
        if args.command == "demo":
            from deltaingest.bench.demo import run as run_demo  # noqa: PLC0415 (dev-only dependencies)

            return run_demo(args)
        if args.command == "crd":
            from deltaingest.k8s.crd import crd_yaml  # noqa: PLC0415

            sys.stdout.write(crd_yaml())
            return 0
        if args.command == "operator":
            return run_operator_command(args)
        if args.command == "openapi":
            return print_openapi(load_settings(args.config))
        if args.command == "send":
            return send_file(args)
        settings = settings_from(args)
        if args.command == "writer":
            from deltaingest.ingest.service import serve  # noqa: PLC0415 (keeps `--help` fast)

            asyncio.run(serve(settings))
            return 0
        if args.command == "write":
            return write_file(settings, args)
        if args.command == "daemon":
            from deltaingest.daemon import run_daemon  # noqa: PLC0415

            asyncio.run(run_daemon(settings))
            return 0
        if args.command in ("compact", "vacuum"):
            return maintain(settings, args)
    except (ValidationError, ValueError, SchemaError, TableMissing, IngestError, FileNotFoundError) as err:
        print(f"deltaingest: error: {_message(err)}", file=sys.stderr)
        return EXIT_USAGE
    except LockError as err:
        print(f"deltaingest: lock error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:  # e.g. the port is in use
        print(f"deltaingest: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    raise AssertionError(f"unhandled command {args.command}")


def run_operator_command(args: argparse.Namespace) -> int:
    from deltaingest.k8s.handlers import (  # noqa: PLC0415
        LeaderElection,
        LeadershipLost,
        OperatorConfig,
        run_operator,
    )

    config = OperatorConfig(
        image=args.image,
        namespaces=tuple(args.namespace),
        resync_seconds=args.resync_seconds,
        liveness_port=args.liveness_port or None,
        metrics_port=args.metrics_port or None,
        bind=args.bind,
        leader_election=LeaderElection(
            args.leader_election, args.leader_election_namespace, lease_seconds=max(3, args.lease_seconds)
        )
        if args.leader_election
        else None,
    )
    try:
        asyncio.run(run_operator(config))
    except LeadershipLost as err:  # another replica serves now; the pod restarts as a standby
        print(f"deltaingest: {err}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def maintain(settings: Settings, args: argparse.Namespace) -> int:
    """``compact`` and ``vacuum`` of the table and, with ``invalidRows: deadLetter``, of its dead-letter
    table, each under its own maintenance lease: exit 0 when done, with nothing to do, or skipped (lease
    held); 1 when a run failed."""
    from deltalake import DeltaTable  # noqa: PLC0415

    from deltaingest.locking.factory import build_lock  # noqa: PLC0415
    from deltaingest.locking.lease import new_holder_id  # noqa: PLC0415
    from deltaingest.maintenance.compact import compact  # noqa: PLC0415
    from deltaingest.maintenance.report import RunReport  # noqa: PLC0415
    from deltaingest.maintenance.tables import kept_tables  # noqa: PLC0415
    from deltaingest.maintenance.vacuum import check_vacuum_policy, vacuum  # noqa: PLC0415

    table, *dead_letters = kept_tables(settings)
    # Checked before the lock: a lock file must not be created next to a table that is not there.
    if not DeltaTable.is_deltatable(table.uri, storage_options=table.options):
        raise TableMissing(f"no Delta table at {table.uri}")
    present, missing = [table], []
    for kept in dead_letters:
        if DeltaTable.is_deltatable(kept.uri, storage_options=kept.options):
            present.append(kept)
        else:
            reason = "no Delta table yet: the writer creates the dead-letter table at start"
            missing.append(RunReport(args.command, kept.uri, reason=reason))
    if args.command == "vacuum":  # every retention is checked before anything is deleted
        for kept in present:
            check_vacuum_policy(kept.uri, kept.options, kept.vacuum)
    holder = new_holder_id()
    reports: list[RunReport] = []
    for kept in present:
        lock = build_lock(settings.locking, kept.uri, scope="maintenance", holder=holder)
        try:
            if args.command == "compact":
                report = compact(kept.uri, kept.options, kept.compaction, lock=lock, force=args.force)
            else:
                report = vacuum(kept.uri, kept.options, kept.vacuum, lock=lock, dry_run=args.dry_run)
        finally:
            lock.close()
        reports.append(report)
    reports.extend(missing)
    document = reports[0].as_dict()
    if len(reports) > 1:  # the dead-letter table's run, beside the table's
        document["deadLetterTable"] = reports[1].as_dict()
    summary = "\n".join(report.summary() for report in reports)
    print(json.dumps(document, indent=2) if args.json else summary, flush=True)
    if args.termination_log:
        # Kubernetes shows this file as the container's termination message (at most 4 KiB); the operator
        # copies it into the resource's status as the last run's result.
        line = "; ".join(part.strip() for part in summary.splitlines())
        Path(args.termination_log).write_text(line[:4000])
    return EXIT_FAILED if any(report.status == "failed" for report in reports) else 0


def _message(err: Exception) -> str:
    return err.message if isinstance(err, IngestError) else str(err)


def write_file(settings: Settings, args: argparse.Namespace) -> int:
    """Decode and validate every batch of the input first, so bad input writes nothing; then commit.

    Invalid rows are always refused here (no dead letters: the file is fixed and run again). Evolving the
    schema, each batch is decoded against the table's schema plus the columns earlier batches added, so
    batches that disagree on a new column are refused before anything is written."""
    from deltaingest.ingest.service import open_writer  # noqa: PLC0415

    if args.batch_rows < 1:
        raise ValueError("--batch-rows must be at least 1")
    writer = open_writer(settings)
    try:
        policy = settings.writer
        options = DecodeOptions(
            unknown_fields=policy.unknown_fields,
            schema_evolution=policy.schema_evolution,
            infer_timestamps=policy.infer_timestamps,
            max_bytes=1 << 62,
        )
        batches: list[Batch] = []
        schema = writer.table.schema
        with _open_input(args.input) as stream:
            for first_line, _, chunk in _chunks(stream, args.batch_rows):
                try:
                    data = decode(
                        chunk,
                        content_type="application/x-ndjson",
                        content_encoding=None,
                        schema=schema,
                        options=options,
                    ).table
                except IngestError as err:
                    row = err.detail.get("row")
                    if row is None:
                        raise
                    raise type(err)(
                        err.message.replace(f"row {row}", f"line {first_line + row - 1}", 1)
                    ) from None
                sequence = len(batches) if args.producer_id else None
                batches.append(Batch(data, args.producer_id, sequence))
                schema = data.schema
        version, rows, skipped = writer.table.version(), 0, 0
        for batch in batches:
            result = writer.committer.commit([batch])
            if result.refused:  # another writer gave a new column another type meanwhile
                raise result.refused[0]
            version = result.version
            if result.written[0]:
                rows += batch.data.num_rows
            else:
                skipped += batch.data.num_rows
        print(
            json.dumps(
                {
                    "table": writer.table.uri,
                    "version": version,
                    "rows": rows,
                    "skippedRows": skipped,
                    "commits": len(batches),
                }
            )
        )
        return 0
    finally:
        writer.close()


def print_openapi(settings: Settings) -> int:
    from deltaingest.ingest.openapi import openapi_document  # noqa: PLC0415
    from deltaingest.table.schema import arrow_schema  # noqa: PLC0415

    table = effective_table(settings.table, settings.source)
    if not table.columns:
        raise ValueError("the settings give no table.schema to describe")
    document = openapi_document(
        arrow_schema(table.columns),
        policy=settings.writer,
        auth=settings.writer.auth_token_env is not None,
        version=__version__,
        otlp=settings.source.otlp is not None,
    )
    print(json.dumps(document, indent=2))
    return 0


def send_file(args: argparse.Namespace) -> int:
    """``send``: each batch's sequence is the number of its last line, and batches end on multiples of
    ``--batch-rows``. A second run with the same producer id and batch size sends only the lines after the
    last committed one, and a batch of the first run still in flight commits at most once: it carries the
    same sequence as the second run's batch with the same lines."""
    from deltaingest.client import ClientError, Producer, Rejected  # noqa: PLC0415

    if args.batch_rows < 1:
        raise ValueError("--batch-rows must be at least 1")
    producer = Producer(
        args.url,
        args.producer_id,
        token=os.environ.get(args.token_env) or None,
        timeout=args.timeout,
        delivery_timeout=args.delivery_timeout,
        compress=args.gzip,
    )
    summary: dict[str, Any] = {"producerId": args.producer_id, "batches": 0, "rows": 0, "duplicateBatches": 0}
    try:
        with producer, _open_input(args.input) as stream:
            committed = producer.committed() or 0
            summary["resumedAfterLine"] = committed or None
            lines = _Counted(stream)
            for first_line, last_line, chunk in _chunks(lines, args.batch_rows, skip=committed):
                if committed % args.batch_rows:
                    raise ValueError(
                        f"the table holds lines up to {committed} for this producer id, not a multiple of "
                        f"--batch-rows {args.batch_rows}: resume with the first run's --batch-rows"
                    )
                if not chunk.strip():
                    continue
                try:
                    ack = producer.send(chunk, sequence=last_line)
                except Rejected as err:
                    row = err.body.get("row")
                    where = f" (line {first_line + row - 1})" if isinstance(row, int) else ""
                    print(f"deltaingest: error: {err}{where}; nothing from line {first_line} on was sent",
                          file=sys.stderr)  # fmt: skip
                    return EXIT_USAGE
                summary["batches"] += 1
                summary["rows"] += ack.rows
                summary["duplicateBatches"] += ack.duplicate
                summary.update(lastLine=last_line, version=ack.version)
            if lines.count < committed:
                raise ValueError(
                    f"the table holds lines up to {committed} for this producer id, but the input has "
                    f"{lines.count}: another input, or another producer id?"
                )
    except Rejected as err:  # asking where to resume
        print(f"deltaingest: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as err:
        print(f"deltaingest: error: {err}; run again with the same --producer-id to resume", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(summary))
    return 0


class _Counted:
    """The lines of a stream, counting them as they are read."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.count = 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self.count += 1
            yield line


def _open_input(name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    return contextlib.nullcontext(sys.stdin.buffer) if name == "-" else open(name, "rb")


def _chunks(lines: Iterable[bytes], rows: int, *, skip: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """Groups of ``rows`` lines after the first ``skip``, with the 1-based numbers of their first and
    last line."""
    group: list[bytes] = []
    first = number = 0
    for number, line in enumerate(lines, start=1):
        if number <= skip:
            continue
        if not group:
            first = number
        group.append(line)
        if len(group) == rows:
            yield first, number, b"".join(group)
            group = []
    if group:
        yield first, number, b"".join(group)


if __name__ == "__main__":
    raise SystemExit(main())
