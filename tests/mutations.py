"""Hypothesis strategies for hostile request bodies: valid ones of every content type, then mutated.

Shared by the decoder's property test and the server's, so both see the same kinds of damage: byte flips,
truncation, deep nesting, huge numbers, long strings, many fields, invalid UTF-8, duplicate keys,
NaN/Infinity, wrong types, bad gzip and bad Arrow streams.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass

import pyarrow as pa
from hypothesis import strategies as st

from deltaingest.ingest.decode import Decoded, DecodeOptions, decode
from tests.helpers import EVENT_ARROW_SCHEMA, event

NDJSON = "application/x-ndjson"
JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str
    content_encoding: str | None = None

    def decode(self, options: DecodeOptions) -> Decoded:
        """The writer's decoder's reading of this body against the events schema."""
        return decode(
            self.data,
            content_type=self.content_type,
            content_encoding=self.content_encoding,
            schema=EVENT_ARROW_SCHEMA,
            options=options,
        )


# Fragments spliced into a JSON row: each is a kind of value the reader or the diagnosis must survive.
_HOSTILE_VALUES = [
    "[" * 2000 + "]" * 2000,
    "{" + '"a":{' * 1500 + "}" * 1501,
    "1" + "0" * 5000,
    "-9" * 3000,
    "1e999999",
    "NaN",
    "Infinity",
    "-Infinity",
    '"' + "x" * 200_000 + '"',
    '"\\ud800"',
    '"\\u0000"',
    "true",
    "null",
    "[1, {}, []]",
    "9223372036854775808",
    "0.1e-400",
]


@st.composite
def hostile_row(draw: st.DrawFn, i: int) -> bytes:
    """One NDJSON line: a valid row, or one with a hostile value, duplicate key or many fields."""
    row = json.dumps(event(i))
    kind = draw(st.sampled_from(["valid", "value", "duplicate", "many", "unknown"]))
    if kind == "valid":
        return row.encode()
    if kind == "value":
        field = draw(st.sampled_from(["id", "ts", "day", "user", "score", "tags", "geo", "extra"]))
        value = draw(st.sampled_from(_HOSTILE_VALUES))
        return (row[:-1] + f', "{field}": {value}' + "}").encode()
    if kind == "duplicate":
        return (row[:-1] + ', "id": "x"}').encode()
    if kind == "many":
        extra = ", ".join(f'"f{n}": {n}' for n in range(draw(st.integers(1000, 20_000))))
        return (row[:-1] + ", " + extra + "}").encode()
    return (row[:-1] + ', "unknown": 1}').encode()


def _arrow(rows: int) -> bytes:
    table = pa.table(
        {"id": pa.array(range(rows), pa.int64()), "user": pa.array([f"u{i}" for i in range(rows)])}
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return sink.getvalue()


@st.composite
def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """Damage ``data`` at the byte level (or leave it whole)."""
    kind = draw(st.sampled_from(["none", "flip", "truncate", "insert", "invalid-utf8", "repeat"]))
    if kind == "none" or not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == "invalid-utf8":
        return data[:at] + b"\xff\xfe\xc3" + data[at:]
    return data[:at] * draw(st.integers(2, 50))


@st.composite
def bodies(draw: st.DrawFn) -> Body:
    """A request body of any supported kind, possibly damaged, possibly gzipped, possibly mislabelled."""
    shape = draw(st.sampled_from(["ndjson", "json-array", "json-object", "arrow"]))
    count = draw(st.integers(1, 5))
    if shape == "arrow":
        data, content_type = _arrow(count), ARROW
    else:
        lines = [draw(hostile_row(i)) for i in range(count)]
        if shape == "ndjson":
            data, content_type = b"\n".join(lines) + b"\n", NDJSON
        elif shape == "json-array":
            data, content_type = b"[" + b",".join(lines) + b"]", JSON
        else:
            data, content_type = lines[0], JSON
    data = draw(mutate(data))
    encoding = draw(st.sampled_from([None, None, "gzip", "gzip-damaged", "gzip-label-only"]))
    if encoding == "gzip":
        return Body(gzip.compress(data), content_type, "gzip")
    if encoding == "gzip-damaged":
        return Body(draw(mutate(gzip.compress(data))), content_type, "gzip")
    if encoding == "gzip-label-only":
        return Body(data, content_type, "gzip")
    if draw(st.booleans()) and draw(st.booleans()):
        content_type = draw(
            st.sampled_from([JSON, NDJSON, ARROW, "text/plain", "", "application/json; charset=latin-1"])
        )
    return Body(data, content_type, None)
