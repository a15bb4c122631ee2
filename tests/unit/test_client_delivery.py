"""The client's retry and failover rules, driven step by step without a network, and its request bodies."""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import json
from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from deltaingest.client import DeliveryFailed, Rejected, RetryPolicy
from deltaingest.client.delivery import (
    Answer,
    Call,
    Endpoints,
    Outcome,
    Sleep,
    backoff,
    exchange,
    retry_after_seconds,
)
from deltaingest.client.encode import encode
from deltaingest.protocol import ARROW_STREAM_TYPE, NDJSON_TYPE, producer_id_problem

URLS = ["http://a:8080", "http://b:8080/"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(outcomes: list[Outcome], *, timeout: float = 120.0) -> tuple[list[Any], Answer]:
    """Run one exchange against scripted outcomes: the steps it asked for, and its answer."""
    clock = Clock()
    steps: list[Any] = []
    script: Iterator[Outcome] = iter(outcomes)
    run = exchange(
        Endpoints(URLS), "POST", "/v1/ingest", {"X-Sequence": "7"}, b"{}\n",
        policy=RetryPolicy(timeout), clock=clock, jitter=lambda: 0.0,
    )  # fmt: skip
    sent: Outcome | None = None
    while True:
        try:
            step = run.send(sent)
        except StopIteration as done:
            return steps, done.value
        steps.append(step)
        if isinstance(step, Sleep):
            clock.now += step.seconds
            sent = None
        else:
            sent = next(script)


def test_an_acknowledgement_ends_the_exchange_at_once() -> None:
    steps, answer = drive([Outcome(200, {"version": 3, "rows": 1})])
    assert answer == Answer({"version": 3, "rows": 1}, attempts=1)
    assert steps == [Call("POST", "http://a:8080/v1/ingest", {"X-Sequence": "7"}, b"{}\n")]


def test_429_waits_its_retry_after_then_tries_the_next_writer_with_the_same_request() -> None:
    steps, answer = drive([Outcome(429, {"error": "busy"}, retry_after="3"), Outcome(200, {"version": 1})])
    first, pause, second = steps
    assert pause == Sleep(3.0)
    assert second.url == "http://b:8080/v1/ingest"  # failed over
    assert (second.headers, second.body) == (first.headers, first.body)  # the same sequence
    assert answer == Answer({"version": 1}, attempts=2)


@pytest.mark.parametrize("status", [None, 408, 500, 501, 502, 503, 504, 507, 520])
def test_transient_failures_are_retried_with_backoff(status: int | None) -> None:
    failure = Outcome(status, error="ConnectionRefusedError" if status is None else None)
    steps, _ = drive([failure, failure, Outcome(200, {})])
    pauses = [step.seconds for step in steps if isinstance(step, Sleep)]
    assert len(pauses) == 2 and pauses[0] < pauses[1]  # exponential
    assert [step.url for step in steps if isinstance(step, Call)] == [
        "http://a:8080/v1/ingest", "http://b:8080/v1/ingest", "http://a:8080/v1/ingest",
    ]  # fmt: skip


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 422])
def test_other_4xx_are_final_and_never_retried(status: int) -> None:
    with pytest.raises(Rejected) as caught:
        drive([Outcome(status, {"error": "bad row", "row": 2})])
    assert caught.value.status == status and caught.value.body["row"] == 2
    assert "bad row" in str(caught.value)


