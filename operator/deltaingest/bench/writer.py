"""``deltaingest bench writer``: per-commit latency on SeaweedFS and the local filesystem against the naive
``write_deltalake(uri, df, mode="append")`` baseline, then HTTP acknowledgement latency and throughput."""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from deltalake import DeltaTable, write_deltalake
from prometheus_client.parser import text_string_to_metric_families

from deltaingest.bench.floor import FLOOR_STEPS, measure_floor
from deltaingest.bench.s3trace import S3Trace, s3_trace
from deltaingest.bench.stats import latency_ms, publish
from deltaingest.config import Settings
from deltaingest.devservers import MotoDynamoDB, SeaweedFS, free_port
from deltaingest.ingest.committer import Batch
from deltaingest.ingest.service import open_writer
from deltaingest.locking.factory import lock_kind
from deltaingest.protocol import ARROW_STREAM_TYPE, NDJSON_TYPE
from deltaingest.table.hot import open_table
from deltaingest.table.storage import storage_options

SCHEMA = [
    {"name": "id", "type": "long", "nullable": False},
    {"name": "ts", "type": "timestamp", "nullable": False},
    {"name": "user", "type": "string"},
    {"name": "kind", "type": "string"},
    {"name": "value", "type": "double"},
    {"name": "tags", "type": "array<string>"},
]
NDJSON = NDJSON_TYPE
# The traced run leaves checkpoints out: the checkpointer's requests would land in the acks' windows.
_NO_CHECKPOINT = 1_000_000_000
TARGETS = {
    "s3_p99_ms": 100.0,
    "p99_speedup_vs_naive": 3.0,
    "http_rows_per_second": 100_000,
    "ack_p99_ms_unlocked": 35.0,
    "ack_p99_ms_dynamodb_lease": 45.0,
}


def _arrow_batch(start: int, rows: int) -> pa.Table:
    ids = range(start, start + rows)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "ts": pa.array([1_714_557_600_000_000 + i for i in ids], pa.timestamp("us", tz="UTC")),
            "user": pa.array([f"user-{i % 997}" for i in ids]),
            "kind": pa.array([("click", "view", "buy")[i % 3] for i in ids]),
            "value": pa.array([i * 0.25 for i in ids], pa.float64()),
            "tags": pa.array([["a", "b"] if i % 2 else ["c"] for i in ids], pa.list_(pa.string())),
        },
        schema=pa.schema(
            [
                pa.field("id", pa.int64(), nullable=False),
                pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
                pa.field("user", pa.string()),
                pa.field("kind", pa.string()),
                pa.field("value", pa.float64()),
                pa.field("tags", pa.list_(pa.string())),
            ]
        ),
    )


def _ndjson(start: int, rows: int) -> bytes:
    return b"".join(
        json.dumps(
            {
                "id": i,
                "ts": "2024-05-01T10:00:00Z",
                "user": f"user-{i % 997}",
                "kind": "click",
                "value": i * 0.25,
                "tags": ["a", "b"],
            }
        ).encode()
        + b"\n"
        for i in range(start, start + rows)
    )


def _arrow_ipc(start: int, rows: int) -> bytes:
    sink = pa.BufferOutputStream()
    table = _arrow_batch(start, rows)
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return bytes(sink.getvalue())


def bench_naive(uri: str, options: dict[str, str], commits: int, rows: int) -> list[float]:
    """The usual approach: one ``write_deltalake`` per batch, which reopens the table every time."""
    DeltaTable.create(uri, _arrow_batch(0, 1).schema, storage_options=options)
    latencies = []
    for i in range(commits):
        data = _arrow_batch(i * rows, rows)
        started = time.perf_counter()
        write_deltalake(uri, data, mode="append", storage_options=options)
        latencies.append(time.perf_counter() - started)
    return latencies


def bench_committer(uri: str, locking: dict[str, Any], commits: int, rows: int) -> tuple[list[float], int]:
    """deltaingest's commit path: hot table, lock, txn actions, checkpoints in the background."""
    settings = Settings.model_validate({"table": {"uri": uri, "schema": SCHEMA}, "locking": locking})
    writer = open_writer(settings)
    latencies = []
    try:
        for i in range(commits):
            batch = Batch(_arrow_batch(i * rows, rows), "bench", i)
            started = time.perf_counter()
            writer.committer.commit([batch])
            latencies.append(time.perf_counter() - started)
        version = writer.table.version()
    finally:
        writer.close()
    return latencies, version


