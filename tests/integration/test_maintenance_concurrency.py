"""Two daemons (writer + compaction + vacuum) on one table under load, with a reader that never stops."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from tests.helpers import Load, WriterProcess, settings_file, start_writers

pytestmark = pytest.mark.integration

RETAIN_SECONDS = 5.0
KEEP_VERSIONS = 5
DAEMON_METRICS = (
    "ingest_rows_total",
    "compaction_duration_seconds_bucket",
    "compaction_bytes_rewritten_total",
    "vacuum_files_deleted_total",
    "table_files",
    "table_small_files",
)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


class Reader:
    """Loads the latest version and reads all of it, again and again; records every failure."""

    def __init__(self, uri: str, env: dict[str, str]) -> None:
        self.uri, self.env = uri, env
        self.reads = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(120)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                table = DeltaTable(self.uri, storage_options=self.env)
                table.to_pyarrow_table(columns=["id"])
                self.reads += 1
            except Exception as err:  # every failure is the finding
                self.failures.append(f"{type(err).__name__}: {err}")


def test_writers_compaction_and_vacuum_together_for_500_commits(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(
        tmp_path,
        locking={"kind": "dynamodb", "tableName": lock_table},
        compaction={"intervalSeconds": 1, "minSmallFiles": 8, "minAgeSeconds": 0},
        vacuum={
            "intervalSeconds": 2,
            "retainHours": RETAIN_SECONDS / 3600,
            "keepVersions": KEEP_VERSIONS,
            "force": True,
        },
    )
    a, b = start_writers(2, s3_uri, config, cloud_env, tmp_path, writers, command="daemon")
    load = Load([a.ingest_url, b.ingest_url], clients=8, stop_at_version=850)
    with Reader(s3_uri, cloud_env) as reader:
        load.run(seconds=400)
    metrics = [w.metrics() for w in (a, b)]
    for daemon in (a, b):
        assert daemon.terminate() == 0, daemon.log()
    stopped = time.time()

    assert load.failures == [] and load.connection_errors == 0, (load.failures[:5], a.log(), b.log())
    assert reader.failures == [], reader.failures[:5]
    assert reader.reads > 10
    for text in metrics:
        assert 'commits_total{result="failure"}' not in text
        for name in DAEMON_METRICS:
            assert re.search(rf"^{name}[ {{]", text, re.MULTILINE), (
                f"{name} missing from the daemon's metrics"
            )
    assert sum(_metric(m, 'compaction_runs_total{result="done"}') for m in metrics) > 0
    assert sum(_metric(m, 'vacuum_runs_total{result="done"}') for m in metrics) > 0
    assert sum(_metric(m, "vacuum_files_deleted_total") for m in metrics) > 0

    table = DeltaTable(s3_uri, storage_options=cloud_env)
    history = table.history()
    writes = [h for h in history if h["operation"] == "WRITE"]
    assert len(writes) >= 500
    assert any(h["operation"] == "OPTIMIZE" for h in history)
    ids = table.to_pyarrow_table(columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicated rows"
    assert sorted(ids) == sorted(load.acked), "lost or unexpected rows"

    # Every version inside the retention of every vacuum that ran, and the newest N, is readable.
    latest = table.version()
    inside = [h["version"] for h in history if h["timestamp"] / 1000 >= stopped - RETAIN_SECONDS]
    for version in sorted({*inside, *range(latest - KEEP_VERSIONS + 1, latest + 1)}):
        old = DeltaTable(s3_uri, storage_options=cloud_env, version=version)
        assert old.to_pyarrow_table(columns=["id"]).num_rows > 0
