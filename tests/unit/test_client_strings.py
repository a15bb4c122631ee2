"""Every string a client sends, checked before use: an answer of 4xx naming what is wrong, never a 500.

Each case here was a 500, a crash of the decoder, a commit that failed for the whole group, or rows
silently dropped on 35e928b (issue 20).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import itertools
import json
from collections.abc import Callable

import pyarrow as pa
import pytest

from deltaingest.ingest.decode import DecodeOptions, decode
from deltaingest.ingest.errors import BadRequest, IngestError, Unprocessable
from deltaingest.protocol import ARROW_STREAM_TYPE, RESCUED_COLUMN

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("day", pa.date32()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("user", pa.string()),
        pa.field("geo", pa.struct([("lat", pa.float64()), ("lon", pa.float64())])),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("when", pa.list_(pa.struct([("at", pa.timestamp("us", tz="UTC"))]))),
        pa.field(RESCUED_COLUMN, pa.string()),
    ]
)
EVERY_OPTION = [
    DecodeOptions(unknown_fields=u, invalid_rows=i, schema_evolution=e)  # type: ignore[arg-type]
    for u, i, e in itertools.product(
        ["reject", "drop", "rescue"], ["reject", "deadLetter"], ["none", "addColumns"]
    )
]
FAR = 2**31 - 1  # days: the year 5,881,580


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _table(**columns: pa.Array) -> pa.Table:
    return pa.table({"id": pa.array([1, 2], pa.int64()), **columns})


def _decode(data: bytes, options: DecodeOptions, **kw: str) -> tuple[pa.Table, list[str]]:
    decoded = decode(data, content_type=kw.get("content_type", ARROW_STREAM_TYPE),
                     content_encoding=kw.get("content_encoding"), schema=SCHEMA, options=options)  # fmt: skip
    return decoded.table, [row.raw for row in decoded.dead]


def _renamed(table: pa.Table, name: bytes, to: bytes) -> bytes:
    """An Arrow stream with one name's bytes replaced by others of the same length (a schema edit)."""
    data = _ipc(table)
    assert data.count(name) == 1
    return data.replace(name, to)


NOT_UTF8_NAMES = {
    "a column": (_renamed(_table(user=pa.array(["a", "b"])), b"user", b"\xe9zer"), "\\xe9zer"),
    "a struct field": (
        _renamed(_table(geo=pa.array([{"lat": 1.0, "lon": 2.0}] * 2)), b"lon", b"l\xffn"),
        "geo.l\\xffn",
    ),
    "a list item": (
        _renamed(
            _table(tags=pa.array([["a"]] * 2, pa.list_(pa.field("elem", pa.string())))), b"elem", b"\xe9lem"
        ),
        "tags.\\xe9lem",
    ),
    "a dictionary column": (
        _renamed(_table(user=pa.array(["a", "b"]).dictionary_encode()), b"user", b"\xe9zer"),
        "\\xe9zer",
    ),
}


@pytest.mark.parametrize("options", EVERY_OPTION, ids=str)
@pytest.mark.parametrize("case", NOT_UTF8_NAMES, ids=str)
def test_a_field_name_that_is_not_utf8_is_a_400_naming_its_path_at_any_depth(
    case: str, options: DecodeOptions
) -> None:
    data, path = NOT_UTF8_NAMES[case]
    with pytest.raises(BadRequest) as caught:
        _decode(data, options)
    assert caught.value.message == f"field '{path}': the name is not UTF-8"
    assert caught.value.detail["field"] == path
    json.dumps(caught.value.message, ensure_ascii=False).encode()  # shown as text any JSON client reads


