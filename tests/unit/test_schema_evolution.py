"""Additive schema evolution (writer.schemaEvolution: addColumns): the columns a request brings, typed from
its data, and how a group's batches are fitted to one schema at commit time. Pure functions."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pyarrow as pa
import pytest

from deltaingest.ingest.decode import DecodeOptions, decode
from deltaingest.ingest.errors import Unprocessable
from deltaingest.ingest.evolve import MAX_NEW_COLUMNS
from deltaingest.ingest.group_schema import fit_group

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])
EVOLVING = DecodeOptions(schema_evolution="addColumns")
NDJSON = "application/x-ndjson"
ARROW = "application/vnd.apache.arrow.stream"


def _decode(rows: list[dict[str, Any]] | bytes, options: DecodeOptions = EVOLVING, **kw: Any) -> pa.Table:
    body = rows if isinstance(rows, bytes) else b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    schema = kw.pop("schema", SCHEMA)
    content_type = kw.pop("content_type", NDJSON)
    decoded = decode(body, content_type=content_type, content_encoding=None, schema=schema, options=options)
    return decoded.table


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _types(table: pa.Table) -> dict[str, str]:
    return {f.name: str(f.type) for f in table.schema if f.name not in SCHEMA.names}


def test_new_fields_become_nullable_columns_typed_from_the_data_after_the_table_columns() -> None:
    table = _decode(
        [
            {"id": 1, "count": 3, "ratio": 1, "ok": True, "tag": "x", "geo": {"lat": 1.5}, "tags": ["a"]},
            {"id": 2, "ratio": 0.5, "when": "2024-05-01T10:00:00Z"},
        ]
    )
    assert table.schema.names == ["id", "name", "count", "ratio", "ok", "tag", "geo", "tags", "when"]
    assert _types(table) == {
        "count": "int64",
        "ratio": "double",  # a fraction anywhere makes the field double
        "ok": "bool",
        "tag": "string",
        "geo": "struct<lat: double>",
        "tags": "list<item: string>",
        "when": "string",  # timestamps only when asked
    }
    assert all(f.nullable for f in table.schema if f.name not in SCHEMA.names)
    assert table.column("ratio").to_pylist() == [1.0, 0.5]
    assert table.column("count").to_pylist() == [3, None]


def test_iso_date_times_become_timestamps_when_asked() -> None:
    options = DecodeOptions(schema_evolution="addColumns", infer_timestamps=True)
    table = _decode(
        [
            {"id": 1, "at": "2024-05-01T10:00:00+02:00", "local": "2024-05-01 10:00:00", "day": "2024-05-01"},
            {
                "id": 2,
                "at": "2024-05-01T10:00:00Z",
                "local": "2024-05-02T11:30",
                "mixed": "2024-05-01T10:00Z",
            },
            {"id": 3, "mixed": "2024-05-01T10:00", "nano": "2024-05-01T10:00:00.123456789Z"},
        ],
        options,
    )
    assert _types(table) == {
        "at": "timestamp[us, tz=UTC]",
        "local": "timestamp[us, tz=UTC]",  # no offset is UTC, as for existing columns (no timestamp_ntz)
        "day": "string",  # a bare date is no date-time
        "mixed": "timestamp[us, tz=UTC]",
        "nano": "string",  # nine fraction digits: a form Arrow's reader does not take
    }
    assert table.column("at").to_pylist()[0] == dt.datetime(2024, 5, 1, 8, tzinfo=dt.UTC)
    assert table.column("local").to_pylist()[1] == dt.datetime(2024, 5, 2, 11, 30, tzinfo=dt.UTC)


def test_a_field_null_in_every_row_gets_no_column_and_falls_to_unknown_fields() -> None:
    with pytest.raises(Unprocessable, match="field 'later': unknown field"):
        _decode([{"id": 1, "later": None}])
    with pytest.raises(Unprocessable, match="field 'later': unknown field"):
        _decode([{"id": 1, "later": []}, {"id": 2, "later": None}])  # an empty array has no element type
    drop = DecodeOptions(schema_evolution="addColumns", unknown_fields="drop")
    assert _decode([{"id": 1, "later": None}], drop).schema == SCHEMA


def test_a_later_value_of_another_kind_is_a_misfit_of_the_new_column() -> None:
    with pytest.raises(Unprocessable, match="row 2, field 'size': expected long"):
        _decode([{"id": 1, "size": 3}, {"id": 2, "size": "big"}])


def test_an_existing_column_keeps_its_type() -> None:
    with pytest.raises(Unprocessable, match="row 1, field 'name': expected string"):
        _decode([{"id": 1, "name": 5, "new": 1}])


def test_a_body_without_new_fields_is_decoded_as_before() -> None:
    assert _decode([{"id": 1, "name": "a"}]).schema == SCHEMA


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": 1, "ID": 2}, "differs only in case from 'id'"),
        ({"id": 1, "geo": {"lat": 1, "LAT": 2}}, "field 'geo.LAT': differs only in case from 'geo.lat'"),
        ({"id": 1, "geo": [{"a": {"x y": 1}}]}, "field 'geo.a.x y': not a column name"),
        ({"id": 1, "wide": {f"f{i}": i for i in range(1000)}}, "1001 new fields in one request"),
        ({"id": 1, "\ud800": 1}, "not valid Unicode"),
        ({"id": 1, "geo": {"\udfff": 1}}, "not valid Unicode"),
        ({"id": 1, "a b": 2}, "not a column name Delta accepts"),
        ({"id": 1, "x=1": 2}, "not a column name Delta accepts"),
        ({"id": 1, **{f"f{i}": i for i in range(MAX_NEW_COLUMNS + 1)}}, "at most 64 may be added"),
    ],
)
def test_names_delta_cannot_hold_and_too_many_columns_are_refused(row: dict[str, Any], message: str) -> None:
    with pytest.raises(Unprocessable, match=message):
        _decode([row])


def test_rescue_and_dead_letters_apply_to_the_evolved_schema() -> None:
    schema = SCHEMA.append(pa.field("_rescued_data", pa.string()))
    options = DecodeOptions(schema_evolution="addColumns", unknown_fields="rescue", invalid_rows="deadLetter")
    body = b'{"id": 1, "size": 3}\n{"id": 2, "size": "big"}\n{"id": null, "size": 4}\n'
    decoded = decode(body, content_type=NDJSON, content_encoding=None, schema=schema, options=options)
    assert decoded.table.schema.names == ["id", "name", "_rescued_data", "size"]
    assert decoded.table.column("size").to_pylist() == [3, None]
    assert json.loads(str(decoded.table.column("_rescued_data").to_pylist()[1])) == {"size": "big"}
    assert [d.row for d in decoded.dead] == [3]


def test_arrow_columns_keep_the_type_they_were_sent_with_in_delta_terms() -> None:
    incoming = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "small": pa.array([1], pa.int16()),
            "at": pa.array([1000], pa.timestamp("ms", tz="UTC")),
            "words": pa.array(["x"], pa.large_string()),
        }
    )
    table = _decode(_ipc(incoming), content_type=ARROW)
    assert _types(table) == {"small": "int16", "at": "timestamp[us, tz=UTC]", "words": "string"}
    assert table.column("at").to_pylist() == [dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)]


def test_an_arrow_column_delta_has_no_type_for_is_refused() -> None:
    incoming = pa.table({"id": pa.array([1], pa.int64()), "u": pa.array([1], pa.uint64())})
    with pytest.raises(Unprocessable, match="field 'u': a new column cannot be uint64"):
        _decode(_ipc(incoming), content_type=ARROW)


def _batch(**columns: pa.Array) -> pa.Table:
    fields = [SCHEMA.field("id"), SCHEMA.field("name")]
    arrays = [pa.array([1], pa.int64()), pa.array(["a"], pa.string())]
    for name, array in columns.items():
        fields.append(pa.field(name, array.type))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def test_a_group_commits_the_union_of_its_new_columns_the_first_batch_deciding_each_type() -> None:
    plain = _batch()
    first = _batch(size=pa.array([3], pa.int64()))
    later = _batch(size=pa.array(["big"], pa.string()))
    other = _batch(colour=pa.array(["red"], pa.string()))
    fitted = fit_group(SCHEMA, [plain, first, later, other])
    assert fitted.schema.names == ["id", "name", "size", "colour"]
    assert fitted.added == ("size", "colour")
    assert isinstance(fitted.batches[2], Unprocessable)
    assert "an earlier request of the same commit adds it as long" in fitted.batches[2].message
    tables = [b for b in fitted.batches if isinstance(b, pa.Table)]
    assert all(t.schema == fitted.schema for t in tables)
    assert [t.column("size").to_pylist() for t in tables] == [[None], [3], [None]]
    assert tables[0].column("colour").to_pylist() == [None]


def test_a_batch_decoded_before_another_replica_changed_the_table_is_fitted_or_refused() -> None:
    moved = SCHEMA.append(pa.field("size", pa.int64()))  # another replica added size: long
    assert fit_group(moved, [_batch()]).batches[0].column("size").to_pylist() == [None]  # type: ignore[union-attr]
    widened = fit_group(moved, [_batch(size=pa.array([3], pa.int32()))])
    assert widened.added == () and widened.batches[0].column("size").type == pa.int64()  # type: ignore[union-attr]
    refused = fit_group(moved, [_batch(size=pa.array(["big"], pa.string()))]).batches[0]
    assert isinstance(refused, Unprocessable) and "the table's column is long" in refused.message
    clash = fit_group(moved, [_batch(SIZE=pa.array([1], pa.int64()))]).batches[0]
    assert isinstance(clash, Unprocessable) and "differs only in case" in clash.message


def test_a_group_of_batches_in_the_table_schema_is_left_as_it_is() -> None:
    batch = _batch()
    fitted = fit_group(SCHEMA, [batch, batch])
    assert fitted.added == () and all(b is batch for b in fitted.batches)


def test_dead_rows_neither_add_nor_type_a_column() -> None:
    options = DecodeOptions(schema_evolution="addColumns", invalid_rows="deadLetter")
    body = b'{"id": 1}\n{"x": "a"}\n{"id": 2, "x": 5}\n{"id": null, "y": true}\n'
    decoded = decode(body, content_type=NDJSON, content_encoding=None, schema=SCHEMA, options=options)
    assert decoded.table.schema.names == ["id", "name", "x"]  # no y: only a dead row had it
    assert decoded.table.column("x").to_pylist() == [None, 5]  # typed by the good row: long
    assert [d.row for d in decoded.dead] == [2, 4]


def test_an_untyped_arrow_column_gets_no_column_and_falls_to_unknown_fields() -> None:
    incoming = pa.table({"id": pa.array([1], pa.int64()), "later": pa.nulls(1)})
    with pytest.raises(Unprocessable, match="unknown field"):
        _decode(_ipc(incoming), content_type=ARROW)
    drop = DecodeOptions(schema_evolution="addColumns", unknown_fields="drop")
    assert _decode(_ipc(incoming), drop, content_type=ARROW).schema == SCHEMA
