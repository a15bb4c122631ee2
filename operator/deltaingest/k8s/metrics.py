"""The operator's own Prometheus metrics (one series per DeltaTableIngest), on a registry of their own."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from deltaingest.k8s.conditions import CONDITION_TYPES

REGISTRY = CollectorRegistry()
_KEY = ("namespace", "name")

RECONCILES = Counter(
    "deltaingest_operator_reconciles_total", "Reconciles by outcome", ["result"], registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "deltaingest_operator_reconcile_duration_seconds", "Time one reconcile took", registry=REGISTRY
)
READY = Gauge(
    "deltaingest_operator_table_ready", "1 when the Ready condition is True", _KEY, registry=REGISTRY
)
WRITERS_READY = Gauge("deltaingest_operator_writers_ready", "Ready writer pods", _KEY, registry=REGISTRY)
WRITERS_DESIRED = Gauge(
    "deltaingest_operator_writers_desired", "Desired writer pods", _KEY, registry=REGISTRY
)
TABLE_VERSION = Gauge("deltaingest_operator_table_version", "Delta table version", _KEY, registry=REGISTRY)
TABLE_FILES = Gauge("deltaingest_operator_table_files", "Active data files", _KEY, registry=REGISTRY)
TABLE_SMALL_FILES = Gauge(
    "deltaingest_operator_table_small_files",
    "Active files below compaction.smallFileSize",
    _KEY,
    registry=REGISTRY,
)
TABLE_BYTES = Gauge("deltaingest_operator_table_bytes", "Bytes in active data files", _KEY, registry=REGISTRY)
MAINTENANCE_FAILED = Gauge(
    "deltaingest_operator_last_run_failed",
    "1 when the newest finished compaction or vacuum Job failed",
    [*_KEY, "component"],
    registry=REGISTRY,
)
CONDITION = Gauge(
    "deltaingest_operator_condition",
    "1 when the status condition of this type is True, 0 when it is False or Unknown",
    [*_KEY, "type"],
    registry=REGISTRY,
)

_PER_TABLE = (
    READY,
    WRITERS_READY,
    WRITERS_DESIRED,
    TABLE_VERSION,
    TABLE_FILES,
    TABLE_SMALL_FILES,
    TABLE_BYTES,
)


def record(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Set the per-table series from a status as ``reconcile`` computed it."""
    key = (namespace, name)
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    READY.labels(*key).set(1 if ready else 0)
    for item in conditions:  # an invalid spec reports Ready only: the others keep what was last known
        CONDITION.labels(*key, item.get("type")).set(1 if item.get("status") == "True" else 0)
    writers = status.get("writers") or {}
    table = status.get("table") or {}
    for gauge, source, field in (
        (WRITERS_READY, writers, "ready"),
        (WRITERS_DESIRED, writers, "desired"),
        (TABLE_VERSION, table, "version"),
        (TABLE_FILES, table, "activeFiles"),
        (TABLE_SMALL_FILES, table, "smallFiles"),
        (TABLE_BYTES, table, "bytes"),
    ):
        value = source.get(field) if isinstance(source, dict) else None
        if value is not None:
            gauge.labels(*key).set(float(value))
    for component, field in (("compaction", "lastCompaction"), ("vacuum", "lastVacuum")):
        run = status.get(field)
        failed = isinstance(run, dict) and run.get("result") == "Failed"
        MAINTENANCE_FAILED.labels(*key, component).set(1 if failed else 0)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted resource's series, so dashboards do not show a table that is gone."""
    for gauge in _PER_TABLE:
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    for component in ("compaction", "vacuum"):
        with contextlib.suppress(KeyError):
            MAINTENANCE_FAILED.remove(namespace, name, component)
    for kind in CONDITION_TYPES:
        with contextlib.suppress(KeyError):
            CONDITION.remove(namespace, name, kind)
