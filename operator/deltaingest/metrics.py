"""Every Prometheus metric, defined once. One ``Metrics`` per process (or per test) with its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROW_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000)


class Metrics:
    """The writer's and the maintenance loops' metrics. Names follow the product's documented metric list."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ingest_rows = Counter("ingest_rows", "Rows committed to the table", registry=r)
        self.source_rows = Counter(
            "ingest_source_rows", "Rows committed to the table by front door", ["source"], registry=r
        )
        self.ingest_bytes = Counter("ingest_bytes", "Request body bytes accepted (as sent)", registry=r)
        self.ingest_requests = Counter(
            "ingest_requests", "Ingest requests by HTTP status code", ["code"], registry=r
        )
        self.request_duration = Histogram(
            "request_duration_seconds",
            "Time from request arrival to acknowledgement",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_duration = Histogram(
            "commit_duration_seconds",
            "One group commit: lock, refresh, write, release",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_stage = Histogram(
            "commit_stage_seconds",
            "Where an acknowledgement's time goes: decode, queue_wait (until its group's commit starts), "
            "lock, catch_up (reading the log), write (data files and the log entry, one delta-rs call)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commits = Counter("commits", "Group commits by result", ["result"], registry=r)
        self.commit_retries = Counter(
            "commit_retries", "Commit attempts that failed and were retried", registry=r
        )
        self.batch_rows = Histogram("batch_rows", "Rows per group commit", buckets=_ROW_BUCKETS, registry=r)
        self.batch_requests = Histogram(
            "batch_requests", "Requests per group commit", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.dead_letters = Counter(
            "ingest_dead_letter_rows", "Rows committed to the dead-letter table", registry=r
        )
        self.duplicates = Counter(
            "ingest_duplicate_requests", "Requests acknowledged as already committed", registry=r
        )
        self.lock_wait = Histogram(
            "lock_wait_seconds", "Time spent acquiring the commit lock", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.table_version = Gauge("table_version", "Latest table version this process has seen", registry=r)
        self.inflight_bytes = Gauge(
            "ingest_inflight_bytes", "Bytes of requests not yet acknowledged", registry=r
        )
        self.checkpoints = Counter("checkpoints", "Checkpoints written by result", ["result"], registry=r)
        self.checkpoint_duration = Histogram(
            "checkpoint_duration_seconds",
            "Checkpoint and log cleanup, off the request path",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.compaction_duration = Histogram(
            "compaction_duration_seconds",
            "One compaction run, planning included",
            buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
            registry=r,
        )
        self.compaction_runs = Counter(
            "compaction_runs",
            "Compaction runs by result (compacted, idle, skipped, failed)",
            ["result"],
            registry=r,
        )
        self.compaction_bytes_rewritten = Counter(
            "compaction_bytes_rewritten", "Bytes written by compaction (its output files)", registry=r
        )
        self.compaction_bytes_read = Counter(
            "compaction_bytes_read", "Bytes of the small files compaction replaced", registry=r
        )
        self.compaction_files_removed = Counter(
            "compaction_files_removed", "Files replaced by compaction", registry=r
        )
        self.vacuum_files_deleted = Counter(
            "vacuum_files_deleted", "Unreferenced files deleted by vacuum", registry=r
        )
        self.vacuum_runs = Counter(
            "vacuum_runs", "Vacuum runs by result (vacuumed, skipped, failed)", ["result"], registry=r
        )
        self.maintenance_last_success = Gauge(
            "maintenance_last_success_timestamp_seconds",
            "End of the daemon's last compaction or vacuum run that did not fail (at first: its start)",
            ["component"],
            registry=r,
        )
        self.maintenance_interval = Gauge(
            "maintenance_interval_seconds",
            "How often the daemon runs compaction or vacuum",
            ["component"],
            registry=r,
        )
        self.table_files = Gauge("table_files", "Active files in the latest version", registry=r)
        self.table_small_files = Gauge(
            "table_small_files", "Active files smaller than compaction.smallFileSize", registry=r
        )
        self.table_bytes = Gauge("table_bytes", "Bytes of the active files", registry=r)
