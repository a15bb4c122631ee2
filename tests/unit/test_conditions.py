"""Status conditions from observations: pure, table-driven."""

from __future__ import annotations

from typing import Any

from deltaingest.k8s.conditions import Observed, Probe, last_run, status, termination_messages
from deltaingest.k8s.drift import drift, stamp
from deltaingest.k8s.messages import LIMIT
from deltaingest.k8s.spec import parse_spec

SPEC = {"table": {"uri": "s3://lake/t"}}
OK = Probe(True, "TableRead", "version 3", {"version": 3, "files": 10, "smallFiles": 4, "bytes": 1000})
LOCK = Probe(True, "NotRequired", "none")


def cron(suspend: bool = False) -> dict[str, Any]:
    return {"spec": {"schedule": "*/5 * * * *", "suspend": suspend}}


def job(component: str, name: str, kind: str, at: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": component}},
        "status": {
            "startTime": at,
            "completionTime": at if kind == "Complete" else None,
            "conditions": [{"type": kind, "status": "True", "lastTransitionTime": at, "message": "boom"}],
        },
    }


def observed(**changes: Any) -> Observed:
    base: dict[str, Any] = {
        "name": "t",
        "generation": 4,
        "spec": parse_spec(SPEC),
        "now": "2026-11-22T10:00:00Z",
        "deployment": {"status": {"readyReplicas": 1}},
        "cron_jobs": {"compaction": cron(), "vacuum": cron()},
        "jobs": [],
        "pods": [],
        "table": OK,
        "lock": LOCK,
    }
    return Observed(**{**base, **changes})


def conditions_of(obs: Observed) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status(obs).conditions}


def test_all_good_is_ready() -> None:
    result = status(observed())
    assert conditions_of(observed())["Ready"] == ("True", "Ready")
    assert result.observed_generation == 4
    assert all(c.observed_generation == 4 for c in result.conditions)
    assert result.table.version == 3
    assert result.table.small_files == 4
    assert result.writers.summary == "1/1"
    assert [c.type for c in result.conditions] == [
        "Ready",
        "WriterAvailable",
        "CompactionScheduled",
        "VacuumScheduled",
        "TableReachable",
        "LockTableReady",
    ]


def test_each_fault_makes_it_not_ready() -> None:
    cases = {
        "WritersNotReady": observed(deployment={"status": {"readyReplicas": 0}}),
        "DeploymentMissing": observed(deployment=None),
        "CronJobMissing": observed(cron_jobs={"compaction": None, "vacuum": cron()}),
        "StorageError": observed(table=Probe(False, "StorageError", "denied")),
        "LockTableError": observed(lock=Probe(False, "LockTableError", "denied")),
        "ApplyFailed": observed(apply_error="HTTP 403: forbidden"),
        "LastRunFailed": observed(jobs=[job("compaction", "c-1", "Failed", "2026-11-22T09:00:00Z")]),
    }
    for reason, obs in cases.items():
        ready = conditions_of(obs)["Ready"]
        assert ready == ("False", reason), (reason, ready)


def test_apply_error_keeps_the_old_observed_generation() -> None:
    assert status(observed(apply_error="x")).observed_generation is None


def test_suspended_section_is_a_choice_not_a_fault() -> None:
    obs = observed(cron_jobs={"compaction": cron(), "vacuum": cron(suspend=True)})
    found = conditions_of(obs)
    assert found["VacuumScheduled"] == ("False", "Suspended")
    assert found["Ready"] == ("True", "Ready")
    whole = observed(spec=parse_spec({**SPEC, "suspend": True}), deployment={"status": {}})
    assert conditions_of(whole)["Ready"] == ("False", "Suspended")
    assert conditions_of(whole)["WriterAvailable"] == ("False", "Suspended")


def test_transition_time_moves_only_on_a_status_change() -> None:
    first = status(observed(now="2026-11-22T10:00:00Z"))
    previous = [c.model_dump(by_alias=True) for c in first.conditions]
    same = status(observed(now="2026-11-22T11:00:00Z", previous=previous))
    assert {c.last_transition_time for c in same.conditions} == {"2026-11-22T10:00:00Z"}
    flipped = status(observed(now="2026-11-22T12:00:00Z", previous=previous, deployment=None))
    times = {c.type: c.last_transition_time for c in flipped.conditions}
    assert times["WriterAvailable"] == "2026-11-22T12:00:00Z"
    assert times["TableReachable"] == "2026-11-22T10:00:00Z"


