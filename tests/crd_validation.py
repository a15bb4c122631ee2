"""Validate a manifest the way the API server does with our CRD: defaults, structural schema, then CEL rules.

A stand-in for a real API server (none runs here): jsonschema checks the OpenAPI v3 schema with unknown
fields rejected (kubectl's default ``--validate=strict``), and cel-python evaluates every
``x-kubernetes-validations`` rule on the defaulted object, transition rules only when an old object is given.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
from jsonschema import Draft4Validator

_CEL = celpy.Environment()


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as JSON Schema draft 4, closed to unknown fields except where Kubernetes keeps them."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if schema.get("x-kubernetes-int-or-string"):
        return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    if "properties" in schema:
        out["properties"] = {name: _strict(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = _strict(schema["items"])
    return out


def _defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in defaults top-down, as the API server does before validating."""
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = _defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        return [_defaults(schema["items"], item) for item in value]
    return value


def _rules(schema: dict[str, Any], value: Any, old: Any, path: str, errors: list[str]) -> None:
    for rule in schema.get("x-kubernetes-validations", []):
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and old is None:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if uses_old:
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = _CEL.program(_CEL.compile(rule["rule"])).evaluate(activation)
        # An evaluation error comes back as a value, not an exception: anything but true is a rejection.
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                old_sub = old.get(name) if isinstance(old, dict) else None
                _rules(sub, value[name], old_sub, f"{path}.{name}", errors)


def validate(crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Error messages for ``obj`` (empty: the API server would accept it)."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = _defaults(schema, copy.deepcopy(obj))
    errors = [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in Draft4Validator(_strict(schema)).iter_errors(obj)
    ]
    if errors:
        return errors
    old = _defaults(schema, copy.deepcopy(old)) if old is not None else None
    _rules(schema, obj, old, "", errors)
    return errors
