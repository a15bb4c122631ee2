"""Decoding and validation of request bodies against the table schema (pure functions)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import gzip
import io
import json

import pyarrow as pa
import pytest

from deltaingest.ingest.decode import DecodeOptions, conform, decode, is_safe_widening
from deltaingest.ingest.errors import (
    BadRequest,
    IngestError,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("day", pa.date32()),
        pa.field("name", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("n", pa.int32()),
        pa.field("price", pa.decimal128(10, 2)),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("geo", pa.struct([("lat", pa.float64()), ("lon", pa.float64())])),
        pa.field("blob", pa.binary()),
    ]
)
STRICT = DecodeOptions()
ROW = {
    "id": 1,
    "ts": "2024-05-01T10:00:00Z",
    "day": "2024-05-01",
    "name": "a",
    "score": 1.5,
    "n": 7,
    "price": 12.34,
    "tags": ["x", "y"],
    "geo": {"lat": 1.0, "lon": 2.0},
    "blob": base64.b64encode(b"\x00\x01").decode(),
}
EXPECTED = {
    "id": 1,
    "ts": dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC),
    "day": dt.date(2024, 5, 1),
    "name": "a",
    "score": 1.5,
    "n": 7,
    "price": decimal.Decimal("12.34"),
    "tags": ["x", "y"],
    "geo": {"lat": 1.0, "lon": 2.0},
    "blob": b"\x00\x01",
}


def _decode(body: bytes, content_type: str = "application/x-ndjson", **kw: object) -> pa.Table:
    options = kw.pop("options", STRICT)
    assert isinstance(options, DecodeOptions)
    encoding = kw.pop("content_encoding", None)
    return decode(
        body, content_type=content_type, content_encoding=encoding, schema=SCHEMA, options=options
    ).table  # type: ignore[arg-type]


def _row(table: pa.Table) -> dict[str, object]:
    rows = table.to_pylist()
    assert len(rows) == 1
    return rows[0]


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def test_ndjson_all_types_exact() -> None:
    table = _decode(json.dumps(ROW).encode() + b"\n")
    assert table.schema == SCHEMA
    assert _row(table) == EXPECTED


def test_json_array_and_single_object() -> None:
    rows = _decode(json.dumps([ROW, {**ROW, "id": 2}]).encode(), "application/json; charset=utf-8")
    assert rows.column("id").to_pylist() == [1, 2]
    assert _row(_decode(json.dumps(ROW).encode(), "application/json")) == EXPECTED


def test_gzip_body() -> None:
    body = gzip.compress(json.dumps(ROW).encode())
    assert _row(_decode(body, content_encoding="gzip")) == EXPECTED


def test_arrow_stream_with_widening_and_missing_nullable() -> None:
    incoming = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),  # int -> long
            "score": pa.array([1.5, None], pa.float32()),  # float -> double
            "ts": pa.array([0, 1000], pa.timestamp("ms", tz="UTC")),  # ms -> us
        }
    )
    table = _decode(_ipc(incoming), "application/vnd.apache.arrow.stream")
    assert table.schema == SCHEMA
    assert table.column("id").to_pylist() == [1, 2]
    assert table.column("score").to_pylist() == [1.5, None]
    assert table.column("name").to_pylist() == [None, None]
    assert table.column("ts").to_pylist()[1] == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)


def test_missing_nullable_json_fields_are_null() -> None:
    assert _row(_decode(b'{"id": 5}\n'))["name"] is None


def test_int_widens_to_double_in_json() -> None:
    assert _row(_decode(b'{"id": 5, "score": 3}\n'))["score"] == 3.0


def test_unknown_fields_dropped_when_configured() -> None:
    table = _decode(b'{"id": 5, "extra": 1}\n', options=DecodeOptions(unknown_fields="drop"))
    assert table.schema == SCHEMA
    incoming = pa.table({"id": [1], "extra": ["x"]})
    assert conform(incoming, SCHEMA, DecodeOptions(unknown_fields="drop")).table.num_rows == 1


@pytest.mark.parametrize(
    ("body", "content_type", "error", "row", "field"),
    [
        (b'{"id": 1}\n{"id": "x"}\n', "application/x-ndjson", Unprocessable, 2, "id"),
        (b'{"id": 1}\n{"id": 2, "zz": 1}\n', "application/x-ndjson", Unprocessable, 2, "zz"),
        (b'{"id": 1}\n{"name": "b"}\n', "application/x-ndjson", Unprocessable, 2, "id"),
        (b'{"id": null}\n', "application/x-ndjson", Unprocessable, 1, "id"),
        (b'{"id": 1.5}\n', "application/x-ndjson", Unprocessable, 1, "id"),
        (b'{"id": 1, "n": 3000000000}\n', "application/x-ndjson", Unprocessable, 1, "n"),
        (b'{"id": 1, "price": 1.234}\n', "application/x-ndjson", Unprocessable, 1, "price"),
        (b'{"id": 1, "day": "May 1"}\n', "application/x-ndjson", Unprocessable, 1, "day"),
        (b'{"id": 1, "geo": {"lat": 1, "alt": 2}}\n', "application/x-ndjson", Unprocessable, 1, "geo.alt"),
        (b'{"id": 1, "tags": ["a", 2]}\n', "application/x-ndjson", Unprocessable, 1, "tags[1]"),
        (b'{"id": 1, "blob": "not base64!"}\n', "application/x-ndjson", Unprocessable, 1, "blob"),
        (b'{"id": 1}\n{bad json\n', "application/x-ndjson", BadRequest, 2, None),
        (b'[{"id": 1}, 5]', "application/json", Unprocessable, 2, None),
        (b'[{"id": 1}, {"id": true}]', "application/json", Unprocessable, 2, "id"),
    ],
)
def test_bad_rows_name_row_and_field(
    body: bytes, content_type: str, error: type[IngestError], row: int, field: str | None
) -> None:
    with pytest.raises(error) as caught:
        _decode(body, content_type)
    assert caught.value.detail.get("row") == row
    assert caught.value.detail.get("field") == field
    assert f"row {row}" in caught.value.message


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "error"),
    [
        (b"", "application/x-ndjson", None, BadRequest),
        (b"[]", "application/json", None, BadRequest),
        (b"not json", "application/json", None, BadRequest),
        (b'{"id": 1}', "text/csv", None, UnsupportedMediaType),
        (b'{"id": 1}', None, None, UnsupportedMediaType),
        (b'{"id": 1}', "application/x-ndjson", "br", UnsupportedMediaType),
        (b"garbage", "application/x-ndjson", "gzip", BadRequest),
        (b"garbage", "application/vnd.apache.arrow.stream", None, BadRequest),
    ],
)
def test_malformed_bodies(
    body: bytes, content_type: str | None, encoding: str | None, error: type[IngestError]
) -> None:
    with pytest.raises(error):
        decode(body, content_type=content_type, content_encoding=encoding, schema=SCHEMA, options=STRICT)


def test_gzip_bomb_stops_at_limit() -> None:
    bomb = gzip.compress(b" " * (10 * 1024 * 1024))
    with pytest.raises(PayloadTooLarge):
        decode(bomb, content_type="application/x-ndjson", content_encoding="gzip", schema=SCHEMA,
               options=DecodeOptions(max_bytes=1024 * 1024))  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "error_field"),
    [
        (pa.table({"id": pa.array([1.5])}), "id"),  # double -> long is narrowing
        (pa.table({"id": pa.array([1]), "n": pa.array([1], pa.int64())}), "n"),  # long -> int narrowing
        (pa.table({"name": pa.array(["a"])}), "id"),  # required column missing
        (pa.table({"id": pa.array([1, None])}), "id"),  # null in a non-nullable column
        (pa.table({"id": pa.array([1]), "zz": pa.array([1])}), "zz"),  # unknown column
    ],
)
def test_arrow_stream_rejections(incoming: pa.Table, error_field: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        _decode(_ipc(incoming), "application/vnd.apache.arrow.stream")
    assert caught.value.detail["field"] == error_field


def test_arrow_null_in_required_column_names_row() -> None:
    with pytest.raises(Unprocessable) as caught:
        _decode(_ipc(pa.table({"id": pa.array([1, 2, None])})), "application/vnd.apache.arrow.stream")
    assert caught.value.detail["row"] == 3


@pytest.mark.parametrize(
    ("source", "target", "safe"),
    [
        (pa.int8(), pa.int64(), True),
        (pa.uint32(), pa.int64(), True),
        (pa.uint64(), pa.int64(), False),
        (pa.int64(), pa.int32(), False),
        (pa.int32(), pa.float64(), True),
        (pa.float64(), pa.float32(), False),
        (pa.large_string(), pa.string(), True),
        (pa.timestamp("s", tz="UTC"), pa.timestamp("us", tz="UTC"), True),
        (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), False),
        (pa.decimal128(5, 2), pa.decimal128(10, 2), True),
        (pa.decimal128(10, 4), pa.decimal128(10, 2), False),
        (pa.list_(pa.int32()), pa.list_(pa.int64()), True),
        (pa.string(), pa.int64(), False),
        (pa.null(), pa.int64(), True),
    ],
)
def test_safe_widening(source: pa.DataType, target: pa.DataType, safe: bool) -> None:
    assert is_safe_widening(source, target) is safe


@pytest.mark.parametrize("price", ["100000000", '"100000000"', "-100000000.5", "1e9", '"123456789012"'])
def test_a_decimal_with_more_integer_digits_than_its_precision_is_refused_in_json(price: str) -> None:
    # Arrow's JSON reader does not enforce decimal(10,2)'s 8 integer digits; Parquet would store it corrupt.
    with pytest.raises(Unprocessable) as caught:
        _decode(b'{"id": 1, "price": %s}\n' % price.encode())
    assert caught.value.detail == {"row": 1, "field": "price"}


def test_a_decimal_that_overflows_its_precision_is_refused_in_an_arrow_stream() -> None:
    wide = pa.array([decimal.Decimal("99999999.99"), decimal.Decimal("123456789.00")], pa.decimal128(12, 2))
    narrow = wide.cast(pa.decimal128(10, 2), safe=False)  # an IPC stream can carry such values
    incoming = pa.table({"id": pa.array([1, 2], pa.int64()), "price": narrow})
    with pytest.raises(BadRequest, match="precision"):  # the stream's full validation refuses it
        _decode(_ipc(incoming), "application/vnd.apache.arrow.stream")
    assert _decode(b'{"id": 1, "price": -99999999.99}\n').column("price").to_pylist() == [
        decimal.Decimal("-99999999.99")
    ]


RESCUING = DecodeOptions(unknown_fields="rescue")
RESCUE_SCHEMA = SCHEMA.append(pa.field("_rescued_data", pa.string()))


def _rescue(body: bytes, content_type: str = "application/x-ndjson") -> list[dict[str, object]]:
    table = decode(
        body, content_type=content_type, content_encoding=None, schema=RESCUE_SCHEMA, options=RESCUING
    ).table
    assert table.schema == RESCUE_SCHEMA
    return table.to_pylist()


def test_rows_that_fit_are_written_as_sent_with_nothing_rescued() -> None:
    rows = _rescue(json.dumps(ROW).encode() + b"\n")
    assert rows == [{**EXPECTED, "_rescued_data": None}]


def test_unknown_fields_and_misfit_nullable_values_are_rescued_as_json_in_the_same_rows() -> None:
    body = b"\n".join(
        json.dumps(row).encode()
        for row in (
            {"id": 1, "name": "ok"},
            {
                "id": 2,
                "n": "seven",
                "extra": {"a": [1, 2.5]},
                "price": 12.345,
            },  # misfits and an unknown field
            {
                "id": 3,
                "geo": {"lat": 1.0, "alt": 9},
                "day": "not a date",
            },  # a nested unknown key: whole value
        )
    )
    rows = _rescue(body)
    assert [r["id"] for r in rows] == [1, 2, 3] and rows[0]["name"] == "ok"
    assert rows[0]["_rescued_data"] is None
    assert (rows[1]["n"], rows[1]["price"]) == (None, None)
    assert json.loads(str(rows[1]["_rescued_data"])) == {
        "extra": {"a": [1, 2.5]},
        "n": "seven",
        "price": 12.345,
    }
    assert (rows[2]["geo"], rows[2]["day"]) == (None, None)
    assert json.loads(str(rows[2]["_rescued_data"])) == {"geo": {"lat": 1.0, "alt": 9}, "day": "not a date"}


def test_a_rescued_body_keeps_its_exact_decimals_and_its_json_array_form() -> None:
    rows = _rescue(json.dumps([{"id": 1, "price": 99999999.99, "x": 1}]).encode(), "application/json")
    assert rows[0]["price"] == decimal.Decimal("99999999.99") and rows[0]["_rescued_data"] == '{"x": 1}'


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"id": "one"}\n', Unprocessable, "id"),  # a non-nullable column's value cannot be rescued
        (b'{"name": "no id"}\n', Unprocessable, "id"),
        (b'{"id": 1}\n{"id": 2,\n', BadRequest, None),  # not JSON stays a 400
    ],
)
def test_what_cannot_be_rescued_is_refused_whole(
    body: bytes, status: type[Exception], field: str | None
) -> None:
    with pytest.raises(status) as caught:
        _rescue(body)
    assert getattr(caught.value, "detail", {}).get("field") == field


def test_an_arrow_stream_rescues_unknown_and_uncastable_nullable_columns() -> None:
    incoming = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "n": pa.array(["x", None]),  # string into an int column: no safe cast
            "zz": pa.array([True, None]),
        }
    )
    rows = _rescue(_ipc(incoming), "application/vnd.apache.arrow.stream")
    assert [(r["id"], r["n"]) for r in rows] == [(1, None), (2, None)]
    assert json.loads(str(rows[0]["_rescued_data"])) == {"zz": True, "n": "x"}
    assert rows[1]["_rescued_data"] is None  # nothing of row 2 was lost: its values were null


def test_rescue_needs_the_column_in_the_table() -> None:
    with pytest.raises(Unprocessable, match="_rescued_data"):
        decode(
            b'{"id": 1}\n',
            content_type="application/x-ndjson",
            content_encoding=None,
            schema=SCHEMA,
            options=RESCUING,
        )


def test_ndjson_rows_end_at_newlines_only_even_on_the_slow_paths() -> None:
    # A JSON string may hold U+2028 as it is; str.splitlines() would have cut the row there.
    text = '{"id": 1, "name": "a\u2028b", "zz": 1}\n{"id": 2}\n'
    rows = _rescue(text.encode())
    assert rows[0]["name"] == "a\u2028b" and rows[0]["_rescued_data"] == '{"zz": 1}'
    with pytest.raises(Unprocessable) as caught:  # and a diagnosis names the right row
        _decode('{"id": 1, "name": "a\u2028b"}\n{"id": "two"}\n'.encode())
    assert caught.value.detail["row"] == 2


@pytest.mark.parametrize(
    ("body", "content_type", "encoding"),
    [
        (b'{"id": 1, "name": "\xf50"}\n', "application/x-ndjson", None),
        (b'[{"id": 1, "name": "a\xc3"}]', "application/json", None),
        (gzip.compress(b'{"id": 1, "name": "\xf50"}\n'), "application/x-ndjson", "gzip"),
    ],
)
@pytest.mark.parametrize("invalid_rows", ["reject", "deadLetter"])
def test_invalid_utf8_inside_a_json_string_is_refused_not_committed(
    body: bytes, content_type: str, encoding: str | None, invalid_rows: str
) -> None:
    # Arrow's JSON reader let these through; the table then failed every reader with UnicodeDecodeError.
    options = DecodeOptions(invalid_rows=invalid_rows)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="not UTF-8"):
        decode(body, content_type=content_type, content_encoding=encoding, schema=SCHEMA, options=options)