NOT_UTF8_ELSEWHERE: dict[str, Callable[[], bytes]] = {
    "schema metadata": lambda: _ipc(_table().replace_schema_metadata({b"pandas": b"\xe9"})),
    "field metadata": lambda: _ipc(
        pa.table(
            [pa.array([1], pa.int64())],
            schema=pa.schema([pa.field("id", pa.int64(), metadata={b"\xff": b""})]),
        )
    ),
    "dictionary values": lambda: _renamed(
        _table(user=pa.array(["ab", "cd"]).dictionary_encode()), b"ab", b"\xe9\xff"
    ),
    "a time zone": lambda: _ipc(_table(ts=pa.array([0, 1], pa.timestamp("us", tz="Not/AZone")))),
    "a time zone in an unknown column": lambda: _ipc(
        _table(z=pa.array([0, 1], pa.timestamp("us", tz="Mars/Olympus")))
    ),
}


@pytest.mark.parametrize("options", EVERY_OPTION, ids=str)
@pytest.mark.parametrize("case", NOT_UTF8_ELSEWHERE, ids=str)
def test_metadata_dictionary_values_and_time_zones_arrow_cannot_use_are_a_400(
    case: str, options: DecodeOptions
) -> None:
    with pytest.raises(BadRequest):
        _decode(NOT_UTF8_ELSEWHERE[case](), options)


OUT_OF_RANGE = {
    "a date": _table(day=pa.array([0, FAR], pa.date32())),
    "a timestamp": _table(ts=pa.array([0, 2**62], pa.timestamp("us", tz="UTC"))),
    "a timestamp in a struct in a list": _table(
        when=pa.array(
            [[{"at": 0}], [{"at": 0}, {"at": -(2**62)}]],
            pa.list_(pa.struct([("at", pa.timestamp("us", tz="UTC"))])),
        )
    ),
    "a new date column": _table(born=pa.array([0, FAR], pa.date32())),
}


@pytest.mark.parametrize("options", EVERY_OPTION, ids=str)
@pytest.mark.parametrize("case", OUT_OF_RANGE, ids=str)
def test_a_date_or_time_past_the_year_9999_is_refused_row_by_row(case: str, options: DecodeOptions) -> None:
    """delta-rs panics on such a date in its statistics (the commit, and its whole group, failed); JSON's
    ISO strings cannot express one, so the Arrow path refuses what the JSON path could not send."""
    data = _ipc(OUT_OF_RANGE[case])
    new_column = case == "a new date column"
    if new_column and not (options.schema_evolution == "addColumns" or options.unknown_fields != "reject"):
        with pytest.raises(Unprocessable, match="unknown field"):
            _decode(data, options)
        return
    if new_column and options.schema_evolution != "addColumns":
        table, dead = _decode(data, options)  # dropped, or rescued as text: nothing out of range is written
        assert table.num_rows == 2 and not dead
        return
    if options.invalid_rows == "reject":
        with pytest.raises(Unprocessable, match=r"row 2, field .*outside the years 1 to 9999"):
            _decode(data, options)
        return
    table, dead = _decode(data, options)
    assert table.column("id").to_pylist() == [1]
    assert len(dead) == 1 and json.loads(dead[0])["id"] == 2


EXTREME_UNKNOWN = {
    "timestamp": pa.array([0, 2**62], pa.timestamp("us")),
    "nanoseconds before 1677": pa.array([0, -(2**63) + 1], pa.timestamp("ns")),
    "date": pa.array([0, FAR], pa.date32()),
    "duration": pa.array([0, 2**62], pa.duration("s")),
    "timestamp in a struct": pa.array([{"a": 0}, {"a": 2**62}], pa.struct([("a", pa.timestamp("s"))])),
    "timestamps in a map": pa.array([[("k", 0)], [("k", 2**62)]], pa.map_(pa.string(), pa.timestamp("s"))),
}


@pytest.mark.parametrize("case", EXTREME_UNKNOWN, ids=str)
def test_an_unknown_column_python_cannot_hold_is_rescued_as_json_text(case: str) -> None:
    table, _ = _decode(_ipc(_table(z=EXTREME_UNKNOWN[case])), DecodeOptions(unknown_fields="rescue"))
    rescued = [json.loads(text) for text in table.column(RESCUED_COLUMN).to_pylist()]
    assert [list(row) for row in rescued] == [["z"], ["z"]]