def test_delivery_gives_up_at_its_timeout_saying_what_happened_last() -> None:
    with pytest.raises(DeliveryFailed) as caught:
        drive([Outcome(503, {"error": "commit failed"}, retry_after="4")] * 10, timeout=10)
    # at 0, 4 and 8 s, then at 10 s: the last wait was cut to what was left
    assert caught.value.attempts == 4
    assert "503" in caught.value.last and "commit failed" in caught.value.last


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    assert retry_after_seconds("2") == 2.0
    now = dt.datetime(2026, 12, 3, 12, 0, 0, tzinfo=dt.UTC).timestamp()
    assert retry_after_seconds("Thu, 03 Dec 2026 12:00:05 GMT", now=now) == 5.0
    assert retry_after_seconds("Thu, 03 Dec 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("Thu, 03 Dec 2026 12:00:05 -0000", now=now) == 5.0  # -0000 is UTC
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("\u00b2") is None  # a digit to str.isdigit, not a number


def test_a_retry_after_of_zero_still_backs_off() -> None:
    steps, _ = drive([Outcome(503, retry_after="0")] * 3 + [Outcome(200, {})])
    pauses = [step.seconds for step in steps if isinstance(step, Sleep)]
    assert all(p > 0 for p in pauses) and pauses == sorted(pauses)


def test_backoff_grows_to_its_cap_and_is_jittered_within_half_of_it() -> None:
    policy = RetryPolicy(backoff_initial=0.1, backoff_max=1.0)
    assert backoff(1, policy, 0.0) == pytest.approx(0.05)
    assert backoff(3, policy, 0.999) == pytest.approx(0.4, rel=0.01)
    assert backoff(30, policy, 0.0) == pytest.approx(0.5)  # capped at backoff_max, then jittered


def test_endpoints_need_http_urls() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Endpoints([])
    with pytest.raises(ValueError, match="http"):
        Endpoints(["writer:8080"])


def test_rows_become_ndjson_with_dates_binary_and_decimals_as_the_writer_reads_them() -> None:
    body = encode([{"id": 1, "ts": dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC), "b": b"\x00\xff",
                    "d": dt.date(2024, 5, 1), "p": decimal.Decimal("1.25")}])  # fmt: skip
    assert body.content_type == NDJSON_TYPE and body.rows == 1
    row = json.loads(body.data)
    assert row == {"id": 1, "ts": "2024-05-01T10:00:00+00:00", "b": "AP8=", "d": "2024-05-01", "p": "1.25"}


def test_tables_and_frames_become_arrow_streams_optionally_gzipped() -> None:
    table = pa.table({"id": [1, 2, 3]})
    for data in (table, pl.DataFrame({"id": [1, 2, 3]})):
        body = encode(data, compress=True)
        assert (body.content_type, body.content_encoding, body.rows) == (ARROW_STREAM_TYPE, "gzip", 3)
        read = pa.ipc.open_stream(gzip.decompress(body.data)).read_all()
        assert read.column("id").to_pylist() == [1, 2, 3]


def test_what_cannot_be_sent_is_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="no rows"):
        encode([])
    with pytest.raises(TypeError, match="row 1"):
        encode([{"id": 1}, 5])
    with pytest.raises(TypeError, match="list of dicts"):
        encode(42)
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode([{"id": object()}])


@pytest.mark.parametrize("producer", ["sensor-7", "orders/2024 05", "a.b", "~!"])
def test_producer_ids_that_a_header_and_a_path_carry_unchanged_are_allowed(producer: str) -> None:
    assert producer_id_problem(producer) is None


@pytest.mark.parametrize(
    "producer",
    [
        "",
        " orders",
        "orders ",
        "orders\t",
        "caf\u00e9",
        "\u8ba2\u5355",
        ".",
        "..",
        "a\nb",
        "deltaingest-x",
        "x" * 201,
    ],
)
def test_producer_ids_that_http_would_change_or_drop_are_refused(producer: str) -> None:
    # A header's ends are trimmed and non-ASCII is read differently by each side: the txn would be stored
    # under one id and looked up under another, and a resumed producer would start again from 0.
    assert producer_id_problem(producer) is not None


def test_a_writer_url_with_credentials_is_refused_before_they_leak_into_messages() -> None:
    with pytest.raises(ValueError, match="credentials"):
        Endpoints(["http://user:secret@writer:8080"])
