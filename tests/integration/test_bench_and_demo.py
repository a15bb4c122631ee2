"""``bench writer`` and ``demo`` run end to end (tiny sizes; the numbers themselves are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from deltalake import DeltaTable

from tests.helpers import run_cli


def test_bench_writer_reports_every_section(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    sizes = (
        "--commits", "3", "--rows", "10", "--clients", "2", "--http-seconds", "1", "--http-rows", "10",
        "--arrow-rows", "20",
    )  # fmt: skip
    result = run_cli("bench", "writer", *sizes, "--output", str(output))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    report = json.loads(output.read_text())
    results = report["results"]
    for backend in ("seaweedfs", "seaweedfs_dynamodb_lock", "local"):
        assert results[backend]["deltaingest_commit_ms"]["n"] == 3
        assert results[backend]["naive_commit_ms"]["n"] == 3
        assert results[backend]["final_version"] == 3
    assert results["seaweedfs_dynamodb_lock"]["lock"] == "dynamodb"
    assert results["http_seaweedfs"]["errors"] == 0 and results["http_seaweedfs"]["requests"] > 0
    assert results["http_seaweedfs_naive"]["requests"] > 0
    arrow = results["http_seaweedfs_arrow"]
    assert arrow["format"] == "arrow-ipc" and arrow["errors"] == 0 and arrow["requests"] > 0
    acks = results["acks_seaweedfs"]
    assert acks["unlocked"]["lock"] == "none" and acks["dynamodb_lease"]["lock"] == "dynamodb"
    for run in acks.values():
        assert run["ack_ms"]["n"] == 3
        assert set(run["stage_mean_ms"]) == {"decode", "queue_wait", "lock", "catch_up", "write"}
    wire = results["acks_seaweedfs_wire"]
    assert wire["ack_ms"]["n"] == 3
    # each acknowledgement PUT one data file and one commit file, through the proxy
    assert wire["wire_calls_per_ack"]["data_put"] == 1 and wire["wire_calls_per_ack"]["log_put"] == 1
    assert "write_off_wire_mean_ms" in wire
    floor = results["floor_seaweedfs"]
    for step in ("json_parse", "parquet_encode", "data_put", "log_put_if_none_match", "log_list"):
        assert floor[step]["n"] == 3
    assert floor["total_unlocked"]["p50"] >= floor["total_leased"]["p50"] > 0
    assert set(report["targets"]) == {
        "s3_p99_ms", "p99_speedup_vs_naive", "http_rows_per_second", "ack_p99_ms_unlocked",
        "ack_p99_ms_dynamodb_lease",
    }  # fmt: skip
    summary = result.stdout.decode()
    assert "stage means (ms)" in summary and "The floor" in summary and "Arrow IPC" in summary
    assert b"Writer benchmark" in result.stdout


def test_bench_maintenance_reports_every_section(tmp_path: Path) -> None:
    output = tmp_path / "maintenance.json"
    policy = '{"intervalSeconds": 0.5, "minAgeSeconds": 0, "minSmallFiles": 4, "maxIntervalSeconds": 1}'
    sizes = ("--rows", "20000", "--storage", "local", "--policy", policy)
    result = run_cli("bench", "maintenance", *sizes, "--output", str(output))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    report = json.loads(output.read_text())
    assert report["files"]["baseline"]["files"] == 20
    assert report["targets"]["rows_unchanged"]["met"]
    assert report["compaction_runs"] > 0 and report["bytes_ingested"] > 0
    assert report["policy_rested"] and report["files"]["after_compaction"]["files"] == 1
    assert set(report["targets"]) == {"write_amplification", "read_speedup", "rows_unchanged"}
    assert b"Maintenance benchmark" in result.stdout


def test_demo_runs_the_daemon_on_a_local_table(tmp_path: Path) -> None:
    table = tmp_path / "demo" / "events"
    result = run_cli("demo", "--table", str(table), "--seconds", "3", "--clients", "2", "--rows", "50")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert b"deltaingest demo report" in result.stdout
    assert DeltaTable(str(table)).count() > 0
    assert b"after compaction" in result.stdout
    # The read-back line the report prints runs as printed, with no uv (nor anything else) on PATH.
    lines = result.stdout.decode().splitlines()
    read_back = lines[lines.index("Read it with polars:") + 1].strip()
    read = subprocess.run(
        read_back, shell=True, capture_output=True, env={"PATH": os.defpath}, timeout=120, check=False
    )
    assert read.returncode == 0, read.stderr.decode()[-3000:]
    assert b"statistic" in read.stdout and b"count" in read.stdout


def test_bench_growth_reports_every_window_of_every_run(tmp_path: Path) -> None:
    output = tmp_path / "growth.json"
    sizes = ("--commits", "80", "--window", "40", "--naive-commits", "40", "--compaction-interval", "0.5")
    result = run_cli("bench", "growth", "--storage", "local", *sizes, "--output", str(output))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    report = json.loads(output.read_text())
    writer, daemon, naive = (report["results"][k] for k in ("writer", "daemon_with_compaction", "naive"))
    assert [w["commits"] for w in writer["windows"]] == [40, 40] == [w["commits"] for w in daemon["windows"]]
    assert [w["commits"] for w in naive["windows"]] == [40]
    for window in writer["windows"] + daemon["windows"]:
        assert (
            window["ack_ms"]["p99"] > 0
            and window["writer_cpu_ms_per_commit"] > 0
            and window["writer_rss_mb"] > 0
        )
    assert writer["restart_seconds"] > 0 and writer["commit_failures"] == 0
    assert daemon["compaction_commits"] >= 1 and daemon["files_at_end"] < 80  # compaction ran alongside
    assert set(report["targets"]) >= {"p99_last_vs_first", "cpu_last_vs_first", "rss_growth_mb"}
    assert b"Growth benchmark" in result.stdout
