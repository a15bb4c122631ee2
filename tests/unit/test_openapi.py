"""The OpenAPI document: valid 3.1, committed without drift, covering every route the writer serves."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest
from openapi_spec_validator import validate

from deltaingest import __version__
from deltaingest.config import WriterSpec, effective_table, load_settings
from deltaingest.ingest.openapi import field_schema, openapi_document
from deltaingest.ingest.server import IngestServer
from deltaingest.metrics import Metrics
from deltaingest.table.schema import arrow_schema

ROOT = Path(__file__).resolve().parents[2]


DOCUMENTS = {"events.yaml": "openapi.json", "otlp-logs.yaml": "openapi-otlp-logs.json"}


def example_document(example: str = "events.yaml", **overrides: Any) -> dict[str, Any]:
    settings = load_settings(ROOT / "examples" / example)
    options = {
        "policy": settings.writer,
        "auth": False,
        "version": __version__,
        "otlp": settings.source.otlp is not None,
    }
    columns = effective_table(settings.table, settings.source).columns
    return openapi_document(arrow_schema(columns), **(options | overrides))


@pytest.mark.parametrize("example", DOCUMENTS)
def test_the_committed_documents_match_the_code(example: str) -> None:
    path = ROOT / "docs" / DOCUMENTS[example]
    assert json.loads(path.read_text()) == example_document(example), f"{path} drifted: run `make generate`"


@pytest.mark.parametrize("example", DOCUMENTS)
@pytest.mark.parametrize("auth", [False, True])
def test_the_document_is_valid_openapi_3_1(auth: bool, example: str) -> None:
    document = example_document(example, auth=auth)
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"
    ingest = document["paths"]["/v1/ingest"]["post"]["responses"]
    assert ("401" in ingest) is auth and document["security"] == ([{"bearer": []}] if auth else [])


@pytest.mark.parametrize("example", DOCUMENTS)
def test_every_route_the_writer_serves_is_documented_and_nothing_else(example: str) -> None:
    table = SimpleNamespace(uri="/nowhere", options={}, schema=pa.schema([pa.field("id", pa.int64())]))
    otlp = load_settings(ROOT / "examples" / example).source.otlp
    server = IngestServer(
        spec=WriterSpec(),
        table=table,
        group=None,
        latest=None,
        metrics=Metrics(),
        auth_token=None,
        otlp_logs=otlp,
    )  # type: ignore[arg-type]
    try:
        served = {
            (route.method.lower(), route.resource.canonical.replace("{producer}", "{producerId}"))
            for route in server.app().router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
    finally:
        server.close()
    paths = example_document(example)["paths"]
    documented = {(method, path) for path, item in paths.items() for method in item}
    assert served == documented


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (
            pa.field("n", pa.int32(), nullable=False),
            {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
        ),
        (pa.field("n", pa.float64()), {"type": ["number", "null"]}),
        (
            pa.field("ts", pa.timestamp("us", "UTC"), nullable=False),
            {"type": "string", "format": "date-time"},
        ),
        (pa.field("b", pa.binary(), nullable=False), {"type": "string", "contentEncoding": "base64"}),
        (
            pa.field("tags", pa.list_(pa.string()), nullable=False),
            {"type": "array", "items": {"type": ["string", "null"]}},
        ),
    ],
)
def test_columns_map_to_json_schema(field: pa.Field, expected: dict[str, Any]) -> None:
    assert field_schema(field) == expected


def test_a_decimal_takes_strings_and_numbers_within_its_precision() -> None:
    schema = field_schema(pa.field("price", pa.decimal128(10, 2)))
    assert schema["type"] == ["string", "number", "null"]
    assert schema["pattern"] == r"^-?\d{1,8}(\.\d{1,2})?$"
    assert (schema["exclusiveMinimum"], schema["exclusiveMaximum"]) == (-(10**8), 10**8)
