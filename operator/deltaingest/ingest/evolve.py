"""Additive schema evolution (``writer.schemaEvolution: addColumns``): the new columns a request brings,
typed from its data. Pure: no I/O.

Only top-level fields become columns, always nullable. JSON values give the type of their first non-null
occurrence (whole numbers long, a fraction anywhere double, strings string or, when asked, timestamp; objects
structs, arrays lists); a later value of another kind is then an ordinary misfit of that column. A field that
is null (or an empty array) in every row of the request has no type yet and gets no column: ``unknownFields``
decides about it as before. Arrow columns keep the type they were sent with, when Delta has it.
"""

from __future__ import annotations

import decimal
import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.json as pj

from deltaingest.delta_types import SchemaError, parse_type, type_name
from deltaingest.ingest.errors import Unprocessable

# A request may add this many columns at most, and a table hold this many: a body with thousands of
# distinct keys (a bug in the producer, or an attack) must not become thousands of columns.
MAX_NEW_COLUMNS = 64
MAX_COLUMNS = 1000
MAX_NEW_FIELDS = 1000  # the new columns' fields at every depth: a struct may not smuggle in thousands
# Characters Delta refuses in column names without column mapping (delta-rs and Spark alike).
_BAD_NAME = re.compile(r"[ ,;{}()\n\t=]")
# A date and a time: a bare date such as 2024-05-01 stays a string.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def json_new_fields(rows: Iterable[Any], schema: pa.Schema, *, timestamps: bool) -> list[pa.Field]:
    """The new nullable columns for the top-level keys of ``rows`` (parsed JSON; fractions as ``Decimal``)
    that ``schema`` lacks, in order of first appearance; keys without a type yet are left out."""
    values: dict[str, list[Any]] = {}
    known = set(schema.names)
    for row in rows:
        if isinstance(row, dict):
            for key, value in row.items():
                if key not in known:
                    values.setdefault(key, []).append(value)
    fields = []
    for name, seen in values.items():
        _encodable(name)
        dtype = _infer(seen, timestamps=timestamps)
        if dtype is not None:
            fields.append(pa.field(name, dtype, nullable=True))
    check_new_fields(fields, schema)
    return fields


def arrow_new_fields(sent: pa.Schema, schema: pa.Schema) -> list[pa.Field]:
    """The new nullable columns for the columns of an Arrow stream that ``schema`` lacks, with the Delta
    type of the type they were sent as (timestamps in microseconds, views and large types plain)."""
    fields = []
    for field in sent:
        if field.name in schema.names or _untyped(field.type):
            continue  # an untyped column (all null) is left to unknownFields, as a JSON field would be
        try:
            dtype = parse_type(type_name(field.type))
        except SchemaError:
            raise Unprocessable(
                f"field '{field.name}': a new column cannot be {field.type}, which Delta has no type for",
                field=field.name,
            ) from None
        fields.append(pa.field(field.name, dtype, nullable=True))
    check_new_fields(fields, schema)
    return fields


def check_new_fields(fields: Sequence[pa.Field], schema: pa.Schema) -> None:
    """Refuse names Delta cannot hold, names equal but for case to another column (Delta compares column
    names case-insensitively), and more columns than a request may add or a table may hold."""
    if len(fields) > MAX_NEW_COLUMNS:
        raise Unprocessable(
            f"{len(fields)} new columns in one request; at most {MAX_NEW_COLUMNS} may be added"
        )
    if len(schema) + len(fields) > MAX_COLUMNS:
        raise Unprocessable(f"the table would have more than {MAX_COLUMNS} columns")
    if (count := _count(fields)) > MAX_NEW_FIELDS:
        raise Unprocessable(
            f"{count} new fields in one request, nested ones included; at most {MAX_NEW_FIELDS}"
        )
    _check_names(fields, schema.names, prefix="")


def _check_names(fields: Sequence[pa.Field], existing: Sequence[str], *, prefix: str) -> None:
    """The names of ``fields`` (and of the fields of their structs, at any depth) among ``existing``."""
    taken = {name.lower(): name for name in existing}
    for field in fields:
        name, path = field.name, f"{prefix}{field.name}"
        if not name or len(name) > 255 or _BAD_NAME.search(name):
            raise Unprocessable(
                f"field {path!r}: not a column name Delta accepts (1 to 255 characters, none of ' ,;{{}}()=' "
                "nor tab or newline)",
                field=path,
            )
        if name.lower() in taken:
            raise Unprocessable(
                f"field '{path}': differs only in case from '{prefix}{taken[name.lower()]}' "
                "(Delta column names are case-insensitive)",
                field=path,
            )
        taken[name.lower()] = name
        inner = _inner(field.type)
        if pa.types.is_struct(inner):
            _check_names(list(inner), (), prefix=f"{path}.")


def _inner(dtype: pa.DataType) -> pa.DataType:
    while pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        dtype = dtype.value_type
    return dtype


def _count(fields: Sequence[pa.Field]) -> int:
    inner = (_inner(f.type) for f in fields)
    return len(fields) + sum(_count(list(t)) for t in inner if pa.types.is_struct(t))


def _untyped(dtype: pa.DataType) -> bool:
    inner = _inner(dtype)
    return bool(pa.types.is_null(inner) or (pa.types.is_struct(inner) and inner.num_fields == 0))


def _encodable(name: str) -> None:
    """Refuse a name Arrow cannot hold: a JSON key with a lone surrogate (``"\\ud800"``) is no UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "backslashreplace").decode("utf-8")
        raise Unprocessable(f"field {shown!r}: not a column name (not valid Unicode)", field=shown) from None


def _infer(values: Sequence[Any], *, timestamps: bool) -> pa.DataType | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, bool):
        return pa.bool_()
    if isinstance(first, int | decimal.Decimal):
        numbers = (v for v in present if isinstance(v, int | decimal.Decimal) and not isinstance(v, bool))
        return pa.float64() if any(isinstance(v, decimal.Decimal) for v in numbers) else pa.int64()
    if isinstance(first, str):
        strings = [v for v in present if isinstance(v, str)]
        return (_timestamp(strings) if timestamps else None) or pa.string()
    if isinstance(first, list):
        element = _infer([e for v in present if isinstance(v, list) for e in v], timestamps=timestamps)
        return None if element is None else pa.list_(element)
    if isinstance(first, dict):
        objects = [v for v in present if isinstance(v, dict)]
        keys = list(dict.fromkeys(k for v in objects for k in v))
        for key in keys:
            _encodable(key)
        inner = [(k, _infer([v.get(k) for v in objects], timestamps=timestamps)) for k in keys]
        fields = [pa.field(k, t, nullable=True) for k, t in inner if t is not None]
        return pa.struct(fields) if fields else None
    return None


def _timestamp(strings: Sequence[str]) -> pa.DataType | None:
    """``timestamp`` when every string is a date and a time that Arrow's JSON reader takes as one (the
    reader the rows then go through; no offset means UTC, as for existing timestamp columns). Never
    ``timestamp_ntz``: adding one would upgrade the table's protocol (reader 3, writer 7)."""
    if not all(_DATE_TIME.match(text) for text in strings):
        return None
    dtype = pa.timestamp("us", tz="UTC")
    lines = b"\n".join(json.dumps({"t": text}).encode() for text in strings)
    options = pj.ParseOptions(explicit_schema=pa.schema([pa.field("t", dtype)]))
    try:
        pj.read_json(io.BytesIO(lines), parse_options=options)
    except (pa.ArrowException, OSError):
        return None
    return dtype
