"""``deltaingest bench maintenance``: ingest in 1,000-row commits while the daemon's compaction policy runs,
against the naive baseline of the same commits with no compaction. Reports write amplification, the most
small files seen at once, and polars full-scan time before and after compaction."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable

from deltaingest.bench.stats import publish
from deltaingest.bench.writer import SCHEMA, _arrow_batch
from deltaingest.config import CompactionSpec, Settings
from deltaingest.devservers import SeaweedFS
from deltaingest.ingest.committer import Batch
from deltaingest.ingest.service import open_writer
from deltaingest.locking.factory import build_lock
from deltaingest.locking.lease import new_holder_id
from deltaingest.maintenance.compact import Compactor
from deltaingest.maintenance.report import RunReport
from deltaingest.table.facts import active_files, summarize
from deltaingest.table.storage import storage_options

TARGETS = {"write_amplification": 2.0, "read_speedup": 10.0}
# The daemon's policy on a shorter clock: the bench ingests in about a minute what a real table gets in hours.
BENCH_POLICY = {"intervalSeconds": 2, "minAgeSeconds": 1, "minSmallFiles": 32, "maxIntervalSeconds": 10}


def ingest(uri: str, *, rows: int, per_commit: int) -> float:
    """``rows`` rows in commits of ``per_commit`` through deltaingest's committer; returns the seconds."""
    settings = Settings.model_validate({"table": {"uri": uri, "schema": SCHEMA}})
    writer = open_writer(settings)
    started = time.perf_counter()
    try:
        for index, start in enumerate(range(0, rows, per_commit)):
            batch = _arrow_batch(start, min(per_commit, rows - start))
            writer.committer.commit([Batch(batch, "bench", index)])
    finally:
        writer.close()
    return time.perf_counter() - started


class PolicyLoop:
    """The daemon's compaction loop in a thread; samples the table's small files before every run."""

    def __init__(self, uri: str, policy: CompactionSpec) -> None:
        self.uri, self.policy = uri, policy
        self.options = storage_options(uri)
        self.reports: list[RunReport] = []
        self.most_small_files = 0
        self._lock = build_lock(Settings().locking, uri, scope="maintenance", holder=new_holder_id())
        self.compactor = Compactor(uri, self.options, policy, lock=self._lock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="compaction-loop")

    def __enter__(self) -> PolicyLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._lock.close()

    def _run(self) -> None:
        while not self._stop.wait(self.policy.interval_seconds):
            if not DeltaTable.is_deltatable(self.uri, storage_options=self.options):
                continue
            report = self.compactor.run()
            self.reports.append(report)
            # The run's own reading of the table, before it compacted: the peak of small files.
            before = report.totals.get("tableBefore", {})
            self.most_small_files = max(self.most_small_files, before.get("smallFiles", 0))

    def settle(self) -> bool:
        """Wait until the policy rests after writes stopped: no compaction for ``maxInterval`` plus two
        intervals, long enough for the idle rule to have consolidated the table. False on timeout."""
        quiet = self.policy.max_interval_seconds + 2 * self.policy.interval_seconds
        deadline = time.monotonic() + 5 * quiet
        last_change = time.monotonic()
        seen = len(self.reports)
        while time.monotonic() < deadline:
            if len(self.reports) > seen:
                if any(r.status == "done" for r in self.reports[seen:]):
                    last_change = time.monotonic()
                seen = len(self.reports)
            if time.monotonic() - last_change >= quiet:
                return True
            time.sleep(0.2)
        return False

    def sample(self) -> None:
        table = DeltaTable(self.uri, storage_options=self.options)
        facts = summarize(table.version(), active_files(table), small_file_size=self.policy.small_file_size)
        self.most_small_files = max(self.most_small_files, facts.small_files)


def read_seconds(uri: str, repeats: int = 3) -> tuple[float, int]:
    """Median wall time of a full polars scan (every column, every row), and the row count."""
    times, count = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        count = pl.read_delta(uri, storage_options=storage_options(uri) or None).height
        times.append(time.perf_counter() - started)
    return statistics.median(times), count


def _files(uri: str, policy: CompactionSpec) -> dict[str, int]:
    table = DeltaTable(uri, storage_options=storage_options(uri))
    return summarize(table.version(), active_files(table), small_file_size=policy.small_file_size).as_dict()


def run(args: argparse.Namespace) -> int:
    policy = CompactionSpec.model_validate({**BENCH_POLICY, **json.loads(args.policy or "{}")})
    workdir = Path(tempfile.mkdtemp(prefix="deltaingest-bench-maint-", dir=args.workdir))
    try:
        if args.storage == "local":
            measured = _measure(str(workdir / "baseline"), str(workdir / "maintained"), policy, args)
        else:
            with SeaweedFS(bucket="bench", workdir=workdir / "seaweedfs") as s3:
                os.environ.update(s3.env())
                base = f"s3://bench/{uuid.uuid4().hex[:8]}"
                measured = _measure(f"{base}/baseline", f"{base}/maintained", policy, args)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report = _report(measured, policy, args)
    publish(report, args.output, _summary(report))
    return 0 if report["targets"]["rows_unchanged"]["met"] else 1