@pytest.mark.parametrize("case", EXTREME_UNKNOWN, ids=str)
def test_a_dead_row_python_cannot_hold_is_shown_as_json_text(case: str) -> None:
    incoming = pa.table({"id": pa.array([1, None], pa.int64()), "z": EXTREME_UNKNOWN[case]})
    table, dead = _decode(_ipc(incoming), DecodeOptions(unknown_fields="drop", invalid_rows="deadLetter"))
    assert table.column("id").to_pylist() == [1]
    assert len(dead) == 1 and json.loads(dead[0])["id"] is None


@pytest.mark.parametrize(
    "column",
    [
        pa.RunEndEncodedArray.from_arrays(pa.array([2], pa.int32()), pa.array(["x"])),
        pa.array(["a", "b"], pa.string_view()),
    ],
    ids=["run-end encoded", "string view"],
)
def test_a_dead_row_of_a_type_arrow_cannot_take_from_is_still_set_apart(column: pa.Array) -> None:
    incoming = pa.table({"id": pa.array([1, None], pa.int64()), "z": column})
    table, dead = _decode(_ipc(incoming), DecodeOptions(unknown_fields="drop", invalid_rows="deadLetter"))
    assert table.num_rows == 1 and json.loads(dead[0]) == {"id": None, "z": column.to_pylist()[1]}


@pytest.mark.parametrize("content_type", [ARROW_STREAM_TYPE, "application/x-ndjson"])
def test_rescued_nan_infinity_and_huge_numbers_are_strict_json(content_type: str) -> None:
    """Python's json writes NaN and Infinity, which are no JSON: strict readers refused the rescued text."""
    if content_type == ARROW_STREAM_TYPE:
        data = _ipc(_table(z=pa.array([float("nan"), float("-inf")])))
        expected = ["NaN", "-Infinity"]
    else:
        data = b'{"id": 1, "z": 1e999}\n{"id": 2, "z": -1e999}\n'  # exact decimals, no float holds them
        expected = ["1E+999", "-1E+999"]
    table, _ = _decode(data, DecodeOptions(unknown_fields="rescue"), content_type=content_type)

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    texts = table.column(RESCUED_COLUMN).to_pylist()
    assert [json.loads(text, parse_constant=refuse)["z"] for text in texts] == expected


def test_every_member_of_a_multi_member_gzip_body_is_decoded() -> None:
    """RFC 1952 allows members one after another (``cat a.gz b.gz``): the rows after the first member were
    silently dropped, acknowledged as fewer rows than sent."""
    body = gzip.compress(b'{"id": 1}\n') + gzip.compress(b'{"id": 2}\n') + gzip.compress(b"")
    table, _ = _decode(body, DecodeOptions(), content_type="application/x-ndjson", content_encoding="gzip")
    assert table.column("id").to_pylist() == [1, 2]


@pytest.mark.parametrize("trailer", [b"\x00\x00\x00\x00", b"{}", b"\x1f"])
def test_bytes_after_the_gzip_data_are_a_400(trailer: bytes) -> None:
    body = gzip.compress(b'{"id": 1}\n') + trailer
    with pytest.raises(BadRequest, match="gzip"):
        _decode(body, DecodeOptions(), content_type="application/x-ndjson", content_encoding="gzip")


def test_a_multi_member_body_inflating_past_the_limit_is_refused() -> None:
    member = gzip.compress(b'{"id": 1}\n' * 1000)
    options = DecodeOptions(max_bytes=25_000)
    with pytest.raises(IngestError) as caught:
        _decode(member * 3, options, content_type="application/x-ndjson", content_encoding="gzip")
    assert caught.value.status == 413


def test_the_ts_values_still_in_range_are_written_as_sent() -> None:
    first, last = (
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    )
    table, _ = _decode(
        _ipc(_table(ts=pa.array([first, last], pa.timestamp("us", tz="UTC")))), DecodeOptions()
    )
    assert table.column("ts").to_pylist() == [first, last]
