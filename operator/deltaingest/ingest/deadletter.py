"""The dead-letter table: its columns and how a writer creates it. Pure: no I/O."""

from __future__ import annotations

from deltaingest.config import ColumnSpec, TableSpec
from deltaingest.table.schema import arrow_schema

# What a dead-letter row holds: the row as sent, why it was set apart, and the request it came in.
DEAD_LETTER_COLUMNS = (
    ColumnSpec(name="raw", type="string", nullable=False),
    ColumnSpec(name="error", type="string", nullable=False),
    ColumnSpec(name="field", type="string"),
    ColumnSpec(name="row_number", type="long", nullable=False),
    ColumnSpec(name="received_at", type="timestamp", nullable=False),
    ColumnSpec(name="producer_id", type="string"),
    ColumnSpec(name="sequence", type="long"),
    ColumnSpec(name="request_id", type="string"),
)
DEAD_LETTER_SCHEMA = arrow_schema(DEAD_LETTER_COLUMNS)


def dead_letter_spec(uri: str) -> TableSpec:
    """How the writer creates the dead-letter table when it is missing."""
    return TableSpec(
        uri=uri,
        schema=list(DEAD_LETTER_COLUMNS),
        name="dead letters",
        description="Rows a deltaingest writer could not write to its table",
    )
