"""``deltaingest bench growth``: what each commit costs as the table ages.

One producer posts 100-row NDJSON bodies one after another to a live writer (each acknowledgement one commit,
with a producer sequence), and for every window of commits the benchmark reports the acknowledgement p50/p99,
the writer's CPU seconds per commit, its RSS and the object store's CPU per commit; then the time a restarted
writer takes to be ready. The same run is repeated with ``deltaingest daemon``'s compaction alongside (how
the acknowledgements around each compaction commit fare, and whether any writer commit failed or retried),
and the naive delta-rs loop (``write_deltalake(uri, df, mode="append")`` per batch) gives its figures for
the same windows."""

from __future__ import annotations

import argparse
import functools
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from deltalake import DeltaTable, write_deltalake

from deltaingest.bench.stats import latency_ms, publish
from deltaingest.bench.writer import SCHEMA, _arrow_batch, _ndjson, metric, wait_ready
from deltaingest.devservers import SeaweedFS, free_port
from deltaingest.protocol import NDJSON_TYPE
from deltaingest.table.storage import storage_options

ROWS = 100
TARGETS = {"p99_last_vs_first": 1.2, "rss_growth_mb": 50.0, "cpu_last_vs_first": 1.2, "p99_compaction": 1.5}
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Window:
    """One window of commits: the acknowledgement latencies and the CPU and memory figures at its end."""

    acks: list[float]
    writer_cpu: float
    store_cpu: float
    rss_mb: float

    def report(self) -> dict[str, Any]:
        n = len(self.acks)
        return {
            "commits": n,
            "ack_ms": latency_ms(self.acks),
            "writer_cpu_ms_per_commit": round(self.writer_cpu / n * 1000, 2),
            "store_cpu_ms_per_commit": round(self.store_cpu / n * 1000, 2),
            "writer_rss_mb": round(self.rss_mb, 1),
        }


