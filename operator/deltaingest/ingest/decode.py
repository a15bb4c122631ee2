"""Request bodies to validated Arrow tables that match the Delta table's schema exactly. Pure: no I/O.

NDJSON and JSON arrays go through Arrow's C++ JSON reader with the table schema as an explicit schema (about
1 ms per 1,000 rows). Only when that fails do we parse with Python's ``json`` to say which row and field is
wrong: the slow path runs for bad requests alone. With ``invalidRows: deadLetter`` the rows that cannot be
written come back beside the table, each with its reason, instead of refusing the request.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import functools
import io
import json
import math
import re
import zlib
from dataclasses import dataclass, replace
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from deltaingest.delta_types import type_name
from deltaingest.ingest.arrow_input import ARROW_ERRORS, read_arrow_stream
from deltaingest.ingest.errors import (
    BadRequest,
    IngestError,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from deltaingest.ingest.evolve import arrow_new_fields, json_new_fields
from deltaingest.ingest.time_range import OUT_OF_RANGE, out_of_range
from deltaingest.protocol import ARROW_STREAM_TYPE, JSON_TYPE, NDJSON_TYPES, RESCUED_COLUMN

# JSON nesting beyond this is refused before Python parses it: ``json`` recurses, and any schema we can
# hold is far shallower.
MAX_JSON_DEPTH = 64


@dataclass(frozen=True)
class DecodeOptions:
    """How strict decoding is and how large a decompressed body may get."""

    unknown_fields: Literal["reject", "drop", "rescue"] = "reject"
    invalid_rows: Literal["reject", "deadLetter"] = "reject"
    schema_evolution: Literal["none", "addColumns"] = "none"
    infer_timestamps: bool = False
    max_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class DeadRow:
    """A row that cannot be written: as sent (JSON), why, and where (rows from 1; NDJSON by line)."""

    raw: str
    error: str
    field: str | None
    row: int

    def __post_init__(self) -> None:
        # A JSON key or value may hold a lone surrogate ("\ud800"), which no UTF-8 column can store: it is
        # kept as its escape, so one such row cannot fail the dead-letter commit of a whole group.
        for name in ("raw", "error", "field"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value.encode("utf-8", "backslashreplace").decode("utf-8"))


@dataclass(frozen=True)
class Decoded:
    """A body's rows that fit the table, and (dead-lettering) those that do not, in body order. Evolving the
    schema, ``table`` has the table's columns and then the new ones the body brings."""

    table: pa.Table
    dead: tuple[DeadRow, ...] = ()


def decode(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    schema: pa.Schema,
    options: DecodeOptions,
) -> Decoded:
    """Decode one request body into a table with exactly ``schema``; raise an ``IngestError`` otherwise.

    Dead-lettering, a row-level problem puts that row in ``dead`` instead; what is wrong with the body as a
    whole (not JSON, not UTF-8, a column of the wrong type in an Arrow stream) still raises."""
    data = decompress(body, content_encoding, limit=options.max_bytes)
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not data.strip():
        raise BadRequest("the request body is empty")
    if media in NDJSON_TYPES:
        decoded = _read_json(data, schema, options, array=False)
    elif media == JSON_TYPE:
        decoded = _read_json(data, schema, options, array=not data.lstrip().startswith(b"{"))
    elif media == ARROW_STREAM_TYPE:
        decoded = conform(read_arrow_stream(data), schema, options)
    else:
        accepted = sorted({*NDJSON_TYPES, JSON_TYPE, ARROW_STREAM_TYPE})
        raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r}; use one of {accepted}")
    if decoded.table.num_rows + len(decoded.dead) == 0:
        raise BadRequest("the request contains no rows")
    return decoded


