"""Property over real HTTP: no body or header gets anything but 200/400/408/413/415/422 with a JSON error,
and the table on SeaweedFS holds exactly the rows of the 200 answers (dead-lettering: the good rows, and the
dead-letter table the others)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from deltaingest.ingest.decode import DecodeOptions
from tests.helpers import EVENT_ARROW_SCHEMA as SCHEMA
from tests.helpers import WriterProcess, post, settings_file, start_writers
from tests.mutations import Body, bodies, found_examples
from tests.properties import budget

pytestmark = pytest.mark.integration

ANSWERS = {200, 400, 408, 413, 415, 422}
MAX_BYTES = 4 * 1024 * 1024
_sequences = itertools.count()


@st.composite
def identity_headers(draw: st.DrawFn) -> dict[str, str]:
    """Exactly-once headers, sane and odd."""
    kind = draw(st.sampled_from(["none", "none", "valid", "bad-sequence", "one-only", "bad-producer"]))
    if kind == "none":
        return {}
    if kind == "valid":
        return {"X-Producer-Id": "prop", "X-Sequence": str(next(_sequences))}
    if kind == "bad-sequence":
        return {
            "X-Producer-Id": "prop",
            "X-Sequence": draw(st.sampled_from(["-1", "x", "1e3", "9" * 40, ""])),
        }
    if kind == "one-only":
        return draw(st.sampled_from([{"X-Producer-Id": "prop"}, {"X-Sequence": "1"}]))
    return {"X-Producer-Id": draw(st.sampled_from(["deltaingest-x", "p" * 300])), "X-Sequence": "1"}


@pytest.mark.parametrize("invalid_rows", ["reject", "deadLetter"])
def test_any_request_gets_a_client_answer_and_the_table_holds_exactly_the_acknowledged_rows(
    invalid_rows: Literal["reject", "deadLetter"],
    s3_uri: str,
    cloud_env: dict[str, str],
    tmp_path: Path,
    writers: list[WriterProcess],
) -> None:
    dead_uri = f"{s3_uri}-dead"
    policy = {"invalidRows": invalid_rows, "deadLetter": {"uri": dead_uri}}
    config = settings_file(tmp_path, writer={"maxRequestBytes": MAX_BYTES, **policy})
    (writer,) = start_writers(1, s3_uri, config, cloud_env, tmp_path, writers)
    options = DecodeOptions(invalid_rows=invalid_rows, max_bytes=MAX_BYTES)
    acknowledged: list[pa.Table] = []
    dead_lettered = 0
    answers: dict[int, int] = {}

    @budget(150, suppress_health_check=list(HealthCheck))  # the writer is shared by every example
    @given(body=bodies(), headers=identity_headers())
    @found_examples(headers={})
    def request(body: Body, headers: dict[str, str]) -> None:
        extra: dict[str, Any] = dict(headers)
        if body.content_encoding:
            extra["Content-Encoding"] = body.content_encoding
        response = post(writer.ingest_url, body.data, content_type=body.content_type, headers=extra)
        answers[response.status] = answers.get(response.status, 0) + 1
        assert response.status in ANSWERS, (response.status, response.body)
        if response.status == 200:
            assert not response.body.get("duplicate")
            decoded = body.decode(options)  # what the writer must have committed
            assert response.body["rows"] == decoded.table.num_rows
            assert response.body.get("deadLettered", 0) == len(decoded.dead)
            acknowledged.append(decoded.table)
            nonlocal dead_lettered
            dead_lettered += len(decoded.dead)
        else:
            assert isinstance(response.body.get("error"), str), response.body

    try:
        request()
    finally:
        print("answers:", answers)
        if report := os.environ.get("FUZZ_REPORT"):  # make fuzz counts the answers by status code
            with open(report, "a") as out:
                out.write(json.dumps({"answers": answers}) + "\n")
    assert writer.process.poll() is None, writer.log()
    assert "Traceback" not in writer.log()
    table = DeltaTable(s3_uri, storage_options=cloud_env).to_pyarrow_table()
    expected = pa.concat_tables(acknowledged) if acknowledged else SCHEMA.empty_table()
    assert table.num_rows == expected.num_rows
    key = ["id", "user", "day"]
    assert sorted(table.select(key).to_pylist(), key=repr) == sorted(
        expected.select(key).to_pylist(), key=repr
    )
    if invalid_rows == "deadLetter":
        assert DeltaTable(dead_uri, storage_options=cloud_env).to_pyarrow_table().num_rows == dead_lettered
