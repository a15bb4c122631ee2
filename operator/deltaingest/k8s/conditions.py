"""Pure status: what the operator observed (children, Jobs, table, lock table) to conditions and status.

Conditions follow metav1.Condition: a condition's lastTransitionTime moves only when its status changes, so
``kubectl wait --for=condition=Ready`` and alerting on transitions behave as with built-in resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from deltaingest.config import effective_table
from deltaingest.k8s.messages import one_line
from deltaingest.k8s.render import selector_string
from deltaingest.k8s.spec import (
    ColumnStatus,
    Condition,
    DeltaTableIngestSpec,
    DeltaTableIngestStatus,
    RunStatus,
    TableFactsStatus,
    TableStatus,
    WriterStatus,
)

Status = Literal["True", "False", "Unknown"]
COMPONENTS = ("compaction", "vacuum")
# Every status has these conditions, Ready first (kubectl describe lists them in this order).
CONDITION_TYPES = (
    "Ready",
    "WriterAvailable",
    "CompactionScheduled",
    "VacuumScheduled",
    "TableReachable",
    "LockTableReady",
)


@dataclass(frozen=True)
class Probe:
    """The outcome of one check the operator made (table read, lock table described)."""

    ok: bool
    reason: str
    message: str
    facts: Mapping[str, int] = field(default_factory=dict)
    columns: Sequence[tuple[str, str]] = ()  # the table's (name, Delta type), when it was read


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile saw, as plain data."""

    name: str
    generation: int
    spec: DeltaTableIngestSpec
    now: str
    deployment: Mapping[str, Any] | None
    cron_jobs: Mapping[str, Mapping[str, Any] | None]
    jobs: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    table: Probe | None
    lock: Probe
    dead_letters: Probe | None = None  # read with writer.invalidRows: deadLetter
    apply_error: str | None = None
    previous: Sequence[Mapping[str, Any]] = ()


def _finished(job: Mapping[str, Any]) -> tuple[Literal["Succeeded", "Failed"], str | None, str] | None:
    """A Job's result, when it has one: (result, time it ended, message)."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Succeeded", status.get("completionTime") or condition.get("lastTransitionTime"), ""
        if condition.get("type") == "Failed":
            message = condition.get("message") or condition.get("reason") or ""
            return "Failed", condition.get("lastTransitionTime"), message
    return None


def termination_messages(pods: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Job name -> what its newest finished pod wrote to its termination log (the run's summary)."""
    found: dict[str, tuple[str, str]] = {}
    for pod in pods:
        job = ((pod.get("metadata") or {}).get("labels") or {}).get("job-name")
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            message, at = terminated.get("message"), terminated.get("finishedAt") or ""
            if job and message and at >= found.get(job, ("", ""))[1]:
                found[job] = (message.strip(), at)
    return {job: message for job, (message, _) in found.items()}


def last_run(
    jobs: Sequence[Mapping[str, Any]], component: str, messages: Mapping[str, str] | None = None
) -> RunStatus | None:
    """The newest finished Job of ``component`` (``compaction`` or ``vacuum``), with its pod's summary."""
    newest: RunStatus | None = None
    for job in jobs:
        meta = job.get("metadata") or {}
        if (meta.get("labels") or {}).get("app.kubernetes.io/component") != component:
            continue
        finished = _finished(job)
        if finished is None:
            continue
        result, ended, message = finished
        name = meta.get("name", "")
        message = (messages or {}).get(name) or message
        run = RunStatus(
            job=name,
            result=result,
            start_time=(job.get("status") or {}).get("startTime"),
            completion_time=ended,
            message=message or None,
        )
        if newest is None or (run.completion_time or "") > (newest.completion_time or ""):
            newest = run
    return newest


def _condition(observed: Observed, kind: str, status: Status, reason: str, message: str) -> Condition:
    """Every condition is built here, so every message (and the events that repeat Ready's) is one line."""
    since = observed.now
    for old in observed.previous:
        if old.get("type") == kind and old.get("status") == status and old.get("lastTransitionTime"):
            since = old["lastTransitionTime"]
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=one_line(message),
        last_transition_time=since,
        observed_generation=observed.generation,
    )


def writer_counts(observed: Observed) -> WriterStatus:
    desired = 0 if observed.spec.suspend else observed.spec.writer.replicas
    status = (observed.deployment or {}).get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    return WriterStatus(desired=desired, ready=ready, summary=f"{ready}/{desired}")


