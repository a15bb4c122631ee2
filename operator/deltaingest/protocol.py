"""The writer's HTTP contract, shared by the server and the client: paths, headers, media types and the
rules for a producer's identity. Pure: no I/O, no imports from the rest of the package."""

from __future__ import annotations

import re

INGEST_PATH = "/v1/ingest"
PRODUCERS_PATH = "/v1/producers"
# OTLP/HTTP's path for logs (the OpenTelemetry protocol specification), with source.otlp.
OTLP_LOGS_PATH = "/v1/logs"
PROTOBUF_TYPE = "application/x-protobuf"

PRODUCER_HEADER = "X-Producer-Id"
SEQUENCE_HEADER = "X-Sequence"
REQUEST_ID_HEADER = "X-Request-Id"

JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
NDJSON_TYPES = frozenset({NDJSON_TYPE, "application/ndjson", "application/jsonl", "application/x-jsonlines"})
ARROW_STREAM_TYPE = "application/vnd.apache.arrow.stream"

# With writer.unknownFields: rescue, what of a row fits no column goes here as a JSON object.
RESCUED_COLUMN = "_rescued_data"

MAX_PRODUCER_ID = 200
# Delta stores a txn version as a long.
MAX_SEQUENCE = 2**63 - 1
# The writer's own txn app ids start with this; a producer must not collide with them.
RESERVED_PREFIX = "deltaingest-"
# Printable ASCII, no space at either end, not "." or "..": what an HTTP header carries unchanged (servers
# trim the ends; non-ASCII is latin-1 to one side and UTF-8 to the other) and a URL path segment keeps.
PRODUCER_ID_PATTERN = r"^(?!\.\.?$)[!-~](?:[ -~]*[!-~])?$"
_PRODUCER_ID = re.compile(PRODUCER_ID_PATTERN)


def producer_id_problem(producer: str) -> str | None:
    """Why ``producer`` cannot be a producer id, or None when it can."""
    if not producer:
        return "a producer id must not be empty"
    if len(producer) > MAX_PRODUCER_ID or producer.startswith(RESERVED_PREFIX):
        return f"a producer id must be at most {MAX_PRODUCER_ID} characters, not '{RESERVED_PREFIX}*'"
    if not _PRODUCER_ID.match(producer):
        return "a producer id must be printable ASCII without spaces at either end, and not '.' or '..'"
    return None