def decompress(body: bytes, encoding: str | None, *, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip``, refusing to inflate past ``limit`` bytes (a zip bomb stops early)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        if len(body) > limit:
            raise PayloadTooLarge(f"body of {len(body)} bytes exceeds the limit of {limit} bytes")
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    # A gzip file may hold several members one after another (RFC 1952 2.2; ``cat a.gz b.gz``, pigz, and
    # multi-part writers make them): the body is all of them, and anything else after the first is an error
    # rather than rows silently dropped.
    parts: list[bytes] = []
    size, rest = 0, body
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as err:
            raise BadRequest(f"body is not valid gzip: {err}") from err
        size += len(part)
        parts.append(part)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
        if not inflater.eof:
            raise BadRequest("body is not valid gzip: truncated stream")
        rest = inflater.unused_data
        if not rest:
            return b"".join(parts)
        if not rest.startswith(b"\x1f\x8b"):
            raise BadRequest(f"body is not valid gzip: {len(rest)} bytes after the end of the gzip data")


# -- JSON -------------------------------------------------------------------------------------------------


def _read_json(data: bytes, schema: pa.Schema, options: DecodeOptions, *, array: bool) -> Decoded:
    if options.schema_evolution == "addColumns":
        probed = _probe_new_fields(data, schema, options, array=array)
        if isinstance(probed, pa.Table):
            return Decoded(probed)
        schema, options = probed, replace(options, schema_evolution="none")
    try:
        return Decoded(_read_whole(data, schema, options, array=array))
    except (*ARROW_ERRORS, binascii.Error) as err:
        if options.unknown_fields != "rescue" and options.invalid_rows == "reject":
            raise diagnose_json(data, schema, options, array=array, fallback=str(err)) from None
        return _read_rows(data, schema, options, array=array, fallback=str(err))


def _read_whole(data: bytes, schema: pa.Schema, options: DecodeOptions, *, array: bool) -> pa.Table:
    """The fast path: the whole body through Arrow's reader. Rescuing, it must fit the other columns
    exactly, and the rescue column is null."""
    if options.unknown_fields != "rescue":
        return _read_json_fast(data, schema, options, array=array)
    strict = replace(options, unknown_fields="reject")
    table = _read_json_fast(data, rescue_fields(schema), strict, array=array)
    return _with_rescued(table, [None] * table.num_rows, schema)


def _probe_new_fields(
    data: bytes, schema: pa.Schema, options: DecodeOptions, *, array: bool
) -> pa.Table | pa.Schema:
    """Evolving: the body's table when it has no field the table lacks (the fast path, strict), else the
    schema extended by the new fields it brings (parsed in Python: bodies with new fields only)."""
    strict = options if options.unknown_fields == "rescue" else replace(options, unknown_fields="reject")
    try:
        return _read_whole(data, schema, strict, array=array)
    except (*ARROW_ERRORS, binascii.Error):
        rows = [row for _, row, _ in _json_rows(data, array=array, exact=True, dead=[])]  # again, later
        if options.invalid_rows == "deadLetter":  # a dead row neither adds nor types a column
            rows = [row for row in rows if _writable(row, schema, options)]
        new = json_new_fields(rows, schema, timestamps=options.infer_timestamps)
        return pa.schema([*schema, *new])


def _writable(row: Any, schema: pa.Schema, options: DecodeOptions) -> bool:
    """Whether a row will reach the table (not the dead letters), whatever its fields beyond ``schema``."""
    lenient = options if options.unknown_fields == "rescue" else replace(options, unknown_fields="drop")
    try:
        _split_row(0, row, schema, lenient)
    except Unprocessable:
        return False
    return True


def _read_rows(
    data: bytes, schema: pa.Schema, options: DecodeOptions, *, array: bool, fallback: str
) -> Decoded:
    """The slow path, row by row: what of each row goes to the columns and (rescuing) to the rescue column;
    a row that can be neither refuses the body, or (dead-lettering) goes to ``dead``."""
    dead: list[DeadRow] | None = [] if options.invalid_rows == "deadLetter" else None
    rescue = options.unknown_fields == "rescue"
    fields = rescue_fields(schema) if rescue else schema
    struct = pa.struct(list(fields))
    kept: list[_Kept] = []
    rescued: list[str | None] = []
    for number, row, text in _json_rows(data, array=array, exact=True, dead=dead):
        try:
            clean, extra = _split_row(number, row, schema, options)
        except Unprocessable as problem:
            if dead is None:
                raise
            dead.append(_dead_row(number, row, text, problem))
            continue
        line = _json_text(_exact(clean, struct)).encode()
        kept.append(_Kept(number, _raw(row, text), line))
        rescued.append(_json_text(extra) if extra else None)
    strict = replace(options, unknown_fields="reject") if rescue else options
    table, taken = _read_kept(kept, fields, strict, fallback, dead)
    if rescue:
        table = _with_rescued(table, [rescued[i] for i in taken], schema)
    return Decoded(table, _in_order(dead or []))


def _split_row(
    number: int, row: Any, schema: pa.Schema, options: DecodeOptions
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What of one parsed row goes to the columns, and (rescuing) what to the rescue column; 422 for a row
    that cannot be written."""
    if options.unknown_fields == "rescue":
        return _rescue_row(number, row, rescue_fields(schema), replace(options, unknown_fields="reject"))
    problem = _check_object(row, list(schema), options, prefix="")
    if problem is not None:
        raise _row_error(number, *problem)
    return {k: v for k, v in row.items() if k in schema.names}, {}  # drop: unknown fields go


@dataclass(frozen=True)
class _Kept:
    """A row that passed the checks: its number, its raw JSON, and the line Arrow's reader gets."""

    number: int
    raw: str
    line: bytes


def _read_kept(
    kept: list[_Kept], schema: pa.Schema, options: DecodeOptions, fallback: str, dead: list[DeadRow] | None
) -> tuple[pa.Table, list[int]]:
    """The rows that passed the checks through Arrow's reader, and which of them it took (indices). Arrow
    may still refuse a value the checks let by (a timestamp form Python parses and Arrow does not): then,
    dead-lettering, each row is read alone and the ones refused join ``dead``; otherwise the body is 422."""
    if not kept:
        return schema.empty_table(), []
    try:
        table = _read_json_fast(b"\n".join(k.line for k in kept), schema, options, array=False)
        return table, list(range(len(kept)))
    except (*ARROW_ERRORS, binascii.Error):
        if dead is None:
            raise Unprocessable(f"the data does not fit the table schema: {fallback}") from None
    tables, taken = [], []
    for index, row in enumerate(kept):
        try:
            tables.append(_read_json_fast(row.line, schema, options, array=False))
            taken.append(index)
        except (*ARROW_ERRORS, binascii.Error) as err:
            message = f"row {row.number}: the data does not fit the table schema: {err}"
            dead.append(DeadRow(row.raw, message, None, row.number))
    return (pa.concat_tables(tables) if tables else schema.empty_table()), taken


def _dead_row(number: int, row: Any, text: str | None, err: IngestError) -> DeadRow:
    return DeadRow(_raw(row, text), err.message, err.detail.get("field"), number)


def _raw(row: Any, text: str | None) -> str:
    """A row as sent: its NDJSON line, or (an element of a JSON array) the row as JSON again."""
    return text if text is not None else _json_text(row)


def _in_order(dead: list[DeadRow]) -> tuple[DeadRow, ...]:
    return tuple(sorted(dead, key=lambda d: d.row))


def _row_error(number: int, field: str, message: str) -> Unprocessable:
    """A row's problem as the client sees it: ``row 3, field 'id': ...`` (``field`` may be empty)."""
    where = f"row {number}, field '{field}'" if field else f"row {number}"
    return Unprocessable(f"{where}: {message}", row=number, field=field or None)


def _read_json_fast(data: bytes, schema: pa.Schema, options: DecodeOptions, *, array: bool) -> pa.Table:
    """Arrow's JSON reader with the table's schema; raises Arrow's errors as they come."""
    nested_binary = [f.name for f in schema if _contains_binary(f.type, top=True)]
    if nested_binary:
        raise Unprocessable(
            f"columns {nested_binary} hold binary inside an array or struct, which JSON cannot carry; "
            "send application/vnd.apache.arrow.stream",
            field=nested_binary[0],
        )
    wire = pa.schema([pa.field(f.name, _wire_type(f.type), nullable=f.nullable) for f in schema])
    behaviour = "ignore" if options.unknown_fields == "drop" else "error"
    read_options = pj.ReadOptions(use_threads=False, block_size=max(len(data) + 64, 1 << 20))
    if array:
        # A top-level array is read as one object with a list-of-struct column, then flattened.
        wrapped_schema = pa.schema([pa.field("rows", pa.list_(pa.struct(list(wire))), nullable=False)])
        wrapped = pj.read_json(
            io.BytesIO(b'{"rows":' + data + b"}"),
            parse_options=pj.ParseOptions(
                explicit_schema=wrapped_schema, unexpected_field_behavior=behaviour
            ),
            read_options=read_options,
        )
        structs = wrapped.column(0).combine_chunks().flatten() if wrapped.num_rows == 1 else None
        if structs is None or structs.null_count:
            raise pa.ArrowInvalid("not an array of objects")
        raw = pa.Table.from_struct_array(structs)
    else:
        raw = pj.read_json(
            io.BytesIO(data),
            parse_options=pj.ParseOptions(explicit_schema=wire, unexpected_field_behavior=behaviour),
            read_options=read_options,
        )
    table = _from_wire(raw.select(wire.names), schema)
    # Arrow's JSON reader copies string bytes unchecked: invalid UTF-8 inside a JSON string would be
    # committed and break every reader of the table. Full validation finds it (about 20 us per 1,000 rows).
    table.validate(full=True)
    return table


# -- Rescued data -------------------------------------------------------------------------------------------


def rescue_fields(schema: pa.Schema) -> pa.Schema:
    """The columns a row's fields go to when rescuing: the table's, less the rescue column itself."""
    if RESCUED_COLUMN not in schema.names:
        raise Unprocessable(f"writer.unknownFields is rescue, but the table has no {RESCUED_COLUMN} column")
    return pa.schema([f for f in schema if f.name != RESCUED_COLUMN])


def _rescue_row(
    number: int, row: Any, fields: pa.Schema, strict: DecodeOptions
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What of one parsed row goes to the columns, and what is rescued; 422 for what cannot be either."""
    if not isinstance(row, dict):
        raise _row_error(number, "", f"expected a JSON object, got {_json_kind(row)}")
    extra = {key: value for key, value in row.items() if key not in fields.names}
    clean: dict[str, Any] = {}
    for field in fields:
        item = row.get(field.name)
        problem = None if item is None else _check_value(item, field.type, strict, field.name)
        if item is None and not field.nullable:
            problem = (field.name, "missing or null, but the column is not nullable")
        if problem is None:
            if item is not None:
                clean[field.name] = item
        elif field.nullable:
            extra[field.name] = item  # the whole top-level value, even when the misfit is nested
        else:
            raise _row_error(number, *problem)
    return clean, extra


def _exact(value: Any, dtype: pa.DataType) -> Any:
    """A value parsed with exact decimals, made JSON again for Arrow's reader: decimals as strings (no
    digit lost), other fractions as floats."""
    if isinstance(value, decimal.Decimal):
        return str(value) if pa.types.is_decimal(dtype) else float(value)
    if isinstance(value, list) and pa.types.is_list(dtype):
        return [_exact(v, dtype.value_type) for v in value]
    if isinstance(value, dict) and pa.types.is_struct(dtype):
        types = {f.name: f.type for f in dtype}
        return {k: _exact(v, types[k]) if k in types else v for k, v in value.items()}
    return value


def _json_text(value: Any) -> str:
    """``value`` as strict JSON, for rescued data and dead rows: what ``json`` cannot write itself as
    ``_rescued_value`` says, and the floats JSON has no literal for (NaN and the infinities, which Python's
    parser accepts and Arrow holds) as strings, not as the ``NaN`` that strict readers refuse."""
    try:
        return json.dumps(value, default=_rescued_value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), default=_rescued_value, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # "NaN", "Infinity", "-Infinity"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _rescued_value(value: Any) -> Any:
    """JSON for what ``json`` cannot write itself, in rescued data."""
    if isinstance(value, decimal.Decimal):
        number = float(value)
        return number if math.isfinite(number) else str(value)  # 1e999 is no float
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return str(value)


def _with_rescued(table: pa.Table, rescued: list[str | None], schema: pa.Schema) -> pa.Table:
    column = pa.array(rescued, pa.string())
    return table.append_column(RESCUED_COLUMN, column).select(schema.names).cast(schema)


def _contains_binary(dtype: pa.DataType, *, top: bool) -> bool:
    if pa.types.is_binary(dtype):
        return not top
    if pa.types.is_list(dtype):
        return _contains_binary(dtype.value_type, top=False)
    if pa.types.is_struct(dtype):
        return any(_contains_binary(f.type, top=False) for f in dtype)
    return False


def _wire_type(dtype: pa.DataType) -> pa.DataType:
    """The type Arrow's JSON reader should produce: dates and (base64) binary arrive as strings."""
    if pa.types.is_date(dtype) or pa.types.is_binary(dtype):
        return pa.string()
    if pa.types.is_list(dtype):
        return pa.list_(_wire_type(dtype.value_type))
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _wire_type(f.type), nullable=f.nullable) for f in dtype])
    return dtype


