"""Compaction and vacuum against SeaweedFS with the DynamoDB maintenance lease on moto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from deltaingest.config import CompactionSpec, LockSpec
from deltaingest.devservers import SeaweedFS
from deltaingest.locking.factory import build_lock
from deltaingest.maintenance.compact import Compactor
from deltaingest.table.facts import active_files
from tests.helpers import run_cli, settings_file, wait_for

pytestmark = pytest.mark.integration

SCHEMA = [
    {"name": "id", "type": "long", "nullable": False},
    {"name": "day", "type": "string"},
    {"name": "payload", "type": "string"},
]


def append(uri: str, env: dict[str, str], ids: range, day: str | None) -> None:
    data = pa.table(
        {
            "id": pa.array(list(ids), pa.int64()),
            "day": pa.array([day] * len(ids), pa.string()),
            "payload": pa.array([f"row-{i}" for i in ids], pa.string()),
        }
    )
    write_deltalake(uri, data, mode="append", partition_by=["day"], storage_options=env)


def rows(uri: str, env: dict[str, str], version: int | None = None) -> list[tuple[Any, ...]]:
    table = DeltaTable(uri, storage_options=env, version=version).to_pyarrow_table()
    return sorted(zip(*(table.column(c).to_pylist() for c in ("id", "day", "payload")), strict=True))


def data_files(seaweed: SeaweedFS, uri: str) -> set[str]:
    """Every object of the table outside its log and our lock folder, as paths relative to the table."""
    prefix = uri.removeprefix(f"s3://{seaweed.bucket}/") + "/"
    client = seaweed.s3_client()
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=seaweed.bucket, Prefix=prefix):
        keys.update(o["Key"].removeprefix(prefix) for o in page.get("Contents", []))
    return {k for k in keys if not k.startswith(("_delta_log/", "_deltaingest/"))}


def active(uri: str, env: dict[str, str], version: int | None = None) -> set[str]:
    return {f.path for f in active_files(DeltaTable(uri, storage_options=env, version=version))}


def cli_json(*args: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    result = run_cli(*args, "--json", env=env)
    assert result.returncode in (0, 1), result.stderr.decode()
    return result.returncode, json.loads(result.stdout)


@pytest.fixture
def dynamo_flags(lock_table: str) -> tuple[str, ...]:
    return ("--lock", "dynamodb", "--lock-table", lock_table)


def test_compaction_merges_small_files_of_one_partition_and_keeps_every_row(
    s3_uri: str, cloud_env: dict[str, str], dynamo_flags: tuple[str, ...], tmp_path: Path
) -> None:
    for n in range(6):
        append(s3_uri, cloud_env, range(n * 10, n * 10 + 10), "2024-05-01")
    for n in range(3):
        append(s3_uri, cloud_env, range(1000 + n * 10, 1000 + n * 10 + 10), "2024-05-02")
    append(s3_uri, cloud_env, range(5000, 5003), None)
    before_rows = rows(s3_uri, cloud_env)
    before = active(s3_uri, cloud_env)
    untouched = {f for f in before if not f.startswith("day=2024-05-01/")}
    config = settings_file(tmp_path, schema=SCHEMA, compaction={"minSmallFiles": 5, "minAgeSeconds": 0})

    termination_log = tmp_path / "termination-log"
    code, report = cli_json(
        "compact", "--table", s3_uri, "--config", str(config), *dynamo_flags,
        "--termination-log", str(termination_log), env=cloud_env,
    )  # fmt: skip

    assert code == 0 and report["status"] == "done", report
    # One line for the Job's termination message, which the operator copies into the resource's status.
    summary = termination_log.read_text()
    assert "\n" not in summary and f"compact {s3_uri}: done" in summary and "filesRemoved: 6" in summary
    assert report["filesRemoved"] == 6 and report["filesAdded"] == 1 and report["partitions"] == 1
    assert report["bytesRead"] > 0 and report["bytesWritten"] > 0
    assert report["versionAfter"] == report["versionBefore"] + 1
    after = active(s3_uri, cloud_env)
    merged = {f for f in after if f.startswith("day=2024-05-01/")}
    assert len(merged) == 1 and not merged & before
    assert after - merged == untouched  # other partitions (and the null partition) untouched
    assert rows(s3_uri, cloud_env) == before_rows  # same multiset of rows, by content
    history = DeltaTable(s3_uri, storage_options=cloud_env).history(1)[0]
    assert history["operation"] == "OPTIMIZE" and "deltaingest.maintainer" in history

    # Nothing left that meets a trigger: the next run does nothing and says why.
    code, report = cli_json(
        "compact", "--table", s3_uri, "--config", str(config), *dynamo_flags, env=cloud_env
    )
    assert code == 0 and report["status"] == "nothing-to-do" and report["filesRemoved"] == 0


def test_time_trigger_and_minimum_age(
    s3_uri: str, cloud_env: dict[str, str], dynamo_flags: tuple[str, ...], tmp_path: Path
) -> None:
    for n in range(3):
        append(s3_uri, cloud_env, range(n * 10, n * 10 + 10), "d")
    young = settings_file(
        tmp_path,
        schema=SCHEMA,
        compaction={"minSmallFiles": 2, "minAgeSeconds": 3600, "maxIntervalSeconds": 7200},
    )
    code, report = cli_json(
        "compact", "--table", s3_uri, "--config", str(young), *dynamo_flags, env=cloud_env
    )
    assert code == 0 and report["status"] == "nothing-to-do"
    assert "below triggers: 0 small files" in report["reason"]  # all three are younger than minAge

    waiting = settings_file(
        tmp_path,
        schema=SCHEMA,
        compaction={"minSmallFiles": 100, "minAgeSeconds": 0, "maxIntervalSeconds": 8},
    )
    code, report = cli_json(
        "compact", "--table", s3_uri, "--config", str(waiting), *dynamo_flags, env=cloud_env
    )
    assert report["status"] == "nothing-to-do"  # 3 files, none has waited 8 s
    time.sleep(8.2)
    append(s3_uri, cloud_env, range(100, 110), "d")  # fresh: not idle while the CLI starts (< 8 s)
    code, report = cli_json(
        "compact", "--table", s3_uri, "--config", str(waiting), *dynamo_flags, env=cloud_env
    )
    assert code == 0 and report["status"] == "done", report
    assert "maxInterval" in report["items"][0]["reason"]
    assert len(active(s3_uri, cloud_env)) == 1


def test_a_second_compaction_skips_while_the_lease_is_held(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, dynamo_flags: tuple[str, ...], tmp_path: Path
) -> None:
    for n in range(3):
        append(s3_uri, cloud_env, range(n * 10, n * 10 + 10), "d")
    version = DeltaTable(s3_uri, storage_options=cloud_env).version()
    spec = LockSpec(kind="dynamodb", table_name=lock_table)
    lock = build_lock(spec, s3_uri, scope="maintenance", holder="vacuum-in-progress")
    lease = lock.acquire()
    try:
        code, report = cli_json("compact", "--table", s3_uri, "--force", *dynamo_flags, env=cloud_env)
        assert code == 0 and report["status"] == "skipped"
        assert "vacuum-in-progress" in report["reason"]
        code, report = cli_json(
            "vacuum", "--table", s3_uri, "--retain-hours", "0", "--force", *dynamo_flags, env=cloud_env
        )
        assert code == 0 and report["status"] == "skipped"
        assert DeltaTable(s3_uri, storage_options=cloud_env).version() == version  # nothing ran
    finally:
        lock.release(lease)
        lock.close()
    code, report = cli_json("compact", "--table", s3_uri, "--force", *dynamo_flags, env=cloud_env)
    assert code == 0 and report["status"] == "done"


def test_vacuum_deletes_exactly_the_expired_unreferenced_files(
    seaweed: SeaweedFS, s3_uri: str, cloud_env: dict[str, str], dynamo_flags: tuple[str, ...]
) -> None:
    # Fifteen seconds (forced below): long enough for the steps between the second compaction and the vacuum
    # that must keep its files, short enough to wait out twice.
    window = 15.0
    retain = ("--retain-hours", str(window / 3600))
    for n in range(6):
        append(s3_uri, cloud_env, range(n * 10, n * 10 + 10), "d")  # f1..f6
    first = active(s3_uri, cloud_env)
    assert run_cli("compact", "--table", s3_uri, "--force", *dynamo_flags, env=cloud_env).returncode == 0
    compacted_at = DeltaTable(s3_uri, storage_options=cloud_env).version()  # removes f1..f6, adds F1
    time.sleep(window + 0.5)  # f1..f6 were removed more than the retention ago
    append(s3_uri, cloud_env, range(100, 110), "d")
    append(s3_uri, cloud_env, range(110, 120), "d")
    second = active(s3_uri, cloud_env)  # F1, g1, g2
    assert run_cli("compact", "--table", s3_uri, "--force", *dynamo_flags, env=cloud_env).returncode == 0
    expected_rows = rows(s3_uri, cloud_env)
    stored = data_files(seaweed, s3_uri)
    assert first | second <= stored

    # A retention below the table's (a week) is refused without --force, and nothing changes.
    version = DeltaTable(s3_uri, storage_options=cloud_env).version()
    refused = run_cli("vacuum", "--table", s3_uri, *retain, *dynamo_flags, env=cloud_env)
    assert refused.returncode == 2 and b"shorter than the table's" in refused.stderr
    assert data_files(seaweed, s3_uri) == stored
    assert DeltaTable(s3_uri, storage_options=cloud_env).version() == version

    dry_args = ("--force", "--keep-versions", "1", "--dry-run")
    dry_code, dry = cli_json("vacuum", "--table", s3_uri, *retain, *dry_args, *dynamo_flags, env=cloud_env)
    assert dry_code == 0 and {i["path"] for i in dry["items"]} == first
    assert data_files(seaweed, s3_uri) == stored

    code, report = cli_json(
        "vacuum", "--table", s3_uri, *retain, "--force", "--keep-versions", "1", *dynamo_flags, env=cloud_env
    )
    assert code == 0 and report["status"] == "done", report
    assert {i["path"] for i in report["items"]} == first
    assert data_files(seaweed, s3_uri) == stored - first  # exactly the expired unreferenced files went
    latest = DeltaTable(s3_uri, storage_options=cloud_env).version()
    assert report["checkpointVersion"] == latest
    for kept in range(compacted_at, latest + 1):  # every version inside the retention is readable
        DeltaTable(s3_uri, storage_options=cloud_env, version=kept).to_pyarrow_table()
    with pytest.raises(Exception):  # noqa: B017 (the error type is delta-rs' and version-dependent)
        DeltaTable(s3_uri, storage_options=cloud_env, version=compacted_at - 1).to_pyarrow_table()
    assert rows(s3_uri, cloud_env) == expected_rows

    # The newest N versions stay readable however old they are: keep from the second batch of writes on.
    time.sleep(window + 0.5)
    second_writes = compacted_at + 1
    keep = str(latest - second_writes + 1)
    code, report = cli_json(
        "vacuum", "--table", s3_uri, *retain, "--force", "--keep-versions", keep, *dynamo_flags, env=cloud_env
    )
    assert code == 0 and report["filesDeleted"] == 0, (report["items"], first, second)
    DeltaTable(s3_uri, storage_options=cloud_env, version=second_writes).to_pyarrow_table()
    code, report = cli_json(
        "vacuum", "--table", s3_uri, *retain, "--force", "--keep-versions", "1", *dynamo_flags, env=cloud_env
    )
    assert {i["path"] for i in report["items"]} == second
    assert data_files(seaweed, s3_uri) == active(s3_uri, cloud_env)
    assert rows(s3_uri, cloud_env) == expected_rows


def test_kill9_of_the_compactor_mid_run_leaves_the_table_readable(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path
) -> None:
    partitions = 40
    for commit in range(8):
        ids = range(commit * 1000, commit * 1000 + partitions * 5)
        data = pa.table(
            {
                "id": pa.array(list(ids), pa.int64()),
                "day": pa.array([f"d{i % partitions:02d}" for i in ids], pa.string()),
                "payload": pa.array([f"row-{i}" for i in ids], pa.string()),
            }
        )
        write_deltalake(s3_uri, data, mode="append", partition_by=["day"], storage_options=cloud_env)
    expected = rows(s3_uri, cloud_env)
    base = DeltaTable(s3_uri, storage_options=cloud_env).version()
    config = settings_file(tmp_path, schema=SCHEMA, locking={"kind": "dynamodb", "tableName": lock_table,
                                                               "leaseSeconds": 3})  # fmt: skip
    args = [
        sys.executable,
        "-m",
        "deltaingest",
        "compact",
        "--table",
        s3_uri,
        "--config",
        str(config),
        "--force",
    ]
    log = (tmp_path / "compactor.log").open("wb")
    compactor = subprocess.Popen(args, env={**os.environ, **cloud_env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Each partition is its own commit: kill once some, not all, have landed.
        wait_for(
            lambda: (
                DeltaTable(s3_uri, storage_options=cloud_env).version() >= base + 3
                or compactor.poll() is not None
            ),
            "the compactor's third commit",
        )
        assert compactor.poll() is None, "the compactor finished before it could be killed"
        compactor.kill()
        compactor.wait()
    finally:
        if compactor.poll() is None:
            compactor.kill()
    killed_at = DeltaTable(s3_uri, storage_options=cloud_env).version()
    assert base < killed_at < base + partitions
    assert rows(s3_uri, cloud_env) == expected  # readable, every row once

    # The dead run's lease expires (3 s), then the next run finishes the job.
    deadline = time.monotonic() + 60
    while True:
        code, report = cli_json(
            "compact", "--table", s3_uri, "--config", str(config), "--force", env=cloud_env
        )
        if report["status"] != "skipped" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 0 and report["status"] == "done", report
    table = DeltaTable(s3_uri, storage_options=cloud_env)
    per_partition = Counter(f.partition for f in active_files(table))
    assert len(per_partition) == partitions and set(per_partition.values()) == {1}
    assert rows(s3_uri, cloud_env) == expected


def test_full_vacuum_deletes_old_orphans_on_a_local_table(tmp_path: Path) -> None:
    uri = str(tmp_path / "local")
    for n in range(3):
        append(uri, {}, range(n * 10, n * 10 + 10), "d")
    expected = rows(uri, {})
    orphan = Path(uri, "day=d", "part-orphan-from-a-crashed-writer.parquet")
    orphan.write_bytes(b"PAR1 not committed")
    recent = Path(uri, "day=d", "part-uncommitted-just-now.parquet")
    recent.write_bytes(b"PAR1 still being written")
    two_hours_ago = time.time() - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))

    plain = run_cli("vacuum", "--table", uri, "--retain-hours", "1", "--force")
    assert plain.returncode == 0 and orphan.exists()  # the default mode only deletes removed files
    too_short = run_cli("vacuum", "--table", uri, "--retain-hours", "0.5", "--force", "--full")
    assert too_short.returncode == 2 and b"at least 1" in too_short.stderr
    code, report = cli_json("vacuum", "--table", uri, "--retain-hours", "1", "--force", "--full", env={})
    assert code == 0 and [i["path"] for i in report["items"]] == [
        "day=d/part-orphan-from-a-crashed-writer.parquet"
    ]
    assert not orphan.exists() and recent.exists()
    assert rows(uri, {}) == expected


def test_z_order_rewrites_a_triggered_partition_sorted_by_its_columns(tmp_path: Path) -> None:
    uri = str(tmp_path / "zorder")
    for n in (3, 1, 2, 0):  # ids arrive out of order
        append(uri, {}, range(n * 10, n * 10 + 10), "d")
    expected = rows(uri, {})
    config = settings_file(tmp_path, schema=SCHEMA, compaction={"zOrderBy": ["id"], "minSmallFiles": 2,
                                                                 "minAgeSeconds": 0})  # fmt: skip
    code, report = cli_json("compact", "--table", uri, "--config", str(config), env={})
    assert code == 0 and report["status"] == "done" and report["filesRemoved"] == 4
    table = DeltaTable(uri)
    assert table.history(1)[0]["operation"] == "OPTIMIZE"
    assert len(active_files(table)) == 1
    assert table.to_pyarrow_table().column("id").to_pylist() == list(range(40))  # clustered by id
    assert rows(uri, {}) == expected


def test_a_second_vacuum_counts_no_file_twice_on_a_local_table(tmp_path: Path) -> None:
    uri = str(tmp_path / "twice")
    for n in range(4):
        append(uri, {}, range(n * 10, n * 10 + 10), "d")
    assert run_cli("compact", "--table", uri, "--force").returncode == 0
    args = ("vacuum", "--table", uri, "--retain-hours", "0", "--force", "--keep-versions", "1")
    code, first = cli_json(*args, env={})
    assert code == 0 and first["filesDeleted"] == 4
    code, second = cli_json(*args, env={})  # delta-rs lists the four tombstones again
    assert code == 0 and second["filesDeleted"] == 0 and second["items"] == []
    append(uri, {}, range(100, 110), "d")
    assert run_cli("compact", "--table", uri, "--force").returncode == 0  # two new tombstones
    code, third = cli_json(*args, env={})  # four gone and two present: only the two count
    assert code == 0 and third["filesDeleted"] == 2 and len(third["items"]) == 2


def test_the_daemons_compactor_remembers_the_compression_of_its_runs(tmp_path: Path) -> None:
    uri = str(tmp_path / "remember")
    policy = CompactionSpec(min_small_files=2, min_age_seconds=0)
    lock = build_lock(LockSpec(), uri, scope="maintenance", holder="test")
    for n in range(20):
        append(uri, {}, range(n * 100, n * 100 + 100), "d")
    compactor = Compactor(uri, {}, policy, lock=lock)
    first = compactor.run()
    assert first.status == "done" and first.totals["compression"] == 1.0  # no earlier compaction
    observed = first.totals["bytesWritten"] / first.totals["bytesRead"]
    assert observed < 0.5  # one merged file is far smaller than twenty small ones
    for n in range(20, 40):
        append(uri, {}, range(n * 100, n * 100 + 100), "d")
    second = compactor.run(force=True)
    assert second.totals["compression"] == round(observed, 3)
    assert second.items[0]["targetSize"] == int(policy.target_file_size * 1.1 / observed)
    lock.close()
