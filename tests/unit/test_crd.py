"""The CRD: generated from the spec model, committed without drift, valid, and as strict as the model."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from deltaingest.k8s.conditions import Observed, Probe, status
from deltaingest.k8s.crd import crd_yaml, custom_resource_definition
from deltaingest.k8s.spec import KIND, parse_spec
from tests.crd_validation import default_errors, evaluate, validate

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = [
    ROOT / "crds" / "deltaingest.io_deltatableingests.yaml",
    ROOT / "charts" / "deltaingest" / "crds" / "deltaingest.io_deltatableingests.yaml",
]
K8S_VERSION = "1.37.0"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_crd_matches_the_model(path: Path) -> None:
    assert path.read_text() == crd_yaml(), f"{path} drifted from the spec model: run `make generate`"


def test_crd_is_a_valid_custom_resource_definition() -> None:
    kubernetes_validate.validate(custom_resource_definition(), K8S_VERSION, strict=True)


def test_crd_shape() -> None:
    crd = custom_resource_definition()
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["dti"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.writer.replicas"
    columns = [column["name"] for column in version["additionalPrinterColumns"] if not column.get("priority")]
    assert columns == ["Table", "Writers", "Version", "Last-Compaction", "Ready", "Age"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    # Defaults come from the model: a manifest without `vacuum` still gets 168 h retention.
    assert spec["properties"]["vacuum"]["default"] == {}
    assert spec["properties"]["vacuum"]["properties"]["retainHours"]["default"] == 168.0
    assert spec["properties"]["compaction"]["properties"]["targetFileSize"]["default"] == 128 * 1024 * 1024


def test_every_default_is_accepted_as_the_api_server_checks_it() -> None:
    """The API server checks each default as written, at its own level, with the rules there and below."""
    assert default_errors(custom_resource_definition()) == []


def test_a_rule_reading_a_key_its_default_lacks_is_caught() -> None:
    """The checker sees the bug a real API server reported (``compaction: {}`` has no smallFileSize)."""
    crd = copy.deepcopy(custom_resource_definition())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["compaction"]["x-kubernetes-validations"] = [
        {"rule": "self.smallFileSize <= self.targetFileSize", "message": "small above target"}
    ]
    (error,) = default_errors(crd)
    assert error.startswith("openAPIV3Schema.properties[spec].properties[compaction].default: ")
    assert "smallFileSize" in error and "small above target" in error


def test_a_default_that_breaks_its_schema_is_caught() -> None:
    crd = copy.deepcopy(custom_resource_definition())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["writer"]["default"] = {"replicas": -1, "bogus": True}
    errors = default_errors(crd)
    assert any("replicas" in error for error in errors)
    assert any("bogus" in error for error in errors)  # pruning: unknown fields in a default


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("has(self.a)", {}, False),
        ("!has(self.a) || self.a <= 1", {}, True),
        ("self.a <= 1 || true", {}, True),  # cel-go's || absorbs an error when the other side is true
        ("true || self.a <= 1", {}, True),
        ("self.a <= 1 && false", {}, False),  # ... and && when the other side is false
        ("self.a <= 1", {"a": 1}, True),
    ],
)
def test_cel_evaluator_matches_cel_go(rule: str, value: dict[str, Any], expected: bool) -> None:
    assert bool(evaluate(rule, value)) is expected


def test_integers_in_number_fields_are_doubles_as_on_the_api_server() -> None:
    """``retainHours: 168`` (a YAML integer) compares with ``1.0``: the server types values by the schema."""
    assert (
        validate(
            custom_resource_definition(), with_changes("spec.vacuum", {"full": True, "retainHours": 168})
        )
        == []
    )
    assert (
        validate(custom_resource_definition(), with_changes("spec.vacuum", {"full": True, "retainHours": 0}))
        != []
    )


@pytest.mark.parametrize("rule", ["self.a <= 1", "self.a <= 1 || false", "self.a.b == 1"])
def test_cel_missing_key_is_an_error_as_in_cel_go(rule: str) -> None:
    """cel-go (the API server's CEL) fails with "no such key" on an absent field; it is never false."""
    with pytest.raises(celpy.CELEvalError):
        evaluate(rule, {})


def example_resources() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((ROOT / "examples" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


@pytest.mark.parametrize(("where", "doc"), example_resources(), ids=[w for w, _ in example_resources()])
def test_every_example_validates(where: str, doc: dict[str, Any]) -> None:
    if doc["kind"] == KIND:
        assert validate(custom_resource_definition(), doc) == []
        parse_spec(doc["spec"])
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


MINIMAL: dict[str, Any] = {
    "apiVersion": "deltaingest.io/v1alpha1",
    "kind": KIND,
    "metadata": {"name": "events", "namespace": "default"},
    "spec": {
        "table": {
            "uri": "s3://lake/events",
            "schema": [{"name": "id", "type": "long"}, {"name": "day", "type": "date"}],
            "partitionBy": ["day"],
        }
    },
}


def with_changes(path: str, value: Any, base: dict[str, Any] = MINIMAL) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return doc


BAD = {
    "unknown field": with_changes("spec.writer.replica", 2),
    "local path": with_changes("spec.table.uri", "/data/events"),
    "replicas without a lock": with_changes("spec.writer.replicas", 2),
    "too many replicas": with_changes("spec.writer.replicas", 1000),
    "bad enum": with_changes("spec.writer.unknownFields", "ignore"),
    "bad lock kind": with_changes("spec.locking.kind", "file"),
    "cron": with_changes("spec.compaction.schedule", "every five minutes"),
    "small above target": with_changes("spec.compaction.smallFileSize", 512 * 1024 * 1024),
    "full vacuum under an hour": with_changes("spec.vacuum", {"full": True, "retainHours": 0.5}),
    "partition not in schema": with_changes("spec.table.partitionBy", ["hour"]),
    "negative retention": with_changes("spec.vacuum.retainHours", -1),
    "zero lease": with_changes("spec.locking.leaseSeconds", 0),
    "bad endpoint": with_changes("spec.storage.endpoint", "minio:9000"),
    "dead letters without a table": with_changes("spec.writer.invalidRows", "deadLetter"),
    "dead letters on a local path": with_changes(
        "spec.writer", {"invalidRows": "deadLetter", "deadLetter": {"uri": "/data/dead"}}
    ),
    "bad invalidRows": with_changes("spec.writer.invalidRows", "skip"),
    "full vacuum, dead letters kept under an hour": with_changes(
        "spec.vacuum.full",
        True,
        with_changes(
            "spec.writer",
            {"invalidRows": "deadLetter", "deadLetter": {"uri": "s3://lake/dead", "retainHours": 0.5}},
        ),
    ),
    "a log table with a schema of its own": with_changes("spec.source", {"otlp": {}}),
    "a log table with partitions of its own": with_changes(
        "spec.source",
        {"otlp": {}},
        with_changes("spec.table", {"uri": "s3://lake/logs", "partitionBy": ["day"]}),
    ),
    "a promoted attribute over a layout column": with_changes(
        "spec.source",
        {"otlp": {"columns": [{"attribute": "a", "column": "body"}]}},
        with_changes("spec.table", {"uri": "s3://lake/logs"}),
    ),
    "negative dead-letter retention": with_changes(
        "spec.writer",
        {"invalidRows": "deadLetter", "deadLetter": {"uri": "s3://lake/dead", "retainHours": -1}},
    ),
}


def test_minimal_manifest_is_accepted() -> None:
    assert validate(custom_resource_definition(), MINIMAL) == []
    parse_spec(MINIMAL["spec"])


def full_manifest() -> dict[str, Any]:
    """Every field of the spec set: the model's defaults for all of them, and the optional ones filled in."""
    doc = copy.deepcopy(MINIMAL)
    doc["spec"] |= {
        "storage": {
            "endpoint": "http://minio.storage:9000",
            "region": "eu-west-1",
            "credentials": {"secretName": "s3", "sessionTokenKey": "AWS_SESSION_TOKEN"},
            "options": {"allow_http": "true"},
        },
        "locking": {"kind": "dynamodb", "endpoint": "http://dynamodb:8000", "region": "eu-west-1"},
        "writer": {
            "replicas": 3,
            "image": "ghcr.io/example/deltaingest:1",
            "imagePullPolicy": "IfNotPresent",
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": 2147483648}},
            "authTokenSecret": {"name": "ingest-token", "key": "token"},
            "invalidRows": "deadLetter",
            "deadLetter": {"uri": "s3://lake/events-dead-letters"},
        },
        "compaction": {"suspend": True, "schedule": "@hourly"},
        "vacuum": {"full": True, "retainHours": 1.0, "schedule": "0 3 * * *"},
        "pods": {
            "imagePullSecrets": ["registry"],
            "nodeSelector": {"pool": "lake"},
            "tolerations": [{"key": "lake", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {}},
            "priorityClassName": "high",
            "annotations": {"team": "data"},
            "labels": {"cost-center": "42"},
        },
        "suspend": False,
        "serviceAccountName": "deltaingest-workloads",
    }
    del doc["spec"]["table"]["schema"], doc["spec"]["table"]["partitionBy"]  # generated: a log table
    doc["spec"]["source"] = {
        "otlp": {"columns": [{"attribute": "http.route", "column": "route", "scope": "record"}]}
    }
    # Then every remaining field at its model default, written out as a user who sets everything would.
    doc["spec"] = parse_spec(doc["spec"]).model_dump(by_alias=True, exclude_none=True, mode="json")
    return doc


def test_fully_specified_manifest_is_accepted() -> None:
    doc = full_manifest()
    assert validate(custom_resource_definition(), doc) == []
    assert parse_spec(doc["spec"]).model_dump(by_alias=True, exclude_none=True, mode="json") == doc["spec"]


def test_update_from_minimal_to_full_is_accepted() -> None:
    assert validate(custom_resource_definition(), full_manifest(), old=MINIMAL) == []
    assert validate(custom_resource_definition(), MINIMAL, old=full_manifest()) == []


@pytest.mark.parametrize("section", ["compaction", "vacuum", "writer", "locking", "storage", "pods"])
def test_partially_specified_sections_are_accepted(section: str) -> None:
    """A section given with one field: the API server defaults the rest before the rules run."""
    full = full_manifest()["spec"][section]
    for key, value in full.items():
        doc = with_changes(f"spec.{section}", {key: value})
        if section == "writer" and key == "replicas":
            doc["spec"]["locking"] = {"kind": "dynamodb"}
        if section == "writer" and key == "invalidRows":
            doc["spec"]["writer"]["deadLetter"] = full["deadLetter"]
        assert validate(custom_resource_definition(), doc) == [], f"{section}.{key}"


@pytest.mark.parametrize("name", BAD)
def test_bad_manifest_is_rejected_by_the_crd_and_the_model(name: str) -> None:
    doc = BAD[name]
    assert validate(custom_resource_definition(), doc), f"the CRD accepted: {name}"
    with pytest.raises(ValidationError):
        parse_spec(doc["spec"])


def test_long_name_is_rejected() -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["metadata"]["name"] = "x" * 42
    (error,) = validate(custom_resource_definition(), doc)
    assert "at most 41 characters" in error


def test_table_uri_is_immutable() -> None:
    moved = with_changes("spec.table.uri", "s3://lake/elsewhere")
    (error,) = validate(custom_resource_definition(), moved, old=MINIMAL)
    assert "immutable" in error
    assert validate(custom_resource_definition(), MINIMAL, old=MINIMAL) == []


def test_a_status_with_added_columns_fits_the_status_schema() -> None:
    """The operator merge-patches its status (a null deletes the key, so none is sent as null)."""
    spec = parse_spec({"table": {"uri": "s3://lake/events", "schema": [{"name": "id", "type": "long"}]}})
    probe = Probe(
        True, "TableRead", "v", {"version": 3, "files": 1}, [("id", "long"), ("geo", "struct<a:long>")]
    )
    observed = Observed(
        name="events", generation=1, spec=spec, now="2026-12-03T10:00:00Z", deployment=None,
        cron_jobs={"compaction": None, "vacuum": None}, jobs=[], pods=[], table=probe, lock=probe,
    )  # fmt: skip
    doc = copy.deepcopy(MINIMAL) | {
        "status": status(observed).model_dump(by_alias=True, mode="json", exclude_none=True)
    }
    assert doc["status"]["table"]["addedColumns"] == [{"name": "geo", "type": "struct<a:long>"}]
    assert validate(custom_resource_definition(), doc) == []


def test_a_status_with_the_dead_letter_tables_facts_fits_the_status_schema() -> None:
    spec = parse_spec(
        {
            "table": {"uri": "s3://lake/events", "schema": [{"name": "id", "type": "long"}]},
            "writer": {"invalidRows": "deadLetter", "deadLetter": {"uri": "s3://lake/events-dead"}},
        }
    )
    table = Probe(True, "TableRead", "v", {"version": 3, "files": 4, "smallFiles": 4, "bytes": 900})
    dead = Probe(True, "TableRead", "v", {"version": 7, "files": 1, "smallFiles": 1, "bytes": 300})
    observed = Observed(
        name="events", generation=1, spec=spec, now="2026-12-03T10:00:00Z", deployment=None,
        cron_jobs={"compaction": None, "vacuum": None}, jobs=[], pods=[], table=table, lock=table,
        dead_letters=dead,
    )  # fmt: skip
    reported = status(observed).model_dump(by_alias=True, mode="json", exclude_none=True)
    assert reported["table"]["version"] == 3
    assert reported["deadLetterTable"] == {
        "version": 7, "activeFiles": 1, "smallFiles": 1, "bytes": 300, "checkedAt": "2026-12-03T10:00:00Z"
    }  # fmt: skip
    assert validate(custom_resource_definition(), copy.deepcopy(MINIMAL) | {"status": reported}) == []
    # Not read (e.g. the writer has not created it yet): reported, with nothing known.
    unread = status(replace(observed, dead_letters=None)).model_dump(
        by_alias=True, mode="json", exclude_none=True
    )
    assert unread["deadLetterTable"] == {}
    # Without dead letters there is no dead-letter table to report.
    plain = replace(observed, spec=parse_spec({"table": spec.table.model_dump(by_alias=True)}))
    assert "deadLetterTable" not in status(plain).model_dump(by_alias=True, mode="json", exclude_none=True)
