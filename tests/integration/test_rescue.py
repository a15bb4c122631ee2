"""writer.unknownFields: rescue, over real HTTP: two writer replicas on SeaweedFS with the DynamoDB lease."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from tests.helpers import WriterProcess, event, ndjson, post, settings_file, start_writers

pytestmark = pytest.mark.integration


def test_two_replicas_rescue_what_fits_no_column_in_the_same_commit(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> None:
    config = settings_file(
        tmp_path, writer={"unknownFields": "rescue"}, locking={"kind": "dynamodb", "tableName": lock_table}
    )
    a, b = start_writers(2, s3_uri, config, cloud_env, tmp_path, writers)  # the first adds the column
    table = DeltaTable(s3_uri, storage_options=cloud_env)
    assert table.schema().to_arrow().field("_rescued_data").nullable
    before = table.version()
    body = ndjson([event(1), event(2, colour="red", count="many"), event(3, geo={"lat": 1.0, "alt": 2})])
    assert post(a.ingest_url, body).body["rows"] == 3
    assert post(b.ingest_url, ndjson([event(4, extra=[1, 2])])).body["rows"] == 1
    assert post(b.ingest_url, ndjson([event(5, id="five")])).status == 422  # a non-nullable misfit
    table = DeltaTable(s3_uri, storage_options=cloud_env)
    assert table.version() == before + 2  # each request one commit, its rescued rows in it
    frame = pl.from_arrow(table.to_pyarrow_table()).sort("id")
    assert frame["id"].to_list() == [1, 2, 3, 4]
    rescued = [None if v is None else json.loads(v) for v in frame["_rescued_data"].to_list()]
    assert rescued == [
        None,
        {"colour": "red", "count": "many"},
        {"geo": {"lat": 1.0, "alt": 2}},
        {"extra": [1, 2]},
    ]
    assert frame["count"].to_list()[1] is None and frame["geo"].to_list()[2] is None
    read = pl.read_delta(s3_uri, storage_options=cloud_env)  # polars reads it directly too
    assert read.height == 4 and "_rescued_data" in read.columns