def _from_wire(raw: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field, wire in zip(schema, raw.columns, strict=True):
        column = wire
        if pa.types.is_binary(field.type):
            values = [None if v is None else base64.b64decode(v, validate=True) for v in wire.to_pylist()]
            column = pa.chunked_array([pa.array(values, pa.binary())])
        elif wire.type != field.type:
            column = pc.cast(wire, field.type, safe=True)
        if not field.nullable and column.null_count:
            raise pa.ArrowInvalid(f"null in non-nullable column {field.name}")
        if pa.types.is_decimal(field.type) and decimal_overflow(column, field.type):
            raise pa.ArrowInvalid(f"a value of {field.name} does not fit {type_name(field.type)}")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def decimal_overflow(column: pa.ChunkedArray, dtype: pa.Decimal128Type) -> bool:
    """Whether a value holds more integer digits than ``dtype`` has room for.

    Arrow's JSON reader does not enforce a decimal's precision, and Parquet would store the value anyway,
    corrupt for every reader. (An IPC stream's full validation refuses such values itself.)"""
    digits = dtype.precision - dtype.scale
    if dtype.precision >= 38:  # the limit itself would not fit; decimal128 holds no more anyway
        return False
    wide = pa.decimal128(38, dtype.scale)
    limit = pa.scalar(decimal.Decimal(10) ** digits, wide)
    return bool(pc.any(pc.greater_equal(pc.abs(pc.cast(column, wide)), limit)).as_py())


def diagnose_json(
    data: bytes, schema: pa.Schema, options: DecodeOptions, *, array: bool, fallback: str
) -> IngestError:
    """The precise error for a JSON body the fast reader refused: the first bad row (from 1) and field."""
    try:
        rows = _json_rows(data, array=array)
    except BadRequest as err:
        return err
    for number, row, _ in rows:
        problem = _check_object(row, list(schema), options, prefix="")
        if problem is not None:
            return _row_error(number, *problem)
    return Unprocessable(f"the data does not fit the table schema: {fallback}")


def _json_rows(
    data: bytes, *, array: bool, exact: bool = False, dead: list[DeadRow] | None = None
) -> list[tuple[int, Any, str | None]]:
    """A JSON body's rows, numbered from 1 (NDJSON: by line), with each NDJSON line's text; ``exact`` keeps
    fractions as ``Decimal``. Given ``dead``, an NDJSON line that is not JSON goes there instead of failing
    the body (a body that is not UTF-8, or a JSON array that does not parse, fails as a whole)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(f"body is not UTF-8: {err}") from None
    if array:
        parsed = _parse_json(text, row=None, exact=exact)
        if not isinstance(parsed, list):
            raise BadRequest("an application/json body must be an array of objects (or a single object)")
        return [(number, row, None) for number, row in enumerate(parsed, start=1)]
    rows: list[tuple[int, Any, str | None]] = []
    # Lines end at "\n" only, as for Arrow's reader: str.splitlines would also break at U+2028 and other
    # separators, which a JSON string may hold as they are.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, _parse_json(line, row=number, exact=exact), line))
        except BadRequest as err:
            if dead is None:
                raise
            dead.append(DeadRow(line, err.message, None, number))
    return rows


def _parse_json(text: str, *, row: int | None, exact: bool = False) -> Any:
    """One JSON document: the whole body (``row`` None) or NDJSON row ``row``; ``BadRequest`` naming it."""
    where = "" if row is None else f"row {row}: "
    if (depth := json_depth(text)) > MAX_JSON_DEPTH:
        raise BadRequest(
            f"{where}JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted", row=row
        )
    try:
        return json.loads(
            text, parse_constant=_refuse_constant, parse_float=decimal.Decimal if exact else float
        )
    except json.JSONDecodeError as err:
        position = f"column {err.colno}" if row is not None else f"line {err.lineno} column {err.colno}"
        raise BadRequest(f"{where}invalid JSON at {position}: {err.msg}", row=row) from None
    except ValueError as err:  # NaN/Infinity, or an integer longer than Python converts
        raise BadRequest(f"{where}invalid JSON: {err}", row=row) from None


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, found without recursion (strings skipped).

    Linear in the text with no stack, so a hostile body costs what its size costs."""
    # Quoted strings (with escapes) go first, so brackets inside them do not count.
    stripped = _JSON_STRING.sub("", text)
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(stripped):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (JSON has no NaN or Infinity)")


def _check_object(
    value: Any, fields: list[pa.Field], options: DecodeOptions, *, prefix: str
) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return prefix.rstrip("."), f"expected a JSON object, got {_json_kind(value)}"
    known = {f.name for f in fields}
    if options.unknown_fields == "reject":
        for key in value:
            if key not in known:
                return f"{prefix}{key}", "unknown field (not in the table schema)"
    for field in fields:
        path = f"{prefix}{field.name}"
        item = value.get(field.name)
        if item is None:
            if not field.nullable:
                return path, "missing or null, but the column is not nullable"
            continue
        problem = _check_value(item, field.type, options, path)
        if problem is not None:
            return problem
    return None


def _check_value(value: Any, dtype: pa.DataType, options: DecodeOptions, path: str) -> tuple[str, str] | None:
    expected = type_name(dtype)
    wrong = (path, f"expected {expected}, got {_json_kind(value)} {_preview(value)}")
    if pa.types.is_struct(dtype):
        return _check_object(value, list(dtype), options, prefix=f"{path}.")
    if pa.types.is_list(dtype):
        if not isinstance(value, list):
            return wrong
        for index, element in enumerate(value):
            if element is not None:
                problem = _check_value(element, dtype.value_type, options, f"{path}[{index}]")
                if problem is not None:
                    return problem
        return None
    if pa.types.is_boolean(dtype):
        return None if isinstance(value, bool) else wrong
    if pa.types.is_integer(dtype):
        if not isinstance(value, int) or isinstance(value, bool):
            return wrong
        bits = dtype.bit_width
        if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            return path, f"{value} is out of range for {expected}"
        return None
    if pa.types.is_floating(dtype):
        number = isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool)
        return None if number else wrong
    if pa.types.is_decimal(dtype):
        return _check_decimal(value, dtype, path, wrong)
    if not isinstance(value, str):
        return wrong
    return _check_string(value, dtype, path, wrong)


