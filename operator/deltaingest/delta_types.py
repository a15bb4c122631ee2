"""Delta type names (as written in settings) to Arrow types and back.

Pure and at the bottom of the package: it imports nothing from deltaingest, so the settings model
(``config.py``) can validate type names with it and ``table/`` can build schemas with it.
"""

from __future__ import annotations

import re

import pyarrow as pa

_PRIMITIVES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "int": pa.int32(),
    "short": pa.int16(),
    "byte": pa.int8(),
    "float": pa.float32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamp_ntz": pa.timestamp("us"),
}
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_MAX_DECIMAL_PRECISION = 38


class SchemaError(ValueError):
    """A type or schema in the settings that Delta cannot represent."""


def parse_type(text: str) -> pa.DataType:
    """Parse ``long``, ``decimal(10,2)``, ``array<string>``, ``struct<a:int,b:array<date>>`` into Arrow."""
    parsed, rest = _parse(text.strip())
    if rest.strip():
        raise SchemaError(f"unexpected text {rest.strip()!r} after type in {text!r}")
    return parsed


def _parse(text: str) -> tuple[pa.DataType, str]:
    lowered = text.lower()
    if lowered.startswith("array<"):
        element, rest = _parse(text[len("array<") :].lstrip())
        return pa.list_(element), _expect(rest, ">", text)
    if lowered.startswith("struct<"):
        fields: list[pa.Field] = []
        rest = text[len("struct<") :]
        while True:
            name, sep, rest = rest.partition(":")
            if not sep or not name.strip():
                raise SchemaError(f"struct fields are written name:type in {text!r}")
            child, rest = _parse(rest.lstrip())
            fields.append(pa.field(name.strip(), child))
            rest = rest.lstrip()
            if rest.startswith(","):
                rest = rest[1:].lstrip()
                continue
            return pa.struct(fields), _expect(rest, ">", text)
    match = _DECIMAL.match(lowered)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= _MAX_DECIMAL_PRECISION or scale > precision:
            raise SchemaError(f"decimal precision must be 1..38 and scale <= precision, got {text!r}")
        return pa.decimal128(precision, scale), text[match.end() :]
    word = re.match(r"[a-z_]+", lowered)
    if word and word.group(0) in _PRIMITIVES:
        return _PRIMITIVES[word.group(0)], text[word.end() :]
    raise SchemaError(
        f"unknown type {text!r}; expected one of {sorted(_PRIMITIVES)}, decimal(p,s), array<>, struct<>"
    )


def _expect(rest: str, token: str, whole: str) -> str:
    rest = rest.lstrip()
    if not rest.startswith(token):
        raise SchemaError(f"expected {token!r} in {whole!r}")
    return rest[len(token) :]


def type_name(dtype: pa.DataType) -> str:
    """A Delta-style name for an Arrow type, for error messages users can match against their settings."""
    for name, primitive in _PRIMITIVES.items():
        if dtype == primitive:
            return name
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return "binary"
    if pa.types.is_timestamp(dtype):
        return "timestamp" if dtype.tz else "timestamp_ntz"
    if pa.types.is_decimal(dtype):
        return f"decimal({dtype.precision},{dtype.scale})"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_list_view(dtype):
        return f"array<{type_name(dtype.value_type)}>"
    if pa.types.is_struct(dtype):
        inner = ",".join(f"{f.name}:{type_name(f.type)}" for f in dtype)
        return f"struct<{inner}>"
    return str(dtype)