def _writer(observed: Observed, counts: WriterStatus) -> tuple[Status, str, str]:
    if observed.deployment is None:
        return "False", "DeploymentMissing", "the writer Deployment does not exist yet"
    if observed.spec.suspend:
        return "False", "Suspended", "spec.suspend is true: writers are scaled to 0"
    if counts.desired == 0:
        return "False", "ScaledToZero", "spec.writer.replicas is 0"
    if counts.ready >= counts.desired:
        return "True", "WritersReady", f"{counts.ready}/{counts.desired} writer pods ready"
    return "False", "WritersNotReady", f"{counts.ready}/{counts.desired} writer pods ready"


def _schedule(observed: Observed, component: str, run: RunStatus | None) -> tuple[Status, str, str]:
    cron_job = observed.cron_jobs.get(component)
    if cron_job is None:
        return "False", "CronJobMissing", f"the {component} CronJob does not exist yet"
    spec = cron_job.get("spec") or {}
    if spec.get("suspend"):
        return "False", "Suspended", f"the {component} CronJob is suspended"
    if run is not None and run.result == "Failed":
        detail = f": {run.message}" if run.message else ""
        return "True", "LastRunFailed", f"job {run.job} failed at {run.completion_time}{detail}"
    return "True", "Scheduled", f"runs on '{spec.get('schedule', '')}'"


def _table(probe: Probe | None) -> tuple[Status, str, str]:
    if probe is None:
        return "Unknown", "NotChecked", "the table has not been read yet"
    return ("True" if probe.ok else "False"), probe.reason, probe.message


def _ready(conditions: Mapping[str, Condition], observed: Observed) -> tuple[Status, str, str]:
    if observed.apply_error:
        return "False", "ApplyFailed", observed.apply_error
    if observed.spec.suspend:
        return "False", "Suspended", "spec.suspend is true"
    problems: list[tuple[str, Condition]] = []
    for kind in ("WriterAvailable", "TableReachable", "LockTableReady"):
        if conditions[kind].status != "True":
            problems.append((kind, conditions[kind]))
    for kind in ("CompactionScheduled", "VacuumScheduled"):
        condition = conditions[kind]
        # A section suspended on purpose is the user's choice, not a fault; a failing run is.
        if (
            condition.status != "True" and condition.reason != "Suspended"
        ) or condition.reason == "LastRunFailed":
            problems.append((kind, condition))
    if not problems:
        return "True", "Ready", "writers ready, table reachable, maintenance scheduled"
    kind, first = problems[0]
    return "False", first.reason, "; ".join(f"{k}: {c.message}" for k, c in problems)


def _facts(probe: Probe | None, now: str) -> TableFactsStatus:
    """A table's version and file counts from its probe; all unknown when it was not read."""
    facts = probe.facts if probe is not None else {}
    return TableFactsStatus(
        version=facts.get("version"),
        active_files=facts.get("files"),
        small_files=facts.get("smallFiles"),
        bytes=facts.get("bytes"),
        checked_at=now if facts else None,
    )


def status(observed: Observed) -> DeltaTableIngestStatus:
    """The full status to write, computed from one reconcile's observations."""
    counts = writer_counts(observed)
    messages = termination_messages(observed.pods)
    runs = {component: last_run(observed.jobs, component, messages) for component in COMPONENTS}
    found: dict[str, Condition] = {}
    for kind, (state, reason, message) in (
        ("WriterAvailable", _writer(observed, counts)),
        ("CompactionScheduled", _schedule(observed, "compaction", runs["compaction"])),
        ("VacuumScheduled", _schedule(observed, "vacuum", runs["vacuum"])),
        ("TableReachable", _table(observed.table)),
        (
            "LockTableReady",
            (("True" if observed.lock.ok else "False"), observed.lock.reason, observed.lock.message),
        ),
    ):
        found[kind] = _condition(observed, kind, state, reason, message)
    found["Ready"] = _condition(observed, "Ready", *_ready(found, observed))
    spec = observed.spec
    declared = {c.name.lower() for c in effective_table(spec.table, spec.source).columns}  # case-insensitive
    columns = observed.table.columns if observed.table is not None else ()
    table = TableStatus(
        **_facts(observed.table, observed.now).model_dump(),
        added_columns=[ColumnStatus(name=n, type=t) for n, t in columns if n.lower() not in declared],
    )
    dead_letters = (
        _facts(observed.dead_letters, observed.now)
        if observed.spec.writer.invalid_rows == "deadLetter"
        else None
    )
    return DeltaTableIngestStatus(
        observed_generation=None if observed.apply_error else observed.generation,
        conditions=[found[kind] for kind in CONDITION_TYPES],
        replicas=counts.ready,
        selector=selector_string(observed.name),
        writers=counts,
        table=table,
        dead_letter_table=dead_letters,
        last_compaction=runs["compaction"],
        last_vacuum=runs["vacuum"],
    )
