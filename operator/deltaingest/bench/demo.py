"""``deltaingest demo``: the daemon (writer + compaction + vacuum) on a local table, the embedded default
with no servers, or with ``--s3`` on local SeaweedFS with the DynamoDB lock on moto; synthetic events over
HTTP from concurrent clients, then a short report."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from deltalake import DeltaTable

from deltaingest.bench.stats import latency_ms
from deltaingest.bench.writer import NDJSON, SCHEMA, client_bodies, drive, metric, wait_ready
from deltaingest.devservers import MotoDynamoDB, SeaweedFS, free_port
from deltaingest.table.facts import active_files
from deltaingest.table.storage import storage_options

# Maintenance on a demo's clock: compaction every few seconds, a vacuum retention of 15 seconds (forced,
# which a real table should never need).
DEMO_POLICY: dict[str, Any] = {
    "compaction": {"intervalSeconds": 5, "minAgeSeconds": 2, "minSmallFiles": 16, "maxIntervalSeconds": 15},
    "vacuum": {"intervalSeconds": 10, "retainHours": 15 / 3600, "keepVersions": 5, "force": True},
}


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.table).absolute().parent / ".demo-work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with ExitStack() as stack:
        if args.s3:
            s3 = SeaweedFS(bucket="demo", workdir=workdir / "seaweedfs").start()
            stack.callback(s3.stop)
            ddb = MotoDynamoDB(workdir=workdir / "moto").start()
            stack.callback(ddb.stop)
            env = {**s3.env(), **ddb.env()}
            os.environ.update(env)
            uri = f"s3://demo/events-{uuid.uuid4().hex[:6]}"
            locking: dict[str, Any] = {"kind": "dynamodb", "tableName": "deltaingest_demo_locks"}
            where = f"{uri} on SeaweedFS ({s3.endpoint}), DynamoDB lock on moto"
        else:
            uri = str(Path(args.table).absolute())
            shutil.rmtree(uri, ignore_errors=True)
            env, locking = {}, {"kind": "auto"}
            where = f"{uri} (local filesystem, lock file)"
        print(f"[demo] daemon on {where}; {args.clients} clients for {args.seconds:g}s", flush=True)
        result = _run_daemon(uri, env, locking, workdir, args)
        return _report(uri, where, result)


def _run_daemon(
    uri: str, env: dict[str, str], locking: dict[str, Any], workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    config = workdir / "demo.yaml"
    config.write_text(yaml.safe_dump({"table": {"schema": SCHEMA}, "locking": locking, **DEMO_POLICY}))
    port, metrics_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "deltaingest", "--log-level", "INFO", "daemon", "--table", uri,
        "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
        "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    log_path = workdir / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", process)
            url = f"http://127.0.0.1:{port}/v1/ingest"
            latencies, errors, elapsed = drive(
                url, client_bodies(args.clients, args.rows), NDJSON, args.seconds
            )
            print("[demo] load done; waiting for compaction of the idle table and a vacuum", flush=True)
            metrics = _after_next_runs(f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            process.terminate()
            process.wait(60)
    return {
        "latencies": latencies,
        "errors": errors,
        "elapsed": elapsed,
        "metrics": metrics,
        "log": log_path,
        "rows_per_request": args.rows,
    }


def _after_next_runs(url: str) -> str:
    """The daemon's metrics once the idle table is compacted into one file and a vacuum has run after this
    call (or after a timeout), so the report shows what maintenance did with the last writes."""

    def scrape() -> tuple[str, float]:
        with urllib.request.urlopen(url) as response:
            text = response.read().decode()
        runs = sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith("vacuum_runs_total{"))
        return text, runs

    _, vacuums = scrape()
    compaction = DEMO_POLICY["compaction"]
    deadline = time.monotonic() + compaction["maxIntervalSeconds"] + 3 * compaction["intervalSeconds"]
    while True:
        text, now_vacuums = scrape()
        if (now_vacuums > vacuums and metric(text, "table_files") <= 1) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def _report(uri: str, where: str, result: dict[str, Any]) -> int:
    options = storage_options(uri)
    table = DeltaTable(uri, storage_options=options)
    history = table.history()
    writes = sum(1 for h in history if h["operation"] == "WRITE")
    compactions = sum(1 for h in history if h["operation"] == "OPTIMIZE")
    metrics = result["metrics"]
    small = int(metric(metrics, "compaction_bytes_read_total"))
    rewritten = int(metric(metrics, "compaction_bytes_rewritten_total"))
    files_now = len(active_files(table))
    latency = latency_ms(result["latencies"]) if result["latencies"] else {}
    rows = table.count()
    acked = round(len(result["latencies"]) * result["rows_per_request"] / result["elapsed"])
    deleted = int(metric(metrics, "vacuum_files_deleted_total"))
    print()
    print("deltaingest demo report")
    print(f"  table            {where}")
    print(f"  rows             {rows:,} committed, {acked:,} rows/s acknowledged")
    print(
        f"  requests         {len(result['latencies']):,} ({len(result['errors'])} errors), {writes} commits"
    )
    print("  ack latency      " + ", ".join(f"{q} {latency.get(q)} ms" for q in ("p50", "p95", "p99")))
    print(f"  files            {writes} written by the writer, {files_now} after compaction")
    print(
        f"  compaction       {compactions} runs, {small:,} bytes of small files rewritten into {rewritten:,}"
    )
    print(f"  vacuum           {deleted} unreferenced files deleted, table at version {table.version()}")
    print(f"  daemon log       {result['log']}")
    print()
    if options:
        print("Read it with polars (the demo's SeaweedFS has stopped; this is the call for a running store,")
        print("with its AWS_* variables in the environment):")
    else:
        print("Read it with polars:")
    # The interpreter running the demo has polars (a dev dependency) and is found without uv on PATH.
    read = f"import polars as pl; print(pl.read_delta({json.dumps(uri)}).describe())"
    print(f"  {shlex.quote(sys.executable)} -c {shlex.quote(read)}")
    return 0 if not result["errors"] and rows > 0 else 1
