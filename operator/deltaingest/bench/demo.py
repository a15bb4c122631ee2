"""``deltaingest demo``: a writer on a local table (the embedded default, no servers), synthetic events over
HTTP from concurrent clients, and a short report. Later issues add compaction and vacuum to it."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from deltalake import DeltaTable

from deltaingest.bench.writer import bench_http


def run(args: argparse.Namespace) -> int:
    table = Path(args.table).absolute()
    if table.exists():
        shutil.rmtree(table)
    workdir = table.parent / ".demo-work"
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"[demo] writer on {table} (local filesystem, lock file), {args.clients} clients for {args.seconds}s"
    )
    result = bench_http(
        str(table),
        {},
        {"kind": "auto"},
        clients=args.clients,
        seconds=args.seconds,
        rows=args.rows,
        workdir=workdir,
    )
    shutil.rmtree(workdir, ignore_errors=True)
    delta = DeltaTable(str(table))
    rows = delta.count()
    latency = result["ack_latency_ms"] or {}
    print()
    print("deltaingest demo report")
    print(f"  table            {table}")
    print(f"  rows committed   {rows:,} ({result['rows_per_second']:,} rows/s acknowledged)")
    print(
        f"  requests         {result['requests']:,} ({result['errors']} errors), {result['commits']} commits"
    )
    print(f"  group commit     {result['requests_per_commit']} requests per commit")
    percentiles = ", ".join(f"{q} {latency.get(q)} ms" for q in ("p50", "p95", "p99"))
    print(f"  ack latency      {percentiles}")
    print(
        f"  table version    {delta.version()}, {len(delta.file_uris())} data files (compaction: next issue)"
    )
    print()
    print("Read it with polars:")
    print(f"  uv run python -c \"import polars as pl; print(pl.read_delta('{table}').describe())\"")
    return 0 if result["errors"] == 0 else 1