@contextmanager
def serve(
    uri: str,
    env: dict[str, str],
    locking: dict[str, Any],
    workdir: Path,
    *,
    naive: bool = False,
    writer: dict[str, Any] | None = None,
) -> Iterator[tuple[str, str | None]]:
    """A writer process (or, with ``naive``, the naive baseline server): its ingest and metrics URLs."""
    port, metrics_port = free_port(), free_port()
    if naive:
        settings = Settings.model_validate({"table": {"schema": SCHEMA}})
        open_table(uri, settings.table, storage_options(uri))
        command = ["-m", "deltaingest.bench.naive_server", "--table", uri, "--port", str(port)]
    else:
        config = workdir / f"writer-{port}.yaml"
        config.write_text(
            yaml.safe_dump({"table": {"schema": SCHEMA}, "writer": writer or {}, "locking": locking})
        )
        command = [
            "-m", "deltaingest", "--log-level", "WARNING", "writer", "--table", uri, "--config", str(config),
            "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics_port),
        ]  # fmt: skip
    log = (workdir / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, *command], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        yield (
            f"http://127.0.0.1:{port}/v1/ingest",
            None if naive else f"http://127.0.0.1:{metrics_port}/metrics",
        )
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def bench_http(
    uri: str,
    env: dict[str, str],
    locking: dict[str, Any],
    *,
    clients: int,
    seconds: float,
    rows: int,
    workdir: Path,
    naive: bool = False,
    arrow: bool = False,
) -> dict[str, Any]:
    """Throughput under ``clients`` concurrent HTTP clients for ``seconds``: NDJSON, or Arrow IPC streams."""
    bodies = client_bodies(clients, rows, arrow=arrow)
    with serve(uri, env, locking, workdir, naive=naive) as (url, metrics_url):
        latencies, errors, elapsed = drive(url, bodies, ARROW_STREAM_TYPE if arrow else NDJSON, seconds)
        if metrics_url is None:
            commits = DeltaTable(uri, storage_options=storage_options(uri)).version()
        else:
            with urllib.request.urlopen(metrics_url) as response:
                commits = int(metric(response.read().decode(), "commit_duration_seconds_count"))
    return {
        "server": "naive write_deltalake per request" if naive else "deltaingest writer",
        "format": "arrow-ipc" if arrow else "ndjson",
        "clients": clients,
        "rows_per_request": rows,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "errors": len(errors),
        "rows_per_second": round(len(latencies) * rows / elapsed),
        "commits": commits,
        "requests_per_commit": round(len(latencies) / commits, 2) if commits else None,
        "ack_latency_ms": latency_ms(latencies) if latencies else None,
    }


def bench_acks(
    uri: str,
    env: dict[str, str],
    locking: dict[str, Any],
    *,
    requests: int,
    rows: int,
    workdir: Path,
    wire: bool = False,
) -> dict[str, Any]:
    """One producer posting ``requests`` NDJSON bodies one after another on a keep-alive connection: the
    acknowledgement latency and, from the writer's ``commit_stage_seconds``, where it went.

    With ``wire`` the writer reaches S3 through the timing proxy, which splits the write stage into its
    requests; checkpoints are then left out, so that every request in an acknowledgement's window is its own.
    """
    bodies = [_ndjson(i * rows, rows) for i in range(requests)]
    with ExitStack() as stack:
        trace = None
        if wire:
            endpoint, trace = stack.enter_context(s3_trace(env["AWS_ENDPOINT_URL"]))
            env = {**env, "AWS_ENDPOINT_URL": endpoint}
        writer = {"checkpointEvery": _NO_CHECKPOINT} if wire else None
        url, metrics_url = stack.enter_context(serve(uri, env, locking, workdir, writer=writer))
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.netloc, timeout=120)
        windows = []
        try:
            for body in bodies:
                started = time.perf_counter()
                connection.request("POST", parts.path, body=body, headers={"Content-Type": NDJSON})
                response = connection.getresponse()
                response.read()
                windows.append((started, time.perf_counter()))
                if response.status != 200:
                    raise RuntimeError(f"ingest answered {response.status}")
        finally:
            connection.close()
        assert metrics_url is not None
        with urllib.request.urlopen(metrics_url) as response:
            stages = stage_means_ms(response.read().decode())
    result: dict[str, Any] = {
        "lock": lock_kind(Settings.model_validate({"locking": locking}).locking, uri),
        "ack_ms": latency_ms([end - start for start, end in windows]),
        "stage_mean_ms": stages,
    }
    if trace is not None:
        result.update(wire_breakdown(trace, windows))
    return result


