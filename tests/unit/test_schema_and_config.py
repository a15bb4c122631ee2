"""Settings model, type parsing and storage options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pydantic import ValidationError

from deltaingest.config import Settings, dead_letter_policies, effective_table, load_settings
from deltaingest.delta_types import SchemaError, parse_type, type_name
from deltaingest.ingest.service import open_dead_letters
from deltaingest.maintenance.tables import kept_tables
from deltaingest.table.hot import locate_dead_letters
from deltaingest.table.schema import arrow_schema, normalize
from deltaingest.table.storage import parse_key_values, redact, secret_values, storage_options


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("long", pa.int64()),
        ("INTEGER", pa.int32()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("timestamp_ntz", pa.timestamp("us")),
        ("decimal(10, 2)", pa.decimal128(10, 2)),
        ("array<string>", pa.list_(pa.string())),
        ("struct<a:int, b:array<date>>", pa.struct([("a", pa.int32()), ("b", pa.list_(pa.date32()))])),
    ],
)
def test_parse_type(text: str, expected: pa.DataType) -> None:
    assert parse_type(text) == expected


@pytest.mark.parametrize(
    "text", ["varchar", "decimal(40,2)", "decimal(5,6)", "array<long", "struct<a>", "long x"]
)
def test_parse_type_rejects(text: str) -> None:
    with pytest.raises(SchemaError):
        parse_type(text)


@pytest.mark.parametrize("text", ["long", "decimal(10,2)", "array<string>", "struct<a:int,b:array<date>>"])
def test_type_name_round_trips(text: str) -> None:
    assert parse_type(type_name(parse_type(text))) == parse_type(text)


def test_normalize_maps_view_types() -> None:
    schema = pa.schema([pa.field("s", pa.string_view()), pa.field("l", pa.large_list(pa.large_string()))])
    assert normalize(schema) == pa.schema([pa.field("s", pa.string()), pa.field("l", pa.list_(pa.string()))])


def test_settings_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "table:\n  schema:\n    - {name: id, type: long, nullable: false}\n    - {name: d, type: date}\n"
        "  partitionBy: [d]\nwriter:\n  batching: {maxRows: 10}\n  unknownFields: drop\n"
        "locking: {kind: dynamodb, tableName: locks}\n"
    )
    settings = load_settings(path, {"table": {"uri": "/x"}, "writer": {"port": 1}})
    assert settings.table.uri == "/x"
    assert settings.table.partition_by == ["d"]
    assert settings.writer.batching.max_rows == 10
    assert settings.writer.port == 1
    assert settings.writer.unknown_fields == "drop"
    assert arrow_schema(settings.table.columns).field("id").nullable is False
    assert settings.locking.table_name == "locks"


@pytest.mark.parametrize(
    "data",
    [
        {"table": {"schema": [{"name": "a", "type": "long"}, {"name": "a", "type": "long"}]}},
        {"table": {"schema": [{"name": "a", "type": "long"}], "partitionBy": ["b"]}},
        {"table": {"schema": [{"name": "a", "type": "varchar"}]}},
        {"writer": {"unknownFields": "keep"}},
        {"writer": {"batching": {"maxRows": 0}}},
        {"writer": {"nope": 1}},
        {"writer": {"invalidRows": "deadLetter"}},  # no dead-letter table
        {"writer": {"invalidRows": "drop"}},
    ],
)
def test_bad_settings_rejected(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate(data)


def test_storage_options_from_environment() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
    }
    options = storage_options("s3://b/t", overrides={"AWS_REGION": "eu-west-1"}, environ=env)
    assert options == {**env, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "eu-west-1"}
    assert storage_options("/local/table", environ=env) == {}


def test_redact_hides_credentials() -> None:
    shown = redact(
        {"AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "k", "AWS_SESSION_TOKEN": "t", "AWS_REGION": "r"}
    )
    assert shown == {"AWS_SECRET_ACCESS_KEY": "***", "AWS_ACCESS_KEY_ID": "***", "AWS_SESSION_TOKEN": "***",
                     "AWS_REGION": "r"}  # fmt: skip


def test_secret_values_are_the_values_redact_hides() -> None:
    options = {
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SESSION_TOKEN": "",
        "AWS_REGION": "r",
    }
    assert secret_values(options) == ["s", "k"]


def test_parse_key_values() -> None:
    assert parse_key_values(["a=b", "c=d=e"]) == {"a": "b", "c": "d=e"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_key_values(["novalue"])


def test_shipped_examples_validate() -> None:
    examples = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        settings = load_settings(path)
        columns = effective_table(settings.table, settings.source).columns
        assert arrow_schema(columns).names  # every example declares (or generates) a schema that parses


def test_dead_letter_table_is_refused_inside_the_table(tmp_path: Path) -> None:
    table = str(tmp_path / "events")
    for inside in (table, f"{table}/_dead"):
        settings = Settings.model_validate(
            {"table": {"uri": table}, "writer": {"invalidRows": "deadLetter", "deadLetter": {"uri": inside}}}
        )
        with pytest.raises(ValueError, match="must be a table of its own"):
            locate_dead_letters(settings)
    assert not (tmp_path / "events").exists()  # nothing created


def test_an_existing_dead_letter_table_needs_the_dead_letter_columns(tmp_path: Path) -> None:
    other = str(tmp_path / "other")
    DeltaTable.create(other, pa.schema([pa.field("id", pa.int64())]))
    settings = Settings.model_validate(
        {
            "table": {"uri": str(tmp_path / "t")},
            "writer": {"invalidRows": "deadLetter", "deadLetter": {"uri": other}},
        }
    )
    located = locate_dead_letters(settings)
    assert located == (other, {})
    with pytest.raises(ValueError, match="without the dead-letter columns"):
        open_dead_letters(*located)


def _dead_letter_settings(tmp_path: Path, **sections: Any) -> Settings:
    dead_letter = {"uri": str(tmp_path / "dead"), **sections.pop("dead_letter", {})}
    return Settings.model_validate(
        {
            "table": {"uri": str(tmp_path / "t")},
            "writer": {"invalidRows": "deadLetter", "deadLetter": dead_letter},
            **sections,
        }
    )


def test_the_dead_letter_table_is_kept_with_the_tables_policies_and_its_own_retention(tmp_path: Path) -> None:
    settings = _dead_letter_settings(
        tmp_path,
        dead_letter={"retainHours": 24},
        compaction={"zOrderBy": ["id"], "minSmallFiles": 4},
        vacuum={"retainHours": 200, "keepVersions": 3},
    )
    compaction, vacuum = dead_letter_policies(settings)
    assert compaction.z_order_by == [] and compaction.min_small_files == 4  # its columns are not the table's
    assert (vacuum.retain_hours, vacuum.keep_versions) == (24, 3)
    table, dead = kept_tables(settings)
    assert (table.uri, table.dead_letters, table.vacuum.retain_hours) == (str(tmp_path / "t"), False, 200)
    assert (dead.uri, dead.dead_letters, dead.vacuum.retain_hours) == (str(tmp_path / "dead"), True, 24)
    # Without retainHours the table's retention; without dead letters only the table.
    assert (
        dead_letter_policies(_dead_letter_settings(tmp_path, vacuum={"retainHours": 200}))[1].retain_hours
        == 200
    )
    assert [k.uri for k in kept_tables(Settings.model_validate({"table": {"uri": str(tmp_path / "t")}}))] == [
        str(tmp_path / "t")
    ]


def test_a_full_vacuum_needs_an_hour_of_dead_letter_retention_too(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"writer\.deadLetter\.retainHours of at least 1"):
        _dead_letter_settings(tmp_path, dead_letter={"retainHours": 0.5}, vacuum={"full": True})
    assert (
        _dead_letter_settings(tmp_path, dead_letter={"retainHours": 0.5}).writer.dead_letter.retain_hours
        == 0.5
    )
