"""Probes run in daemon threads with a timeout: a stuck store neither stalls the loop nor blocks exit."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest

from deltaingest.k8s.conditions import Probe
from deltaingest.k8s.reconcile import _in_thread
from deltaingest.k8s.spec import DeltaTableIngestSpec, parse_spec

pytestmark = pytest.mark.asyncio
SPEC = parse_spec({"table": {"uri": "s3://lake/t"}})


async def test_answer_comes_back() -> None:
    def check(spec: DeltaTableIngestSpec, environ: Mapping[str, str]) -> Probe:
        return Probe(True, "TableRead", environ["X"])

    assert await _in_thread(check, SPEC, {"X": "ok"}, 5) == Probe(True, "TableRead", "ok")


async def test_stuck_probe_times_out_in_a_daemon_thread() -> None:
    release = threading.Event()
    threads: list[threading.Thread] = []

    def stuck(spec: DeltaTableIngestSpec, environ: Mapping[str, str]) -> Probe:
        threads.append(threading.current_thread())
        release.wait()
        return Probe(True, "Late", "")

    probe = await _in_thread(stuck, SPEC, {}, 0.05)
    assert (probe.ok, probe.reason) == (False, "Timeout")
    assert threads[0].daemon  # would not keep the process alive
    release.set()


async def test_probe_error_propagates() -> None:
    def broken(spec: DeltaTableIngestSpec, environ: Mapping[str, str]) -> Probe:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await _in_thread(broken, SPEC, {}, 5)
