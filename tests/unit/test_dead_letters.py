"""Dead-lettering (writer.invalidRows: deadLetter): which rows are set apart, and what the dead-letter
table gets for them. Pure functions: the decoder, the group plan and the dead-letter rows."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json

import pyarrow as pa
import pytest

from deltaingest.ingest.committer import Batch, dead_letter_rows
from deltaingest.ingest.deadletter import DEAD_LETTER_SCHEMA
from deltaingest.ingest.decode import DeadRow, Decoded, DecodeOptions, decode
from deltaingest.ingest.errors import BadRequest, Unprocessable
from deltaingest.table.schema import normalize

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("score", pa.float64()),
    ]
)
DEAD = DecodeOptions(invalid_rows="deadLetter")
NDJSON = "application/x-ndjson"
ARROW = "application/vnd.apache.arrow.stream"


def _decode(body: bytes, content_type: str = NDJSON, options: DecodeOptions = DEAD, **kw: str) -> Decoded:
    schema = pa.schema([*SCHEMA, pa.field("_rescued_data", pa.string())]) if "rescue" in kw else SCHEMA
    return decode(
        body, content_type=content_type, content_encoding=kw.get("encoding"), schema=schema, options=options
    )


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


LINES = [
    '{"id": 1, "name": "a"}',
    '{"id": null, "name": "b"}',  # null in a non-nullable column
    '{"id": 3, "name": "c", "colour": "red"}',  # unknown field under reject
    '{"id": 4, "name": ',  # not JSON
    '{"name": "e"}',  # a non-nullable column missing
    '{"id": "six", "name": "f"}',  # a value that cannot be cast to a non-nullable column
    '{"id": 7, "score": "high"}',  # a value that cannot be cast to a nullable column
    "[8]",  # not an object
    '{"id": 9, "score": 2.5}',
]


def test_good_rows_decode_and_every_bad_row_is_set_apart_with_why_and_where() -> None:
    decoded = _decode("\n".join(LINES).encode() + b"\n")
    assert decoded.table.schema == SCHEMA
    assert decoded.table.to_pylist() == [
        {"id": 1, "name": "a", "score": None},
        {"id": 9, "name": None, "score": 2.5},
    ]
    assert [(d.row, d.field) for d in decoded.dead] == [
        (2, "id"),
        (3, "colour"),
        (4, None),
        (5, "id"),
        (6, "id"),
        (7, "score"),
        (8, None),
    ]
    assert [d.raw for d in decoded.dead] == [LINES[i - 1] for i in (2, 3, 4, 5, 6, 7, 8)]  # as sent
    errors = [d.error for d in decoded.dead]
    assert errors[0] == "row 2, field 'id': missing or null, but the column is not nullable"
    assert errors[1] == "row 3, field 'colour': unknown field (not in the table schema)"
    assert errors[2].startswith("row 4: invalid JSON")
    assert "expected long" in errors[4] and "expected double" in errors[5]
    assert errors[6] == "row 8: expected a JSON object, got array"


def test_reject_refuses_the_same_body_naming_a_bad_row() -> None:
    with pytest.raises(BadRequest, match="row 4: invalid JSON"):  # unparsable lines are found first
        _decode("\n".join(LINES).encode(), options=DecodeOptions())
    with pytest.raises(Unprocessable, match="row 2, field 'id'"):
        _decode("\n".join(LINES[:3]).encode(), options=DecodeOptions())


def test_a_body_of_good_rows_takes_the_fast_path_with_no_dead_rows() -> None:
    decoded = _decode(b'{"id": 1}\n{"id": 2, "score": 1}\n')
    assert decoded.dead == () and decoded.table.column("id").to_pylist() == [1, 2]


def test_every_row_bad_leaves_an_empty_table_and_all_rows_dead() -> None:
    decoded = _decode(b'{"id": null}\n{"name": "x"}\n')
    assert decoded.table.num_rows == 0 and decoded.table.schema == SCHEMA
    assert [d.row for d in decoded.dead] == [1, 2]


def test_a_json_array_sets_rows_apart_by_position_with_their_json() -> None:
    body = json.dumps([{"id": 1}, {"id": None, "name": "x"}, {"id": 2.5}]).encode()
    decoded = _decode(body, "application/json")
    assert decoded.table.column("id").to_pylist() == [1]
    assert [(d.row, d.field) for d in decoded.dead] == [(2, "id"), (3, "id")]
    assert json.loads(decoded.dead[0].raw) == {"id": None, "name": "x"}
    assert json.loads(decoded.dead[1].raw) == {"id": 2.5}


def test_drop_keeps_rows_with_unknown_fields_and_sets_apart_only_what_cannot_be_written() -> None:
    body = b'{"id": 1, "extra": {"deep": 1.25}}\n{"id": null, "extra": 2}\n'
    decoded = _decode(body, options=DecodeOptions(unknown_fields="drop", invalid_rows="deadLetter"))
    assert decoded.table.to_pylist() == [{"id": 1, "name": None, "score": None}]
    assert [d.row for d in decoded.dead] == [2]


def test_rescue_and_dead_letters_together() -> None:
    body = b'{"id": 1, "score": "high", "colour": "red"}\n{"id": "two"}\n'
    options = DecodeOptions(unknown_fields="rescue", invalid_rows="deadLetter")
    decoded = _decode(body, options=options, rescue="yes")
    [row] = decoded.table.to_pylist()
    assert (row["id"], row["score"]) == (1, None)
    assert json.loads(str(row["_rescued_data"])) == {"score": "high", "colour": "red"}
    assert [(d.row, d.field, d.raw) for d in decoded.dead] == [(2, "id", '{"id": "two"}')]


def test_arrow_rows_with_nulls_in_a_non_nullable_column_are_set_apart_as_json() -> None:
    incoming = pa.table({"id": pa.array([1, None, 3], pa.int32()), "name": ["a", "b", None]})
    decoded = _decode(_ipc(incoming), ARROW)
    assert decoded.table.column("id").to_pylist() == [1, 3]
    assert decoded.table.schema == SCHEMA
    assert [(d.row, d.field, json.loads(d.raw)) for d in decoded.dead] == [
        (2, "id", {"id": None, "name": "b"})
    ]
    assert decoded.dead[0].error == "row 2, field 'id': null in a non-nullable column"


def test_arrow_without_a_non_nullable_column_sets_every_row_apart() -> None:
    decoded = _decode(_ipc(pa.table({"name": ["a", "b"]})), ARROW)
    assert decoded.table.num_rows == 0
    assert [(d.row, d.field) for d in decoded.dead] == [(1, "id"), (2, "id")]


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "error"),
    [
        (b"\xff\xfe{}", NDJSON, None, BadRequest),  # not UTF-8: the body, not a row
        (b'[{"id": 1}, {"id": ', "application/json", None, BadRequest),  # an array that does not parse
        (gzip.compress(b'{"id": 1}\n')[:-4], NDJSON, "gzip", BadRequest),
        (_ipc(pa.table({"id": ["x"]})), ARROW, None, Unprocessable),  # a column of the wrong type
        (b"", NDJSON, None, BadRequest),
    ],
)
def test_what_is_wrong_with_the_whole_body_still_refuses_it(
    body: bytes, content_type: str, encoding: str | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        decode(body, content_type=content_type, content_encoding=encoding, schema=SCHEMA, options=DEAD)


def test_dead_letter_rows_carry_each_batch_identity_in_order() -> None:
    when = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)
    first = Batch(
        SCHEMA.empty_table(),
        "p",
        7,
        dead=(DeadRow('{"id": null}', "row 1: bad", "id", 1), DeadRow("{", "row 3: bad", None, 3)),
        received_at=when,
        request_id="r1",
    )
    second = Batch(SCHEMA.empty_table(), dead=(DeadRow("[]", "row 2: bad", None, 2),), received_at=when)
    rows = dead_letter_rows([first, Batch(SCHEMA.empty_table()), second])
    assert rows.schema == DEAD_LETTER_SCHEMA
    assert rows.to_pylist() == [
        {"raw": '{"id": null}', "error": "row 1: bad", "field": "id", "row_number": 1, "received_at": when,
         "producer_id": "p", "sequence": 7, "request_id": "r1"},
        {"raw": "{", "error": "row 3: bad", "field": None, "row_number": 3, "received_at": when,
         "producer_id": "p", "sequence": 7, "request_id": "r1"},
        {"raw": "[]", "error": "row 2: bad", "field": None, "row_number": 2, "received_at": when,
         "producer_id": None, "sequence": None, "request_id": None},
    ]  # fmt: skip


def test_the_dead_letter_schema_is_what_delta_reads_back() -> None:
    # The writer checks an existing dead-letter table's columns against this after normalizing.
    assert normalize(DEAD_LETTER_SCHEMA) == DEAD_LETTER_SCHEMA


def test_a_lone_surrogate_in_a_key_or_value_is_kept_as_its_escape_in_the_dead_row() -> None:
    decoded = _decode(b'{"id": 1, "\\ud800": 1}\n{"id": "\\udfff"}\n{"id": 3}\n')
    assert decoded.table.column("id").to_pylist() == [3]
    rows = dead_letter_rows([Batch(SCHEMA.empty_table(), dead=decoded.dead)])  # Arrow takes them
    assert rows.column("field").to_pylist() == ["\\ud800", "id"]
    assert "\\udfff" in rows.column("error").to_pylist()[1]


def test_a_value_the_checks_pass_but_arrow_refuses_dead_letters_its_row_alone() -> None:
    schema = pa.schema(
        [pa.field("id", pa.int64(), nullable=False), pa.field("ts", pa.timestamp("us", "UTC"))]
    )
    body = b'{"id": 1, "ts": "2024-05-01T10:00:00.123456789Z"}\n{"id": 2, "ts": "2024-05-01T10:00:00Z"}\n'
    decoded = decode(body, content_type=NDJSON, content_encoding=None, schema=schema, options=DEAD)
    assert decoded.table.column("id").to_pylist() == [2]
    assert [(d.row, d.raw) for d in decoded.dead] == [(1, body.split(b"\n")[0].decode())]
    with pytest.raises(Unprocessable, match="does not fit the table schema"):  # reject: the request
        decode(body, content_type=NDJSON, content_encoding=None, schema=schema, options=DecodeOptions())