def test_last_run_is_the_newest_finished_job_of_its_component() -> None:
    jobs = [
        job("compaction", "c-1", "Failed", "2026-11-22T09:00:00Z"),
        job("compaction", "c-2", "Complete", "2026-11-22T09:05:00Z"),
        job("vacuum", "v-1", "Complete", "2026-11-22T09:10:00Z"),
        {"metadata": {"name": "c-3", "labels": {"app.kubernetes.io/component": "compaction"}}, "status": {}},
    ]
    run = last_run(jobs, "compaction")
    assert run is not None
    assert (run.job, run.result) == ("c-2", "Succeeded")
    vacuum = last_run(jobs, "vacuum")
    assert vacuum is not None
    assert vacuum.job == "v-1"
    assert last_run([], "vacuum") is None


def test_drift() -> None:
    desired = stamp(
        {"kind": "X", "metadata": {"name": "a"}, "spec": {"replicas": 2, "cpu": 1, "ports": [{"p": 1}]}}
    )
    assert drift(desired, None) == "missing"
    served = {
        "metadata": {**desired["metadata"], "uid": "u", "resourceVersion": "9"},
        "spec": {"replicas": 2, "cpu": "1", "ports": [{"p": 1, "protocol": "TCP"}], "defaulted": True},
    }
    assert drift(desired, served) is None  # server-side defaults and quantity strings are not drift
    with_empties = stamp(
        {"kind": "X", "metadata": {"name": "a"}, "spec": {"env": [], "labels": {}, "n": None}}
    )
    served_empties = {"metadata": with_empties["metadata"], "spec": {}}
    assert drift(with_empties, served_empties) is None  # the server omits empty lists and maps
    assert (
        drift(desired, {**served, "spec": {**served["spec"], "replicas": 5}}) == "spec edited in the cluster"
    )
    assert drift(desired, {**served, "spec": {**served["spec"], "ports": []}}) == "spec edited in the cluster"
    changed = stamp(
        {
            "kind": "X",
            "metadata": {"name": "a"},
            "spec": {"replicas": 2, "cpu": 1, "ports": [{"p": 1}]},
            "x": 1,
        }
    )
    assert drift(changed, served) == "rendering changed"


def pod(job_name: str, message: str, at: str) -> dict[str, Any]:
    terminated = {"exitCode": 0, "message": message + "\n", "finishedAt": at}
    return {
        "metadata": {"labels": {"job-name": job_name}},
        "status": {"containerStatuses": [{"name": "compact", "state": {"terminated": terminated}}]},
    }


def test_run_summary_comes_from_the_pod_termination_message() -> None:
    pods = [
        pod("c-2", "compact s3://t: failed (retry)", "2026-11-22T09:01:00Z"),
        pod("c-2", "compact s3://t: ok; files 40 -> 2", "2026-11-22T09:05:00Z"),
        {"metadata": {"labels": {}}, "status": {}},
    ]
    messages = termination_messages(pods)
    assert messages == {"c-2": "compact s3://t: ok; files 40 -> 2"}
    jobs = [job("compaction", "c-2", "Complete", "2026-11-22T09:05:00Z")]
    run = last_run(jobs, "compaction", messages)
    assert run is not None
    assert run.message == "compact s3://t: ok; files 40 -> 2"
    result = status(observed(jobs=jobs, pods=pods))
    assert result.last_compaction == run
    assert result.last_vacuum is None


def test_every_condition_message_is_one_bounded_line() -> None:
    """Events repeat Ready's message, so this keeps them clean too."""
    chain = "Kernel error -> Generic S3 error\n  \x1b[31m↳\x1b[0m " + "cause " * 100
    log_tail = "Traceback (most recent call last):\n  File x\n\x1b[31mOSError\x1b[0m: " + chain
    failed = job("compaction", "c-1", "Failed", "2026-11-22T09:00:00Z")
    obs = observed(
        table=Probe(False, "StorageError", chain),
        lock=Probe(False, "LockTableError", chain),
        jobs=[failed],
        pods=[pod("c-1", log_tail, "2026-11-22T09:00:00Z")],
        apply_error=f"applying the children failed: HTTP 500\n{chain}",
    )
    conditions = status(obs).conditions
    assert {c.type for c in conditions if "cause" in c.message} >= {
        "Ready",
        "TableReachable",
        "CompactionScheduled",
    }
    for condition in conditions:
        assert len(condition.message) <= LIMIT, condition
        assert not any(char in condition.message for char in "\n\r\t\x1b"), condition


def test_columns_beyond_the_spec_schema_are_reported_and_change_nothing_else() -> None:
    spec = parse_spec({"table": {"uri": "s3://lake/t", "schema": [{"name": "id", "type": "long"}]}})
    probe = Probe(True, "TableRead", "version 3", OK.facts, [("id", "long"), ("colour", "string")])
    result = status(observed(spec=spec, table=probe))
    assert [(c.name, c.type) for c in result.table.added_columns] == [("colour", "string")]
    assert conditions_of(observed(spec=spec, table=probe)) == conditions_of(observed(spec=spec))
    assert status(observed(spec=spec)).table.added_columns == []
