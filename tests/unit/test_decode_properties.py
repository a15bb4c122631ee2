"""Property: whatever the body, the decoder returns a table with the schema or raises a 4xx IngestError."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given

from deltaingest.ingest.decode import DecodeOptions
from deltaingest.ingest.errors import IngestError
from tests.helpers import EVENT_ARROW_SCHEMA as SCHEMA
from tests.mutations import Body, bodies, found_examples
from tests.properties import budget

CLIENT_ERRORS = {400, 413, 415, 422}
MAX_BYTES = 4 * 1024 * 1024


@budget(400)
@given(body=bodies())
@found_examples()
def test_every_body_decodes_to_the_schema_or_gets_a_client_error(body: Body) -> None:
    try:
        table = body.decode(DecodeOptions(max_bytes=MAX_BYTES)).table
    except IngestError as err:
        assert err.status in CLIENT_ERRORS, err.body()
        assert isinstance(err.body()["error"], str) and err.body()["error"]
        return
    assert isinstance(table, pa.Table) and table.schema == SCHEMA and table.num_rows > 0
    table.validate(full=True)  # no invalid UTF-8 or broken offsets reach the table


@budget(300)
@given(body=bodies())
@found_examples()
def test_dead_lettering_every_body_splits_into_valid_rows_and_explained_dead_ones_or_a_client_error(
    body: Body,
) -> None:
    try:
        decoded = body.decode(DecodeOptions(invalid_rows="deadLetter", max_bytes=MAX_BYTES))
    except IngestError as err:
        assert err.status in CLIENT_ERRORS, err.body()
        return
    assert decoded.table.schema == SCHEMA and decoded.table.num_rows + len(decoded.dead) > 0
    decoded.table.validate(full=True)
    rows = [d.row for d in decoded.dead]
    assert rows == sorted(set(rows)) and all(r >= 1 for r in rows)
    assert all(d.error.startswith(f"row {d.row}") and d.raw for d in decoded.dead)
    # What the reject policy accepts is accepted the same here, with nothing set apart.
    try:
        strict = body.decode(DecodeOptions(max_bytes=MAX_BYTES))
    except IngestError:
        return
    assert decoded.dead == ()
    # Compared as text: Table.equals() holds NaN unequal to itself (make fuzz, seed 1904060024).
    assert repr(decoded.table.to_pylist()) == repr(strict.table.to_pylist())


@budget(300)
@given(body=bodies())
@found_examples()
def test_evolving_every_body_decodes_to_the_schema_plus_nullable_columns_or_gets_a_client_error(
    body: Body,
) -> None:
    options = DecodeOptions(
        schema_evolution="addColumns", infer_timestamps=True, invalid_rows="deadLetter", max_bytes=MAX_BYTES
    )
    try:
        decoded = body.decode(options)
    except IngestError as err:
        assert err.status in CLIENT_ERRORS, err.body()
        return
    schema = decoded.table.schema
    assert pa.schema(list(schema)[: len(SCHEMA)]) == SCHEMA
    assert all(f.nullable and f.name not in SCHEMA.names for f in list(schema)[len(SCHEMA) :])
    decoded.table.validate(full=True)
