"""A batch as a request body: rows as NDJSON, tables as an Arrow IPC stream, optionally gzip."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from deltaingest.protocol import ARROW_STREAM_TYPE, NDJSON_TYPE


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str
    rows: int
    content_encoding: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.content_type}
        if self.content_encoding:
            headers["Content-Encoding"] = self.content_encoding
        return headers


def encode(data: Any, *, compress: bool = False) -> Body:
    """``data``: a sequence of dicts (NDJSON), a ``pyarrow.Table`` or ``RecordBatch``, anything with
    ``to_arrow()`` (a ``polars.DataFrame``), or ``bytes`` already holding NDJSON (sent as is)."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        body = Body(raw, NDJSON_TYPE, sum(1 for line in raw.split(b"\n") if line.strip()))
    elif isinstance(data, pa.Table | pa.RecordBatch) or hasattr(data, "to_arrow"):
        table = data if isinstance(data, pa.Table | pa.RecordBatch) else data.to_arrow()
        if not isinstance(table, pa.Table | pa.RecordBatch):
            raise TypeError(f"to_arrow() returned {type(table).__name__}, not a pyarrow Table")
        body = Body(_arrow_stream(table), ARROW_STREAM_TYPE, table.num_rows)
    elif isinstance(data, Sequence) and not isinstance(data, str):
        lines = []
        for number, row in enumerate(data):
            if not isinstance(row, Mapping):
                raise TypeError(f"row {number} is a {type(row).__name__}, not a dict")
            lines.append(json.dumps(row, default=_json_value, separators=(",", ":")).encode())
        body = Body(b"\n".join(lines) + b"\n", NDJSON_TYPE, len(lines))
    else:
        raise TypeError(
            f"cannot send a {type(data).__name__}: "
            "pass a list of dicts, a pyarrow Table or a polars DataFrame"
        )
    if body.rows == 0:
        raise ValueError("the batch has no rows")
    if compress:
        return Body(gzip.compress(body.data, compresslevel=1), body.content_type, body.rows, "gzip")
    return body


def _arrow_stream(table: pa.Table | pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write(table)
    return bytes(sink.getvalue().to_pybytes())


def _json_value(value: Any) -> Any:
    """What the writer's JSON decoding expects for values ``json`` cannot write itself."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()  # binary columns arrive base64-encoded
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