def _check_decimal(
    value: Any, dtype: pa.Decimal128Type, path: str, wrong: tuple[str, str]
) -> tuple[str, str] | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str | decimal.Decimal):
        return wrong
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return wrong
    exponent = number.as_tuple().exponent
    scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    digits = len(number.as_tuple().digits)
    if scale > dtype.scale or digits - scale > dtype.precision - dtype.scale:
        return path, f"{value} does not fit {type_name(dtype)}"
    return None


def _check_string(
    value: str, dtype: pa.DataType, path: str, wrong: tuple[str, str]
) -> tuple[str, str] | None:
    t = pa.types
    if not (t.is_string(dtype) or t.is_date(dtype) or t.is_timestamp(dtype) or t.is_binary(dtype)):
        return wrong
    try:
        if t.is_date(dtype):
            dt.date.fromisoformat(value)
        elif t.is_timestamp(dtype):
            dt.datetime.fromisoformat(value)
        elif t.is_binary(dtype):
            base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        kind = "base64" if t.is_binary(dtype) else "ISO-8601"
        return path, f"{_preview(value)} is not a valid {kind} {type_name(dtype)}"
    return None


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", decimal.Decimal: "number", str: "string"}
    kinds |= {list: "array", dict: "object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _preview(value: Any) -> str:
    text = json.dumps(value, default=str)  # exact decimals (rescue's parse) as their digits
    return text if len(text) <= 40 else text[:37] + "..."


# -- Arrow IPC --------------------------------------------------------------------------------------------


def conform(table: pa.Table, schema: pa.Schema, options: DecodeOptions) -> Decoded:
    """Make ``table`` exactly ``schema``: drop, reject or rescue unknown columns, null-fill missing nullable
    ones, apply safe widening casts, and refuse nulls in non-nullable columns (naming the first bad row).
    Rescuing, a nullable column that cannot be cast goes to the rescue column too, its own values null.
    Dead-lettering, the rows with a null (or absent) non-nullable column are set apart instead; a column
    that cannot be cast at all is the whole stream's problem and still refused."""
    rescue = options.unknown_fields == "rescue"
    sorting = options.invalid_rows == "deadLetter"
    unfit: list[tuple[str, str, pa.ChunkedArray]] = []  # dead-lettering: field, why, rows it holds for
    target = rescue_fields(schema) if rescue else schema
    names = table.column_names
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise Unprocessable(f"duplicate columns {duplicated}", field=duplicated[0])
    if options.schema_evolution == "addColumns":
        schema = pa.schema([*schema, *arrow_new_fields(table.schema, schema)])
        target = rescue_fields(schema) if rescue else schema
    unknown = [n for n in names if n not in target.names]
    if unknown and options.unknown_fields == "reject":
        raise Unprocessable(f"unknown field(s) {unknown} (not in the table schema)", field=unknown[0])
    extras = {name: table.column(name) for name in unknown} if rescue else {}
    columns = []
    for field in target:
        if field.name not in names:
            if not field.nullable:
                if not sorting:
                    raise Unprocessable(f"field '{field.name}': required column is missing", field=field.name)
                everyone = pa.chunked_array([pa.array([True] * table.num_rows, pa.bool_())])
                unfit.append((field.name, "missing, but the column is not nullable", everyone))
            columns.append(pa.chunked_array([pa.nulls(table.num_rows, field.type)]))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = cast_column(column, field)
            except Unprocessable:
                if not (rescue and field.nullable):
                    raise
                extras[field.name] = column
                column = pa.chunked_array([pa.nulls(table.num_rows, field.type)])
        if not field.nullable and column.null_count:
            if sorting:
                unfit.append((field.name, "null in a non-nullable column", pc.is_null(column)))
            else:
                row = _first_null(column) + 1
                raise _row_error(row, field.name, "null in a non-nullable column")
        if (outside := out_of_range(column)) is not None:
            if not sorting:
                raise _row_error(pc.index(outside, True).as_py() + 1, field.name, OUT_OF_RANGE)
            unfit.append((field.name, OUT_OF_RANGE, outside))
        columns.append(column)
    conformed = pa.Table.from_arrays(columns, schema=target)
    if rescue:
        conformed = _with_rescued(conformed, _rescued_rows(table.num_rows, extras), schema)
    if not unfit:
        return Decoded(conformed)
    return _set_apart(table, conformed, unfit)


def _set_apart(sent: pa.Table, conformed: pa.Table, unfit: list[tuple[str, str, pa.ChunkedArray]]) -> Decoded:
    """The rows of ``conformed`` that no ``unfit`` mask holds for, and the others as dead rows (``sent``'s
    values, the first unfit field per row)."""
    bad = functools.reduce(pc.or_, [mask for _, _, mask in unfit])
    indices = pc.indices_nonzero(bad).to_pylist()
    masks = [(name, why, mask.to_pylist()) for name, why, mask in unfit]
    columns = {name: _values_at(sent.column(name), name, indices) for name in sent.column_names}
    raws = [{name: values[i] for name, values in columns.items()} for i in range(len(indices))]
    dead = []
    for index, raw in zip(indices, raws, strict=True):
        name, why = next((name, why) for name, why, holds in masks if holds[index])
        err = _row_error(index + 1, name, why)
        dead.append(DeadRow(_json_text(raw), err.message, name, index + 1))
    return Decoded(conformed.filter(pc.invert(bad)), tuple(dead))


def _python_values(column: pa.ChunkedArray, name: str) -> list[Any]:
    """A column a client sent, as Python values to show as JSON. Arrow holds times Python's types cannot
    (a timestamp in the year 10^5, nanoseconds before 1677, durations past 10^9 days): such a column is
    shown as Arrow's text for its times instead, at any depth."""
    values: list[Any]
    try:
        values = column.to_pylist()
        return values
    except (*ARROW_ERRORS, ValueError, OverflowError):
        pass
    try:
        values = pc.cast(column, _times_as_text(column.type)).to_pylist()
        return values
    except (*ARROW_ERRORS, ValueError, OverflowError) as err:
        raise Unprocessable(
            f"field '{name}': its values cannot be shown as JSON: {err}", field=name
        ) from None


def _values_at(column: pa.ChunkedArray, name: str, indices: list[int]) -> list[Any]:
    """The Python values of ``column`` at ``indices``; Arrow has no ``take`` for some types a stream may
    carry (run-end encoded, string views), whose values are all converted and picked from instead."""
    try:
        return _python_values(column.take(indices), name)
    except pa.ArrowNotImplementedError:
        values = _python_values(column, name)
        return [values[i] for i in indices]


def _times_as_text(dtype: pa.DataType) -> pa.DataType:
    t = pa.types
    if t.is_temporal(dtype):
        return pa.string()
    if t.is_struct(dtype):
        return pa.struct([f.with_type(_times_as_text(f.type)) for f in dtype])
    if t.is_map(dtype):
        return pa.map_(_times_as_text(dtype.key_type), _times_as_text(dtype.item_type))
    if t.is_large_list(dtype):
        return pa.large_list(dtype.value_field.with_type(_times_as_text(dtype.value_type)))
    if t.is_list(dtype) or t.is_fixed_size_list(dtype):
        size = dtype.list_size if t.is_fixed_size_list(dtype) else -1
        return pa.list_(dtype.value_field.with_type(_times_as_text(dtype.value_type)), size)
    return dtype


def _rescued_rows(num_rows: int, extras: dict[str, pa.ChunkedArray]) -> list[str | None]:
    """Per row, the rescued columns' non-null values as one JSON object (None when there are none)."""
    values = {name: _python_values(column, name) for name, column in extras.items()}
    return [
        _json_text(row) if row else None
        for row in (
            {name: vals[i] for name, vals in values.items() if vals[i] is not None} for i in range(num_rows)
        )
    ]


def cast_column(column: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    """A safe widening cast to the column's type, or ``Unprocessable`` saying why not."""
    if not is_safe_widening(column.type, field.type):
        raise Unprocessable(
            f"field '{field.name}': cannot write {type_name(column.type)} into a "
            f"{type_name(field.type)} column (only widening casts are allowed)",
            field=field.name,
        )
    try:
        return pc.cast(column, field.type, safe=True)
    except ARROW_ERRORS as err:
        raise Unprocessable(f"field '{field.name}': {err}", field=field.name) from None


def _first_null(column: pa.ChunkedArray) -> int:
    return int(pc.index(pc.is_null(column), True).as_py())


def is_safe_widening(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether every value of ``source`` is representable in ``target`` (value checks happen in the cast)."""
    t = pa.types
    if source == target or t.is_null(source):
        return True
    if t.is_integer(source) and t.is_integer(target):
        if t.is_signed_integer(source) and not t.is_signed_integer(target):
            return False
        width = source.bit_width + (0 if t.is_signed_integer(source) == t.is_signed_integer(target) else 1)
        return bool(width <= target.bit_width)
    if t.is_integer(source) and t.is_floating(target):
        return True  # the safe cast refuses any value that would lose precision
    if t.is_floating(source) and t.is_floating(target):
        return bool(source.bit_width <= target.bit_width)
    if (t.is_string(source) or t.is_large_string(source) or t.is_string_view(source)) and t.is_string(target):
        return True
    if (t.is_binary(source) or t.is_large_binary(source) or t.is_binary_view(source)) and t.is_binary(target):
        return True
    if t.is_timestamp(source) and t.is_timestamp(target):
        return (source.tz is None) == (target.tz is None)  # the safe cast refuses lost sub-units
    if t.is_date(source) and t.is_date(target):
        return True
    if t.is_decimal(source) and t.is_decimal(target):
        return bool(
            target.scale >= source.scale
            and target.precision - target.scale >= source.precision - source.scale
        )
    if (t.is_list(source) or t.is_large_list(source)) and t.is_list(target):
        return is_safe_widening(source.value_type, target.value_type)
    if t.is_struct(source) and t.is_struct(target):
        target_fields = {f.name: f.type for f in target}
        return all(
            f.name in target_fields and is_safe_widening(f.type, target_fields[f.name]) for f in source
        )
    return False
