"""The CRD, generated from the spec model: structural schema, CEL rules, printer columns, subresources."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from deltaingest.k8s.spec import (
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    DeltaTableIngestSpec,
    DeltaTableIngestStatus,
)

# Keywords a structural schema may carry; the rest of pydantic's JSON Schema (titles, $defs) is dropped.
_KEPT = (
    "type",
    "description",
    "default",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "format",
    "nullable",
)


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """pydantic's JSON Schema (2020-12) to an OpenAPI v3 structural schema Kubernetes accepts."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if node.get("x-kubernetes-int-or-string"):
        return {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    any_of = node.get("anyOf")
    if any_of:
        # Optional[X] is anyOf [X, null]: the field may simply be absent, so keep X.
        options = [option for option in any_of if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"no structural form for anyOf {any_of}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", 0) is None:
            del rest["default"]
        return _structural({**options[0], **rest}, defs)
    out: dict[str, Any] = {key: node[key] for key in _KEPT if key in node}
    if "const" in node:
        out["enum"] = [node["const"]]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:  # JSON Schema's number becomes OpenAPI v3.0's flag
            out[inclusive] = node[bound]
            out[bound] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    kind = out.get("type")
    if kind == "object" or "properties" in node:
        out["type"] = "object"
        if "properties" in node:
            out["properties"] = {name: _structural(sub, defs) for name, sub in node["properties"].items()}
            required = node.get("required")
            if required:
                out["required"] = list(required)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = _structural(extra, defs)
        elif extra is True:  # dict[str, Any]: an embedded Kubernetes structure (affinity, a toleration)
            out["x-kubernetes-preserve-unknown-fields"] = True
    if kind == "array":
        out["items"] = _structural(node["items"], defs)
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
    return out


def _fill_object_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Give every nested section with defaults a default of ``{}``, so the API server fills in its fields.

    Kubernetes applies a property's defaults only when the object holding it exists; without this, a
    manifest that leaves out ``compaction`` would show none of the compaction defaults.
    """
    properties = schema.get("properties", {})
    for name, field in model.model_fields.items():
        alias = field.alias or name
        sub = properties.get(alias)
        annotation = field.annotation
        if sub is None or not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            continue
        if field.default_factory is not None and "default" not in sub:
            sub["default"] = {}
        _fill_object_defaults(sub, annotation)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model, with defaults for nested sections."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _structural(raw, raw.get("$defs", {}))
    _fill_object_defaults(schema, model)
    return schema


def printer_columns() -> list[dict[str, Any]]:
    """What ``kubectl get dti`` shows."""
    return [
        {"name": "Table", "type": "string", "jsonPath": ".spec.table.uri"},
        {"name": "Writers", "type": "string", "jsonPath": ".status.writers.summary"},
        {"name": "Version", "type": "integer", "jsonPath": ".status.table.version"},
        {"name": "Last-Compaction", "type": "date", "jsonPath": ".status.lastCompaction.completionTime"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {
            "name": "Reason",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
        {"name": "Files", "type": "integer", "priority": 1, "jsonPath": ".status.table.activeFiles"},
        {"name": "Small-Files", "type": "integer", "priority": 1, "jsonPath": ".status.table.smallFiles"},
    ]


def custom_resource_definition() -> dict[str, Any]:
    """The CRD manifest for ``deltatableingests.deltaingest.io``."""
    open_api = {
        "type": "object",
        "required": ["spec"],
        "x-kubernetes-validations": [
            {
                "rule": f"!has(self.metadata.name) || size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                "message": f"metadata.name may have at most {MAX_NAME_LENGTH} characters "
                "(the CronJobs append -compaction and Kubernetes caps CronJob names at 52)",
            }
        ],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": schema_of(DeltaTableIngestSpec),
            "status": schema_of(DeltaTableIngestStatus),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "deltaingest", "app.kubernetes.io/part-of": "deltaingest"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["deltaingest"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": open_api},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.writer.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": printer_columns(),
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML file committed under ``crds/`` and the chart's ``crds/``."""
    header = "# Generated from operator/deltaingest/k8s/spec.py by `deltaingest crd`; do not edit.\n"
    return header + yaml.safe_dump(custom_resource_definition(), sort_keys=False, width=100)
