"""The floor of one acknowledgement: the work a commit cannot avoid, done bare in the same run.

Parse the request body, encode the Parquet file, PUT it, PUT the log entry with ``If-None-Match: *`` and (for
a writer that cannot prove nobody else committed) LIST ``_delta_log``. The requests go through one boto3
client with keep-alive to the same SeaweedFS; delta-rs' own object-store client is not reachable from Python,
so this floor is the same requests from a different, comparable client.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import boto3
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from deltaingest.bench.stats import latency_ms

FLOOR_STEPS = ("json_parse", "parquet_encode", "data_put", "log_put_if_none_match", "log_list")
# A commit's log entry as deltaingest writes it (commitInfo, txn, add with stats): about this size.
_LOG_ENTRY_BYTES = 1800


def measure_floor(env: dict[str, str], bucket: str, prefix: str, body: bytes, repeats: int) -> dict[str, Any]:
    """Per-step latencies over ``repeats`` rounds, and their p50/p99 sums (unlocked: with the LIST)."""
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    log_entry = json.dumps({"commitInfo": {"pad": "x" * _LOG_ENTRY_BYTES}}).encode()
    steps: dict[str, list[float]] = {step: [] for step in FLOOR_STEPS}

    def timed(step: str, call: Any) -> Any:
        started = time.perf_counter()
        value = call()
        steps[step].append(time.perf_counter() - started)
        return value

    client.put_object(
        Bucket=bucket, Key=f"{prefix}/warm-up", Body=b""
    )  # connection set up outside the timing
    for i in range(repeats):
        table = timed("json_parse", lambda: pa_json.read_json(io.BytesIO(body)))
        sink = io.BytesIO()
        timed("parquet_encode", lambda t=table, s=sink: pq.write_table(t, s, compression="snappy"))
        parquet = sink.getvalue()
        data_key = f"{prefix}/part-{i}.parquet"
        timed("data_put", lambda k=data_key, b=parquet: client.put_object(Bucket=bucket, Key=k, Body=b))
        key = f"{prefix}/_delta_log/{i:020d}.json"
        timed(
            "log_put_if_none_match",
            lambda k=key: client.put_object(Bucket=bucket, Key=k, Body=log_entry, IfNoneMatch="*"),
        )
        timed(
            "log_list",
            lambda k=key: client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/_delta_log/", StartAfter=k),
        )
    result: dict[str, Any] = {step: latency_ms(values) for step, values in steps.items()}
    leased = FLOOR_STEPS[:4]
    for name, included in (("leased", leased), ("unlocked", (*leased, "log_list"))):
        result[f"total_{name}"] = {
            q: round(sum(result[step][q] for step in included), 1) for q in ("p50", "p95", "p99")
        }
    return result
