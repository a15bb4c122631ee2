"""Arrow schemas for tables: built from the settings' columns, and normalized for comparison."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from deltaingest.config import ColumnSpec
from deltaingest.delta_types import parse_type


def arrow_schema(columns: Sequence[ColumnSpec]) -> pa.Schema:
    """The Arrow schema for a table created from settings."""
    return pa.schema([pa.field(c.name, parse_type(c.type), nullable=c.nullable) for c in columns])


def normalize(schema: pa.Schema) -> pa.Schema:
    """The table's schema with view and large string/binary/list types mapped to the plain ones we ingest as.

    delta-rs may report ``string_view`` or ``large_string``; incoming data is decoded as plain types and the
    writer converts, so comparing against the normalized schema keeps validation independent of that choice.
    """
    return pa.schema([pa.field(f.name, _plain(f.type), nullable=f.nullable) for f in schema])


def _plain(dtype: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return pa.binary()
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_list_view(dtype):
        return pa.list_(pa.field("element", _plain(dtype.value_type), nullable=dtype.value_field.nullable))
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _plain(f.type), nullable=f.nullable) for f in dtype])
    return dtype
