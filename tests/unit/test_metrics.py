"""What the alerts read: the operator's condition series and the daemon's last successful maintenance run."""

from __future__ import annotations

from pathlib import Path

from deltaingest import daemon
from deltaingest.config import Settings
from deltaingest.k8s import metrics as operator_metrics
from deltaingest.locking.factory import build_lock
from deltaingest.maintenance.report import RunReport
from deltaingest.maintenance.tables import kept_tables
from deltaingest.metrics import Metrics


def condition(name: str, kind: str) -> float | None:
    labels = {"namespace": "tables", "name": name, "type": kind}
    return operator_metrics.REGISTRY.get_sample_value("deltaingest_operator_condition", labels)


def test_each_condition_is_a_series_until_the_resource_is_forgotten() -> None:
    status = {
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "TableReachable", "status": "True"},
            {"type": "LockTableReady", "status": "Unknown"},
        ]
    }
    operator_metrics.record("tables", "conditions-test", status)
    assert condition("conditions-test", "Ready") == 0
    assert condition("conditions-test", "TableReachable") == 1
    assert condition("conditions-test", "LockTableReady") == 0
    # An invalid spec reports Ready only: the other conditions keep what was last known.
    operator_metrics.record(
        "tables", "conditions-test", {"conditions": [{"type": "Ready", "status": "False"}]}
    )
    assert condition("conditions-test", "TableReachable") == 1
    operator_metrics.forget("tables", "conditions-test")
    assert condition("conditions-test", "Ready") is None
    assert condition("conditions-test", "TableReachable") is None


def test_the_daemon_exports_each_loops_interval_and_a_first_last_success(tmp_path: Path) -> None:
    uri = str(tmp_path / "table")
    settings = Settings.model_validate(
        {"compaction": {"intervalSeconds": 30}, "vacuum": {"enabled": False}, "table": {"uri": uri}}
    )
    metrics = Metrics()
    (table,) = kept_tables(settings)
    lock = build_lock(settings.locking, uri, scope="maintenance", holder="test")
    try:
        loops = daemon.maintenance_loops(settings, [(table, lock)], metrics)
    finally:
        lock.close()
    assert len(loops) == 1
    value = metrics.registry.get_sample_value
    assert value("maintenance_interval_seconds", {"component": "compaction"}) == 30
    assert (value("maintenance_last_success_timestamp_seconds", {"component": "compaction"}) or 0) > 0
    assert value("maintenance_interval_seconds", {"component": "vacuum"}) is None


def test_the_dead_letter_tables_runs_leave_the_tables_gauges_alone(tmp_path: Path) -> None:
    """The gauges the alerts read are the table's: a dead-letter run never moves its last success."""
    settings = Settings.model_validate(
        {
            "table": {"uri": str(tmp_path / "table")},
            "writer": {"invalidRows": "deadLetter", "deadLetter": {"uri": str(tmp_path / "dead")}},
            "compaction": {"intervalSeconds": 30},
            "vacuum": {"intervalSeconds": 60},
        }
    )
    metrics = Metrics()
    _, dead = kept_tables(settings)
    lock = build_lock(settings.locking, dead.uri, scope="maintenance", holder="test")
    try:
        loops = daemon.maintenance_loops(settings, [(dead, lock)], metrics)
    finally:
        lock.close()
    assert len(loops) == 2  # its compaction and its vacuum
    value = metrics.registry.get_sample_value
    for component in ("compaction", "vacuum"):
        assert value("maintenance_interval_seconds", {"component": component}) is None
    daemon._finished(None, "vacuum", RunReport("vacuum", dead.uri, status="done"))
    assert value("maintenance_last_success_timestamp_seconds", {"component": "vacuum"}) is None


def test_only_a_failed_run_leaves_the_last_success_where_it_was() -> None:
    metrics = Metrics()
    last = metrics.maintenance_last_success.labels("vacuum")
    for status, moves in (("failed", False), ("skipped", True), ("nothing-to-do", True), ("done", True)):
        last.set(0)
        daemon._finished(metrics, "vacuum", RunReport("vacuum", "t", status=status))
        assert (
            metrics.registry.get_sample_value(
                "maintenance_last_success_timestamp_seconds", {"component": "vacuum"}
            )
            != 0
        ) is moves, status