@contextmanager
def writer_process(
    command: str, uri: str, env: dict[str, str], config: dict[str, Any], workdir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """``deltaingest writer`` (or ``daemon``) on ``uri``: the process, its ingest URL, its metrics URL."""
    port, metrics_port = free_port(), free_port()
    path = workdir / f"{command}-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = [
        sys.executable, "-m", "deltaingest", "--log-level", "WARNING", command, "--table", uri,
        "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
        "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    with (workdir / f"{command}-{port}.log").open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        yield process, f"http://127.0.0.1:{port}/v1/ingest", f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        process.terminate()
        process.wait(60)


def produce(
    url: str, commits: int, window: int, pid: int, store_pid: int | None
) -> tuple[list[Window], list[tuple[float, float]]]:
    """Post ``commits`` bodies one after another; the figures per window and every ack's (start, end)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=120)
    windows: list[Window] = []
    spans: list[tuple[float, float]] = []
    body_ids = 0
    try:
        for start in range(0, commits, window):
            cpu0 = cpu_seconds(pid)
            store0 = cpu_seconds(store_pid) if store_pid else 0.0
            acks = []
            for sequence in range(start, min(start + window, commits)):
                body = _ndjson(body_ids, ROWS)
                body_ids += ROWS
                headers = {
                    "Content-Type": NDJSON_TYPE,
                    "X-Producer-Id": "growth",
                    "X-Sequence": str(sequence),
                }
                began, wall = time.perf_counter(), time.time()
                connection.request("POST", parts.path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                ended = time.perf_counter()
                if response.status != 200:
                    raise RuntimeError(f"ingest answered {response.status}: {answer[:300]!r}")
                acks.append(ended - began)
                spans.append((wall, wall + ended - began))
            store = cpu_seconds(store_pid) - store0 if store_pid else 0.0
            windows.append(Window(acks, cpu_seconds(pid) - cpu0, store, rss_mb(pid)))
            print(f"[bench] {start + len(acks)} commits: {_line(windows[-1].report())}", flush=True)
    finally:
        connection.close()
    return windows, spans


def restart_seconds(
    command: str, uri: str, env: dict[str, str], config: dict[str, Any], workdir: Path
) -> float:
    started = time.perf_counter()
    with writer_process(command, uri, env, config, workdir):
        return round(time.perf_counter() - started, 2)


def compaction_effect(
    uri: str, options: dict[str, str], spans: list[tuple[float, float]], margin: float = 1.0
) -> dict[str, Any]:
    """The acknowledgements that overlapped a compaction commit (within ``margin`` seconds of its
    timestamp), against all of them."""
    table = DeltaTable(uri, storage_options=options)
    landed = [e["timestamp"] / 1000 for e in table.history() if e.get("operation") == "OPTIMIZE"]
    near: list[float] = []
    elsewhere: list[float] = []
    for start, end in spans:
        close = any(start - margin <= at <= end + margin for at in landed)
        (near if close else elsewhere).append(end - start)
    return {
        "compaction_commits": len(landed),
        "acks_near_compaction_commits": latency_ms(near) if near else None,
        "acks_elsewhere": latency_ms(elsewhere) if elsewhere else None,
        "files_at_end": len(table.file_uris()),
    }


def naive_loop(uri: str, options: dict[str, str], commits: int, window: int) -> list[dict[str, Any]]:
    """The usual approach, timed in the same windows (one process: CPU and RSS are this benchmark's)."""
    DeltaTable.create(uri, _arrow_batch(0, 1).schema, storage_options=options)
    pid = os.getpid()
    reports = []
    for start in range(0, commits, window):
        cpu0 = cpu_seconds(pid)
        acks = []
        for i in range(start, min(start + window, commits)):
            data = _arrow_batch(i * ROWS, ROWS)
            began = time.perf_counter()
            write_deltalake(uri, data, mode="append", storage_options=options)
            acks.append(time.perf_counter() - began)
        reports.append(Window(acks, cpu_seconds(pid) - cpu0, 0.0, rss_mb(pid)).report())
        print(f"[bench] naive {start + len(acks)} commits: {_line(reports[-1])}", flush=True)
    return reports


def _line(window: dict[str, Any]) -> str:
    ack, cpu, store = window["ack_ms"], window["writer_cpu_ms_per_commit"], window["store_cpu_ms_per_commit"]
    return (
        f"ack p50 {ack['p50']:6.1f} ms p99 {ack['p99']:6.1f} ms, writer CPU {cpu:5.1f} ms/commit, "
        f"store CPU {store:5.1f} ms/commit, RSS {window['writer_rss_mb']:.0f} MB"
    )


def scenario(
    name: str,
    command: str,
    *,
    uri: str,
    env: dict[str, str],
    config: dict[str, Any],
    args: argparse.Namespace,
    workdir: Path,
    store_pid: int | None,
) -> dict[str, Any]:
    print(f"[bench] {name}: {args.commits} commits on {uri}", flush=True)
    with writer_process(command, uri, env, config, workdir) as (process, url, metrics_url):
        windows, spans = produce(url, args.commits, args.window, process.pid, store_pid)
        with urllib.request.urlopen(metrics_url) as response:
            text = response.read().decode()
    result: dict[str, Any] = {
        "windows": [w.report() for w in windows],
        "commit_retries": metric(text, "commit_retries_total"),
        "commit_failures": _failures(text),
        "checkpoints": metric(text, 'checkpoints_total{result="success"}'),
        "restart_seconds": restart_seconds(command, uri, env, config, workdir),
    }
    if command == "daemon":
        result.update(compaction_effect(uri, storage_options(uri, environ=env), spans))
    return result


def _failures(text: str) -> float:
    return metric(text, 'commits_total{result="failure"}')


def _ratios(result: dict[str, Any]) -> dict[str, float]:
    first, last = result["windows"][0], result["windows"][-1]
    return {
        "p99_last_vs_first": round(last["ack_ms"]["p99"] / first["ack_ms"]["p99"], 2),
        "cpu_last_vs_first": round(
            last["writer_cpu_ms_per_commit"] / max(first["writer_cpu_ms_per_commit"], 0.01), 2
        ),
        "rss_growth_mb": round(last["writer_rss_mb"] - first["writer_rss_mb"], 1),
    }


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="deltaingest-bench-growth-"))
    base = {"table": {"schema": SCHEMA}, "writer": {}, "locking": {"kind": "none"}}
    report: dict[str, Any] = {
        "benchmark": "growth",
        "commits": args.commits,
        "window": args.window,
        "rows_per_commit": ROWS,
        "storage": args.storage,
        "results": {},
    }
    try:
        with ExitStack() as stack:
            if args.storage == "seaweedfs":
                seaweed = stack.enter_context(SeaweedFS(bucket="growth", workdir=workdir / "seaweedfs"))
                env, store_pid = seaweed.env(), seaweed.process.pid if seaweed.process else None
                prefix = f"s3://growth/{uuid.uuid4().hex[:8]}"
            else:
                env, store_pid, prefix = {}, None, str(workdir / "tables")
            results = report["results"]
            runs = functools.partial(scenario, env=env, args=args, workdir=workdir, store_pid=store_pid)
            results["writer"] = runs("writer, no compaction", "writer", uri=f"{prefix}/plain", config=base)
            if not args.no_compaction:
                daemon = {
                    **base,
                    "compaction": {"intervalSeconds": args.compaction_interval, "minAgeSeconds": 0},
                    "vacuum": {"enabled": False},
                }
                results["daemon_with_compaction"] = runs(
                    "deltaingest daemon, compaction alongside",
                    "daemon",
                    uri=f"{prefix}/compacted",
                    config=daemon,
                )
            naive_commits = min(args.naive_commits, args.commits)
            if naive_commits:
                print(f"[bench] naive delta-rs loop: {naive_commits} commits", flush=True)
                for key, value in env.items():
                    os.environ[key] = value
                uri = f"{prefix}/naive"
                results["naive"] = {
                    "windows": naive_loop(uri, storage_options(uri), naive_commits, args.window)
                }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["targets"] = _targets(report["results"])
    publish(report, args.output, summary(report))
    return 0


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    ratios = _ratios(results["writer"])
    checks = {
        "p99_last_vs_first": (ratios["p99_last_vs_first"], ratios["p99_last_vs_first"] <= 1.2),
        "cpu_last_vs_first": (ratios["cpu_last_vs_first"], ratios["cpu_last_vs_first"] <= 1.2),
        "rss_growth_mb": (ratios["rss_growth_mb"], ratios["rss_growth_mb"] < 50.0),
    }
    daemon = results.get("daemon_with_compaction")
    if daemon and daemon["acks_near_compaction_commits"] and daemon["acks_elsewhere"]:
        near = daemon["acks_near_compaction_commits"]["p99"]
        ratio = round(near / daemon["acks_elsewhere"]["p99"], 2)
        clean = daemon["commit_retries"] == 0 and daemon["commit_failures"] == 0
        checks["p99_compaction"] = (ratio, ratio <= 1.5 and clean)
    return {name: {"value": v, "target": TARGETS[name], "met": ok} for name, (v, ok) in checks.items()}