def _measure(baseline: str, ours: str, policy: CompactionSpec, args: argparse.Namespace) -> dict[str, Any]:
    print(f"[bench] baseline: {args.rows:,} rows in {args.rows_per_commit:,}-row commits, no compaction")
    baseline_seconds = ingest(baseline, rows=args.rows, per_commit=args.rows_per_commit)
    print("[bench] the same commits with the daemon's compaction policy running alongside")
    with PolicyLoop(ours, policy) as loop:
        ours_seconds = ingest(ours, rows=args.rows, per_commit=args.rows_per_commit)
        loop.sample()
        written_during_ingest = sum(r.totals.get("bytesWritten", 0) for r in loop.reports)
        at_end_of_ingest = _files(ours, policy)
        read_at_end, rows_at_end = read_seconds(ours)
        print("[bench] writes stopped; waiting until the policy rests (idle consolidation)")
        settled = loop.settle()
    print("[bench] reading both with polars")
    before = _files(baseline, policy)
    read_before, rows_before = read_seconds(baseline)
    read_after, rows_after = read_seconds(ours)
    return {
        "storage": args.storage,
        "seconds": (baseline_seconds, ours_seconds),
        "loop": loop,
        "written_during_ingest": written_during_ingest,
        "settled": settled,
        "files": (before, at_end_of_ingest, _files(ours, policy)),
        "largest": max(f.size for f in active_files(DeltaTable(ours, storage_options=storage_options(ours)))),
        "reads": (read_before, read_at_end, read_after),
        "rows": (rows_before, rows_at_end, rows_after),
    }


def _report(m: dict[str, Any], policy: CompactionSpec, args: argparse.Namespace) -> dict[str, Any]:
    loop: PolicyLoop = m["loop"]
    before, at_end, after = m["files"]
    read_before, read_at_end, read_after = m["reads"]
    ingested = before["bytes"]  # the baseline keeps every file the writer wrote
    written = sum(r.totals.get("bytesWritten", 0) for r in loop.reports)
    report: dict[str, Any] = {
        "storage": m["storage"],
        "rows": args.rows,
        "rows_per_commit": args.rows_per_commit,
        "policy": policy.model_dump(by_alias=True),
        "ingest_seconds": {
            "baseline": round(m["seconds"][0], 1),
            "with_compaction": round(m["seconds"][1], 1),
        },
        "bytes_ingested": ingested,
        "compaction_runs": sum(1 for r in loop.reports if r.status == "done"),
        "compaction_log": [
            {k: i[k] for k in ("reason", "targetSize", "filesRemoved", "filesAdded", "bytesWritten")}
            for r in loop.reports
            for i in r.items
            if "filesRemoved" in i
        ],
        "compaction_bytes_written": written,
        "write_amplification": round(written / ingested, 3),
        "write_amplification_during_ingest": round(m["written_during_ingest"] / ingested, 3),
        "most_small_files_seen": loop.most_small_files,
        "policy_rested": m["settled"],
        "files": {"baseline": before, "at_end_of_ingest": at_end, "after_compaction": after},
        "largest_file_bytes": m["largest"],
        "read_seconds": {
            "before_compaction": round(read_before, 4),
            "at_end_of_ingest": round(read_at_end, 4),
            "after_compaction": round(read_after, 4),
        },
        "read_speedup": round(read_before / read_after, 1),
        "read_speedup_at_end_of_ingest": round(read_before / read_at_end, 1),
        "rows_read": dict(
            zip(("before_compaction", "at_end_of_ingest", "after_compaction"), m["rows"], strict=True)
        ),
    }
    report["targets"] = {
        "write_amplification": {
            "value": report["write_amplification"],
            "target": TARGETS["write_amplification"],
            "met": report["write_amplification"] <= TARGETS["write_amplification"],
        },
        "read_speedup": {
            "value": report["read_speedup"],
            "target": TARGETS["read_speedup"],
            "met": report["read_speedup"] >= TARGETS["read_speedup"],
        },
        "rows_unchanged": {"met": set(m["rows"]) == {args.rows}},
    }
    return report


def _summary(r: dict[str, Any]) -> str:
    files, reads = r["files"], r["read_seconds"]
    lines = [
        "",
        f"Maintenance benchmark: {r['rows']:,} rows in {r['rows_per_commit']:,}-row commits ({r['storage']})",
        f"  ingest            {r['ingest_seconds']['baseline']}s without compaction, "
        f"{r['ingest_seconds']['with_compaction']}s with the policy running",
        f"  compaction        {r['compaction_runs']} runs wrote {r['compaction_bytes_written']:,} bytes for "
        f"{r['bytes_ingested']:,} ingested: write amplification {r['write_amplification']} "
        f"({r['write_amplification_during_ingest']} while writing)",
        f"  small files       at most {r['most_small_files_seen']} at once with the policy; "
        f"{files['baseline']['files']} without compaction",
        f"  files             {files['baseline']['files']} uncompacted; with the policy "
        f"{files['at_end_of_ingest']['files']} when writes stopped, {files['after_compaction']['files']} "
        f"once the policy rested{'' if r['policy_rested'] else ' (it did NOT rest before the timeout)'}",
        f"  polars full scan  {reads['before_compaction']}s uncompacted; {reads['at_end_of_ingest']}s when "
        f"writes stopped ({r['read_speedup_at_end_of_ingest']}x), {reads['after_compaction']}s after "
        f"compaction ({r['read_speedup']}x)",
    ]
    for name, check in r["targets"].items():
        verdict = "MET" if check["met"] else "MISSED"
        value = f": {check['value']} (target {check['target']})" if "value" in check else ""
        lines.append(f"  target {name}{value} {verdict}")
    return "\n".join(lines)
