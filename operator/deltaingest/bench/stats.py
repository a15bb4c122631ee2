"""Latency summaries and the report output shared by the benchmarks."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max and mean in milliseconds, from seconds."""
    return {
        "p50": round(percentile(values, 50) * 1000, 2),
        "p95": round(percentile(values, 95) * 1000, 2),
        "p99": round(percentile(values, 99) * 1000, 2),
        "max": round(max(values) * 1000, 2),
        "mean": round(sum(values) / len(values) * 1000, 2),
        "n": len(values),
    }


def publish(report: dict[str, Any], output: Path | None, summary: str) -> None:
    """Print a benchmark's JSON report (and write it to ``output``), then its human summary."""
    text = json.dumps(report, indent=2)
    print(text)
    if output:
        output.write_text(text + "\n")
    print(summary)