def summary(report: dict[str, Any]) -> str:
    lines = [
        "",
        f"Growth benchmark: {report['commits']} commits of {report['rows_per_commit']} rows on "
        f"{report['storage']}, windows of {report['window']}",
    ]
    for name, result in report["results"].items():
        lines.append(f"  {name}")
        for index, window in enumerate(result["windows"]):
            lines.append(f"    {(index + 1) * report['window']:6d}  {_line(window)}")
        if "restart_seconds" in result:
            lines.append(
                f"    restart: ready in {result['restart_seconds']} s; {result['checkpoints']:.0f} "
                f"checkpoints, {result['commit_retries']:.0f} commit retries, "
                f"{result['commit_failures']:.0f} failed commits"
            )
        if result.get("acks_near_compaction_commits") and result.get("acks_elsewhere"):
            near, others = result["acks_near_compaction_commits"], result["acks_elsewhere"]
            lines.append(
                f"    {result['compaction_commits']} compaction commits; the {near['n']} acks within 1 s of "
                f"one: p50 {near['p50']} ms p99 {near['p99']} ms (the others: p99 {others['p99']} ms); "
                f"{result['files_at_end']} files at the end"
            )
    for name, check in report["targets"].items():
        verdict = "MET" if check["met"] else "MISSED"
        lines.append(f"  target {name}: {check['value']} (target {check['target']}) {verdict}")
    return "\n".join(lines)
