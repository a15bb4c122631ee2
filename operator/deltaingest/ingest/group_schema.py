"""The schema one group commit writes with, and each batch made to fit it. Pure: no I/O.

Batches are decoded against the table's schema as this replica last saw it, possibly extended by new
columns of their own (``schemaEvolution: addColumns``). At commit time, after catching up, the table may
have moved on (another replica added columns), and two batches of the group may bring the same new column.
The first batch to bring a column decides its type; a later batch whose column cannot be cast safely to the
type decided, or to the table's, is refused on its own (422) and the rest of the group commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from deltaingest.delta_types import type_name
from deltaingest.ingest.decode import cast_column, is_safe_widening
from deltaingest.ingest.errors import Unprocessable
from deltaingest.ingest.evolve import check_new_fields


@dataclass(frozen=True)
class GroupSchema:
    """The schema to commit with, the columns it adds to the table, and per batch its data in that schema
    or why it cannot be written."""

    schema: pa.Schema
    added: tuple[str, ...]
    batches: tuple[pa.Table | Unprocessable, ...]


def fit_group(table: pa.Schema, batches: Sequence[pa.Table]) -> GroupSchema:
    """Merge the batches' new columns into ``table``'s schema, in group order, and conform every batch."""
    if all(data.schema.equals(table) for data in batches):
        return GroupSchema(table, (), tuple(batches))  # the common case: nothing to do
    fields = list(table)
    fitted: list[pa.Table | Unprocessable] = []
    for data in batches:
        new = [f for f in data.schema if f.name not in {g.name for g in fields}]
        try:
            check_new_fields(new, pa.schema(fields))
            schema = pa.schema([*fields, *new])
            fitted.append(_conform(data, schema, table))
        except Unprocessable as err:
            fitted.append(err)
            continue
        fields = list(schema)
    schema = pa.schema(fields)
    # Batches fitted before a later one added columns get those columns as nulls.
    batches_out = tuple(b if isinstance(b, Unprocessable) else _conform(b, schema, table) for b in fitted)
    added = tuple(f.name for f in fields if f.name not in table.names)
    return GroupSchema(schema, added, batches_out)


def _conform(data: pa.Table, schema: pa.Schema, table: pa.Schema) -> pa.Table:
    """``data`` with exactly ``schema``: safe casts where types differ, nulls for absent nullable columns
    (``table``, the table's own schema, says in an error whose the column is)."""
    if data.schema.equals(schema):
        return data
    columns = []
    for field in schema:
        if field.name not in data.column_names:
            if not field.nullable:
                raise Unprocessable(f"field '{field.name}': required column is missing", field=field.name)
            columns.append(pa.chunked_array([pa.nulls(data.num_rows, field.type)]))
            continue
        column = data.column(field.name)
        if column.type != field.type:
            if not is_safe_widening(column.type, field.type):
                whose = (
                    "the table's column is"
                    if field.name in table.names
                    else "an earlier request of the same commit adds it as"
                )
                raise Unprocessable(
                    f"field '{field.name}': this request has it as {type_name(column.type)}, but {whose} "
                    f"{type_name(field.type)} (a column's type is never changed)",
                    field=field.name,
                )
            column = cast_column(column, field)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)
