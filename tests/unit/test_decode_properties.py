"""Property: whatever the body, the decoder returns a table with the schema or raises a 4xx IngestError."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import HealthCheck, given, settings

from deltaingest.ingest.decode import DecodeOptions, decode
from deltaingest.ingest.errors import IngestError
from tests.helpers import EVENT_ARROW_SCHEMA as SCHEMA
from tests.mutations import Body, bodies

CLIENT_ERRORS = {400, 413, 415, 422}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies())
def test_every_body_decodes_to_the_schema_or_gets_a_client_error(body: Body) -> None:
    try:
        table = decode(
            body.data,
            content_type=body.content_type,
            content_encoding=body.content_encoding,
            schema=SCHEMA,
            options=DecodeOptions(max_bytes=4 * 1024 * 1024),
        )
    except IngestError as err:
        assert err.status in CLIENT_ERRORS, err.body()
        assert isinstance(err.body()["error"], str) and err.body()["error"]
        return
    assert isinstance(table, pa.Table) and table.schema == SCHEMA and table.num_rows > 0
    table.validate(full=True)  # no invalid UTF-8 or broken offsets reach the table
