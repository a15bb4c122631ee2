"""Validate our CRD and manifests the way kube-apiserver does: defaults, structural schema, then CEL rules.

A stand-in for a real API server (none runs here), written after its source
(k8s.io/apiextensions-apiserver, ``pkg/apiserver/schema/defaulting/validation.go`` and ``schema/cel``):

- When a CRD is created, every ``default`` is checked at its own level exactly as written: against the
  schema of its node (nested defaults are *not* applied first), for unknown fields (pruning), and by every
  CEL rule of that node and of the nodes below it that the value holds, once with ``oldSelf`` = the default
  and once with no old object (ratcheting, on by default since 1.30). A rule that reads a key the default
  lacks fails with "no such key", which is what rejected our CRD on a real server.
- When an object is created or updated, defaults are applied top-down first, then the structural schema is
  checked (unknown fields rejected, kubectl's ``--validate=strict``), then every rule on the defaulted value;
  transition rules (``oldSelf``) only on updates, where the old object has the same field.

CEL is evaluated by cel-python, whose missing-key and error-absorbing ``||``/``&&`` behaviour matches cel-go's
(asserted in ``tests/unit/test_crd.py``). An evaluation error is a rejection, as on the server.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import celpy
from jsonschema import Draft4Validator

_CEL = celpy.Environment()
_MISSING = object()


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as JSON Schema draft 4, closed to unknown fields except where Kubernetes keeps them."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    out.pop("default", None)  # a default is not a constraint on the value
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


def _schema_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    return [
        f"{'.'.join([path, *(str(p) for p in error.absolute_path)]).strip('.')}: {error.message}"
        for error in Draft4Validator(_strict(schema)).iter_errors(value)
    ]


def _defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in defaults top-down, as the API server does before validating an object."""
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = _defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        return [_defaults(schema["items"], item) for item in value]
    return value


def _typed(schema: dict[str, Any], value: Any) -> Any:
    """The value as the API server hands it to CEL: typed by the schema (an integer in a ``number`` field
    is a double there, so ``retainHours: 168`` compares with ``1.0``)."""
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return {
            key: _typed(properties.get(key) or (extra if isinstance(extra, dict) else {}), item)
            for key, item in value.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_typed(schema["items"], item) for item in value]
    return value


def evaluate(rule: str, value: Any, old: Any = _MISSING) -> Any:
    """One CEL rule on ``self`` (and ``oldSelf``); raises ``celpy.CELEvalError`` where cel-go errors."""
    activation = {"self": celpy.json_to_cel(value)}
    if old is not _MISSING:
        activation["oldSelf"] = celpy.json_to_cel(old)
    result = _CEL.program(_CEL.compile(rule)).evaluate(activation)
    if isinstance(result, celpy.CELEvalError):  # cel-python returns some errors rather than raising them
        raise result
    return result


def _rules(schema: dict[str, Any], value: Any, old: Any, path: str, errors: list[str]) -> None:
    """Every rule of ``schema`` and of the nodes below it that ``value`` holds (``old``: the same field)."""
    for rule in schema.get("x-kubernetes-validations", []):
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and old is _MISSING:  # a transition rule runs only on an update of an existing field
            continue
        try:
            result = evaluate(
                rule["rule"], _typed(schema, value), _typed(schema, old) if uses_old else _MISSING
            )
        except celpy.CELEvalError as err:
            cause = err.args[0] if err.args else err
            errors.append(f"{path or '<root>'}: {cause} evaluating rule: {rule['message']}")
            continue
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                old_sub = old.get(name, _MISSING) if isinstance(old, dict) else _MISSING
                _rules(sub, value[name], old_sub, f"{path}.{name}", errors)
    elif isinstance(value, list) and "items" in schema:
        # List items have no correlated old value unless the list is a map or set; ours are neither.
        for index, item in enumerate(value):
            _rules(schema["items"], item, _MISSING, f"{path}[{index}]", errors)


def _open_api(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes_with_defaults(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Like the API server's walk: properties and items, never additionalProperties (no defaults there)."""
    if "default" in schema:
        yield path, schema
    if isinstance(schema.get("items"), dict):
        yield from _nodes_with_defaults(schema["items"], f"{path}.items")
    for name, sub in (schema.get("properties") or {}).items():
        yield from _nodes_with_defaults(sub, f"{path}.properties[{name}]")


def default_errors(crd: dict[str, Any]) -> list[str]:
    """Why the API server would refuse this CRD for one of its defaults (empty: it would accept them)."""
    errors: list[str] = []
    for path, node in _nodes_with_defaults(_open_api(crd), "openAPIV3Schema"):
        where = f"{path}.default"
        default = node["default"]
        schema_errors = _schema_errors(node, default, where)
        errors += schema_errors
        if schema_errors:
            continue  # the server stops at the first failing check of a default
        for old in (default, _MISSING):
            _rules(node, default, old, where, errors)
    return list(dict.fromkeys(errors))  # the two passes report a rule without oldSelf twice


def validate(crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Error messages for creating ``obj`` (or updating ``old`` to it); empty: the API server would accept."""
    schema = _open_api(crd)
    obj = _defaults(schema, copy.deepcopy(obj))
    errors = _schema_errors(schema, obj, "")
    if errors:
        return errors
    old_value = _defaults(schema, copy.deepcopy(old)) if old is not None else _MISSING
    _rules(schema, obj, old_value, "", errors)
    return errors
