"""The CRD: generated from the spec model, committed without drift, valid, and as strict as the model."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from deltaingest.k8s.crd import crd_yaml, custom_resource_definition
from deltaingest.k8s.spec import KIND, parse_spec
from tests.crd_validation import validate

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


def with_changes(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
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
}


def test_minimal_manifest_is_accepted() -> None:
    assert validate(custom_resource_definition(), MINIMAL) == []
    parse_spec(MINIMAL["spec"])


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