def wire_breakdown(trace: S3Trace, windows: list[tuple[float, float]]) -> dict[str, Any]:
    """Per acknowledgement: mean milliseconds and calls by kind of S3 request."""
    totals: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    for start, end in windows:
        for call in trace.between(start, end):
            totals[call.kind] += call.seconds
            counts[call.kind] += 1
    n = max(len(windows), 1)
    return {
        "wire_mean_ms": {kind: round(totals[kind] / n * 1000, 2) for kind in sorted(totals)},
        "wire_calls_per_ack": {kind: round(counts[kind] / n, 2) for kind in sorted(counts)},
    }


def stage_means_ms(text: str) -> dict[str, float]:
    """Mean milliseconds per stage of ``commit_stage_seconds`` in a Prometheus exposition."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "commit_stage_seconds":
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", "")
            if sample.name.endswith("_sum"):
                sums[stage] = sample.value
            elif sample.name.endswith("_count"):
                counts[stage] = sample.value
    return {
        stage: round(sums[stage] / counts[stage] * 1000, 2) for stage in sorted(sums) if counts.get(stage)
    }


def client_bodies(clients: int, rows: int, *, arrow: bool = False) -> list[bytes]:
    """One request body per client, NDJSON or an Arrow IPC stream, with ids no other client uses."""
    encode = _arrow_ipc if arrow else _ndjson
    return [encode(c * 1_000_000_000, rows) for c in range(clients)]


def drive(
    url: str, bodies: list[bytes], content_type: str, seconds: float
) -> tuple[list[float], list[str], float]:
    """One thread per body, posting it over and over for ``seconds``: latencies, errors, elapsed time."""
    latencies: list[float] = []
    errors: list[str] = []
    guard = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        while time.monotonic() < stop_at:
            request = urllib.request.Request(
                url, data=bodies[index], method="POST", headers={"Content-Type": content_type}
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()
            except OSError as err:
                with guard:
                    errors.append(str(err))
                continue
            with guard:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - began


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("writer exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("writer did not become ready")


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="deltaingest-bench-"))
    report: dict[str, Any] = {"commits": args.commits, "rows_per_commit": args.rows, "results": {}}
    try:
        with (
            SeaweedFS(bucket="bench", workdir=workdir / "seaweedfs") as s3,
            MotoDynamoDB(workdir=workdir / "moto") as ddb,
        ):
            env = {**s3.env(), **ddb.env()}
            os.environ.update(env)
            dynamo = {"kind": "dynamodb", "tableName": f"bench-locks-{uuid.uuid4().hex[:6]}"}
            s3_base = f"s3://bench/{uuid.uuid4().hex[:8]}"
            local_base = str(workdir / "local")
            # (name, naive baseline location or None to reuse the previous one, our table, lock settings)
            runs = [
                ("seaweedfs", (f"{s3_base}/naive", s3.env()), f"{s3_base}/default", {"kind": "auto"}),
                ("seaweedfs_dynamodb_lock", None, f"{s3_base}/locked", dynamo),
                ("local", (f"{local_base}/naive", {}), f"{local_base}/default", {"kind": "auto"}),
            ]
            naive: list[float] = []
            for name, baseline, uri, locking in runs:
                if baseline is not None:
                    print(
                        f"[bench] {name}: naive baseline, {args.commits} commits of {args.rows} rows",
                        flush=True,
                    )
                    naive = bench_naive(baseline[0], baseline[1], args.commits, args.rows)
                print(f"[bench] {name}: deltaingest committer (lock {locking['kind']})", flush=True)
                ours, version = bench_committer(uri, locking, args.commits, args.rows)
                report["results"][name] = {
                    "naive_commit_ms": latency_ms(naive),
                    "deltaingest_commit_ms": latency_ms(ours),
                    "lock": lock_kind(Settings.model_validate({"locking": locking}).locking, uri),
                    "final_version": version,
                    "p99_speedup_vs_naive": round(latency_ms(naive)["p99"] / latency_ms(ours)["p99"], 2),
                }
            print(
                f"[bench] acknowledgements: {args.commits} sequential requests of {args.rows} rows",
                flush=True,
            )
            report["results"]["acks_seaweedfs"] = {
                name: bench_acks(
                    f"{s3_base}/acks-{name}",
                    env,
                    locking,
                    requests=args.commits,
                    rows=args.rows,
                    workdir=workdir,
                )
                for name, locking in (("unlocked", {"kind": "auto"}), ("dynamodb_lease", dynamo))
            }
            print(
                "[bench] the write stage on the wire: the unlocked run again, through a timing proxy",
                flush=True,
            )
            report["results"]["acks_seaweedfs_wire"] = bench_acks(
                f"{s3_base}/acks-wire", env, {"kind": "auto"}, requests=args.commits, rows=args.rows,
                workdir=workdir, wire=True,
            )  # fmt: skip
            wire = report["results"]["acks_seaweedfs_wire"]
            # The untraced run's write stage less the same requests' upstream time: delta-rs' own work.
            wire["write_off_wire_mean_ms"] = round(
                report["results"]["acks_seaweedfs"]["unlocked"]["stage_mean_ms"].get("write", 0.0)
                - sum(wire["wire_mean_ms"].values()),
                2,
            )
            print("[bench] the floor: the same requests done bare", flush=True)
            report["results"]["floor_seaweedfs"] = measure_floor(
                s3.env(), "bench", f"{s3_base.removeprefix('s3://bench/')}/floor", _ndjson(0, args.rows),
                args.commits,
            )  # fmt: skip
            print(f"[bench] HTTP: {args.clients} clients for {args.http_seconds}s on SeaweedFS", flush=True)
            report["results"]["http_seaweedfs"] = bench_http(
                f"s3://bench/{uuid.uuid4().hex[:8]}/http", env, dynamo, clients=args.clients,
                seconds=args.http_seconds, rows=args.http_rows, workdir=workdir,
            )  # fmt: skip
            print(f"[bench] HTTP: Arrow IPC, {args.arrow_rows}-row bodies", flush=True)
            report["results"]["http_seaweedfs_arrow"] = bench_http(
                f"s3://bench/{uuid.uuid4().hex[:8]}/http-arrow", env, dynamo, clients=args.clients,
                seconds=args.http_seconds, rows=args.arrow_rows, workdir=workdir, arrow=True,
            )  # fmt: skip
            print("[bench] HTTP: the naive baseline server, same clients", flush=True)
            report["results"]["http_seaweedfs_naive"] = bench_http(
                f"s3://bench/{uuid.uuid4().hex[:8]}/http-naive", env, {}, clients=args.clients,
                seconds=args.http_seconds, rows=args.http_rows, workdir=workdir, naive=True,
            )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ours, naive_http = report["results"]["http_seaweedfs"], report["results"]["http_seaweedfs_naive"]
    report["results"]["http_vs_naive"] = {
        "throughput_ratio": round(ours["rows_per_second"] / max(naive_http["rows_per_second"], 1), 2),
        "ack_p99_ratio": (
            round(naive_http["ack_latency_ms"]["p99"] / ours["ack_latency_ms"]["p99"], 2)
            if ours["ack_latency_ms"] and naive_http["ack_latency_ms"]
            else None
        ),
    }
    report["targets"] = _check_targets(report["results"])
    publish(report, args.output, _summary(report))
    return 0


def _check_targets(results: dict[str, Any]) -> dict[str, Any]:
    s3 = results["seaweedfs"]
    http = results["http_seaweedfs"]
    acks = results["acks_seaweedfs"]
    checks = {
        "ack_p99_ms_unlocked": (
            acks["unlocked"]["ack_ms"]["p99"],
            acks["unlocked"]["ack_ms"]["p99"] <= TARGETS["ack_p99_ms_unlocked"],
        ),
        "ack_p99_ms_dynamodb_lease": (
            acks["dynamodb_lease"]["ack_ms"]["p99"],
            acks["dynamodb_lease"]["ack_ms"]["p99"] <= TARGETS["ack_p99_ms_dynamodb_lease"],
        ),
        "s3_p99_ms": (
            s3["deltaingest_commit_ms"]["p99"],
            s3["deltaingest_commit_ms"]["p99"] <= TARGETS["s3_p99_ms"],
        ),
        "p99_speedup_vs_naive": (
            s3["p99_speedup_vs_naive"],
            s3["p99_speedup_vs_naive"] >= TARGETS["p99_speedup_vs_naive"],
        ),
        "http_rows_per_second": (
            http["rows_per_second"],
            http["rows_per_second"] >= TARGETS["http_rows_per_second"] and http["errors"] == 0,
        ),
    }
    return {name: {"value": v, "target": TARGETS[name], "met": ok} for name, (v, ok) in checks.items()}


def _summary(report: dict[str, Any]) -> str:
    lines = ["", f"Writer benchmark: {report['commits']} commits of {report['rows_per_commit']} rows"]
    for name in ("seaweedfs", "seaweedfs_dynamodb_lock", "local"):
        r = report["results"][name]
        n, o = r["naive_commit_ms"], r["deltaingest_commit_ms"]
        lines.append(f"  {name} (lock: {r['lock']})")
        lines.append(
            f"    naive        p50 {n['p50']:7.1f} ms  p95 {n['p95']:7.1f} ms  p99 {n['p99']:7.1f} ms"
        )
        lines.append(
            f"    deltaingest  p50 {o['p50']:7.1f} ms  p95 {o['p95']:7.1f} ms  p99 {o['p99']:7.1f} ms"
            f"  -> p99 {r['p99_speedup_vs_naive']}x lower"
        )
    acks, floor = report["results"]["acks_seaweedfs"], report["results"]["floor_seaweedfs"]
    lines.append(f"  Acknowledgements on SeaweedFS, one producer, {report['commits']} sequential requests")
    for name, r in acks.items():
        a = r["ack_ms"]
        lines.append(f"    {name:15s} p50 {a['p50']:7.1f} ms  p95 {a['p95']:7.1f} ms  p99 {a['p99']:7.1f} ms")
    naive = report["results"]["seaweedfs"]["naive_commit_ms"]
    lines.append(
        f"    {'naive loop':15s} p50 {naive['p50']:7.1f} ms  p95 {naive['p95']:7.1f} ms"
        f"  p99 {naive['p99']:7.1f} ms  (write_deltalake per batch, same run)"
    )
    stages = sorted({stage for r in acks.values() for stage in r["stage_mean_ms"]})
    lines.append("    stage means (ms)   " + "  ".join(f"{stage:>10s}" for stage in stages))
    for name, r in acks.items():
        cells = "  ".join(f"{r['stage_mean_ms'].get(stage, 0.0):10.2f}" for stage in stages)
        lines.append(f"    {name:18s} {cells}")
    wire = report["results"]["acks_seaweedfs_wire"]
    lines.append(
        "    the unlocked write stage on the wire (mean ms and calls per ack; a proxy times them in a"
        " second run; the rest is the write stage less these):"
    )
    lines.append(
        "      "
        + ", ".join(
            f"{kind} {ms} ({wire['wire_calls_per_ack'][kind]}x)" for kind, ms in wire["wire_mean_ms"].items()
        )
        + f"; rest (delta-rs planning, Parquet encoding, log replay) {wire['write_off_wire_mean_ms']}"
    )
    lines.append("  The floor, the same steps done bare in this run (p50 / p99 ms):")
    lines.append(
        "    " + ", ".join(f"{step} {floor[step]['p50']} / {floor[step]['p99']}" for step in FLOOR_STEPS)
    )
    for name in ("leased", "unlocked"):
        total = floor[f"total_{name}"]
        lines.append(f"    sum ({name}): p50 {total['p50']} ms, p99 {total['p99']} ms")
    for key, label in (
        ("http_seaweedfs", "deltaingest, DynamoDB lock, NDJSON"),
        ("http_seaweedfs_arrow", "deltaingest, DynamoDB lock, Arrow IPC"),
        ("http_seaweedfs_naive", "naive"),
    ):
        h = report["results"][key]
        a = h["ack_latency_ms"] or {"p50": None, "p99": None}
        lines.append(
            f"  HTTP on SeaweedFS ({label}), {h['clients']} clients x {h['rows_per_request']} rows: "
            f"{h['rows_per_second']:,} rows/s, ack p50 {a['p50']} ms p99 {a['p99']} ms, "
            f"{h['requests_per_commit']} requests per commit, {h['errors']} errors"
        )
    versus = report["results"]["http_vs_naive"]
    lines.append(
        f"  HTTP: {versus['throughput_ratio']}x the naive server's throughput, "
        f"ack p99 {versus['ack_p99_ratio']}x lower"
    )
    for name, check in report["targets"].items():
        verdict = "MET" if check["met"] else "MISSED"
        lines.append(f"  target {name}: {check['value']} (target {check['target']}) {verdict}")
    return "\n".join(lines)
