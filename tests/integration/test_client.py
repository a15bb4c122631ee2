"""The producer's side over real HTTP: ``GET /v1/producers/{id}``, the Python client, ``deltaingest send``;
writers on SeaweedFS with the DynamoDB lease, killed with SIGKILL where the test says so."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from aiohttp import web
from deltalake import DeltaTable

from deltaingest.client import (
    AsyncProducer,
    DeliveryFailed,
    Producer,
    ProducerFailed,
    Rejected,
    SequenceTaken,
)
from deltaingest.devservers import free_port
from tests.helpers import (
    WriterProcess,
    event,
    get,
    ndjson,
    post,
    settings_file,
    start_writers,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(
    s3_uri: str, cloud_env: dict[str, str], lock_table: str, tmp_path: Path, writers: list[WriterProcess]
) -> list[WriterProcess]:
    config = settings_file(tmp_path, locking={"kind": "dynamodb", "tableName": lock_table})
    return start_writers(2, s3_uri, config, cloud_env, tmp_path, writers)


def committed(writer: WriterProcess, producer: str) -> dict[str, object]:
    response = get(f"{writer.url}/v1/producers/{urllib.parse.quote(producer, safe='')}")
    assert response.status == 200, response.body
    return response.body


def ids(uri: str, env: dict[str, str]) -> list[int]:
    table = DeltaTable(uri, storage_options=env)
    return sorted(pl.from_arrow(table.to_pyarrow_table(columns=["id"]))["id"].to_list())


def test_producers_endpoint_answers_the_latest_committed_sequence_on_every_replica(
    pair: list[WriterProcess],
) -> None:
    a, b = pair
    assert committed(b, "sensor/7") == {"producerId": "sensor/7", "sequence": None, "version": 0}
    assert (
        post(
            a.ingest_url, ndjson([event(1)]), headers={"X-Producer-Id": "sensor/7", "X-Sequence": "5"}
        ).status
        == 200
    )
    assert committed(b, "sensor/7") == {
        "producerId": "sensor/7",
        "sequence": 5,
        "version": 1,
    }  # b never wrote
    assert (
        post(
            b.ingest_url, ndjson([event(2)]), headers={"X-Producer-Id": "sensor/7", "X-Sequence": "9"}
        ).status
        == 200
    )
    assert committed(a, "sensor/7")["sequence"] == 9
    refused = get(f"{a.url}/v1/producers/deltaingest-writer:x")
    assert refused.status == 400 and "producer id" in refused.body["error"]


def test_producer_sends_rows_tables_and_frames_once_and_a_new_one_resumes_the_numbering(
    pair: list[WriterProcess], s3_uri: str, cloud_env: dict[str, str]
) -> None:
    urls = [w.url for w in pair]
    when = dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    table = pa.table(
        {"id": pa.array([10, 11], pa.int64()), "ts": pa.array([when] * 2, pa.timestamp("us", "UTC"))}
    )
    frame = pl.DataFrame({"id": [20, 21], "ts": ["2024-05-01T10:00:00Z"] * 2}).with_columns(
        pl.col("ts").str.to_datetime(time_zone="UTC", time_unit="us")
    )
    with Producer(urls, "loader") as producer:
        acks = [producer.send([event(1), event(2)]), producer.send(table), producer.send(frame)]
        assert [(a.sequence, a.rows, a.duplicate) for a in acks] == [
            (0, 2, False),
            (1, 2, False),
            (2, 2, False),
        ]
        with pytest.raises(ValueError, match="below"):
            producer.send([event(3)], sequence=1)
        with pytest.raises(Rejected) as refused:  # final: not retried; the producer goes on
            producer.send([{"id": "not a number", "ts": "2024-05-01T10:00:00Z"}])
        assert refused.value.status == 422 and refused.value.body["row"] == 1
    with Producer(list(reversed(urls)), "loader") as again:
        assert again.committed() == 2
        assert again.send([event(1), event(2)], sequence=2).duplicate is True  # a retry of a committed one
        assert again.send([event(30)]).sequence == 3  # the refused batch's 3 was never written
    assert ids(s3_uri, cloud_env) == [1, 2, 10, 11, 20, 21, 30]


def test_producer_fails_over_from_a_dead_writer(
    pair: list[WriterProcess], s3_uri: str, cloud_env: dict[str, str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with Producer([dead, pair[0].url], "failover", delivery_timeout=30) as producer:
        assert producer.send([event(1)]).rows == 1
    assert ids(s3_uri, cloud_env) == [1]


def test_async_producer_keeps_order_with_many_batches_in_flight(
    pair: list[WriterProcess], s3_uri: str, cloud_env: dict[str, str]
) -> None:
    async def run() -> list[int]:
        async with AsyncProducer([w.url for w in pair], "async", max_in_flight=4) as producer:
            futures = [await producer.submit([event(i)]) for i in range(40)]
            acks = await asyncio.gather(*futures)
        return [ack.sequence for ack in acks]

    assert asyncio.run(run()) == list(range(40))
    assert ids(s3_uri, cloud_env) == list(range(40))


class Scripted:
    """A stand-in writer answering from a script (statuses a real writer gives only under load or faults)."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.answers = answers
        self.seen: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append(dict(request.headers))
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        body = {"version": 1, "rows": 1} if status == 200 else {"error": f"scripted {status}"}
        return web.json_response(body, status=status, headers=headers)


@pytest.fixture
def scripted() -> Iterator[tuple[str, Scripted]]:
    script = Scripted([])
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    runner = web.AppRunner(app)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", script
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_429_and_503_are_retried_with_the_same_sequence_honouring_retry_after(
    scripted: tuple[str, Scripted],
) -> None:
    url, script = scripted
    script.answers = [(429, {"Retry-After": "1"}), (503, {"Retry-After": "0"}), (200, {})]
    with Producer(url, "p") as producer:
        ack = producer.send([event(1)], sequence=7)
    assert ack.sequence == 7 and len(script.seen) == 3
    assert {h["X-Sequence"] for h in script.seen} == {"7"} and {h["X-Producer-Id"] for h in script.seen} == {
        "p"
    }


def test_an_unacknowledged_batch_stops_the_producer(scripted: tuple[str, Scripted]) -> None:
    url, script = scripted
    script.answers = [(503, {"Retry-After": "1"})] * 5
    with Producer(url, "p", delivery_timeout=1.5) as producer:
        with pytest.raises(DeliveryFailed, match=r"not delivered within 1\.5 s"):
            producer.send([event(1)], sequence=1)
        with pytest.raises(ProducerFailed):  # sending 2 now could let a late commit of 1 look like a retry
            producer.send([event(2)], sequence=2)


def _send(urls: list[str], path: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "deltaingest", "send", "--producer-id", "file-loader", "--input", str(path)]
    for url in urls:
        args += ["--url", url]
    return subprocess.Popen(
        [*args, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
    )


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson([event(i) for i in range(20_000)]))
    return path


def test_send_killed_midway_and_run_again_leaves_every_row_once(
    pair: list[WriterProcess], s3_uri: str, cloud_env: dict[str, str], events_file: Path
) -> None:
    urls = [w.url for w in pair]
    first = _send(urls, events_file, "--batch-rows", "200")
    wait_for(lambda: (committed(pair[1], "file-loader")["sequence"] or 0) >= 4000, "a fifth of the file")
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = committed(pair[0], "file-loader")["sequence"]
    assert isinstance(done_before, int) and done_before < 20_000, "killed too late to test a resume"
    second = _send(urls, events_file, "--batch-rows", "200")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["resumedAfterLine"] >= done_before and summary["lastLine"] == 20_000
    assert summary["rows"] <= 20_000 - done_before
    assert ids(s3_uri, cloud_env) == list(range(20_000))


def test_send_survives_its_writer_killed_midway(
    pair: list[WriterProcess], s3_uri: str, cloud_env: dict[str, str], events_file: Path
) -> None:
    a, b = pair
    sender = _send([a.url, b.url], events_file, "--batch-rows", "200")  # a first: it takes the load
    wait_for(lambda: (committed(b, "file-loader")["sequence"] or 0) >= 4000, "a fifth of the file")
    a.kill9()
    out, err = sender.communicate(timeout=300)
    assert sender.returncode == 0, err.decode()
    assert json.loads(out)["lastLine"] == 20_000
    assert ids(s3_uri, cloud_env) == list(range(20_000))


def test_send_refuses_to_resume_off_its_batch_grid_or_past_the_end_of_its_input(
    pair: list[WriterProcess], s3_uri: str, cloud_env: dict[str, str], tmp_path: Path
) -> None:
    urls = [pair[0].url]
    ten, twenty, five = (tmp_path / f"{n}.ndjson" for n in ("ten", "twenty", "five"))
    ten.write_bytes(ndjson([event(i) for i in range(10)]))
    twenty.write_bytes(ndjson([event(i) for i in range(20)]))
    five.write_bytes(ndjson([event(i) for i in range(5)]))
    done = _send(urls, ten, "--batch-rows", "4")  # batches end at lines 4, 8 and 10 (the end)
    assert done.wait(120) == 0
    # Lines 9-10 and 11-12 in flight from a run with batches of 3 could overlap what this run sends.
    off_grid = _send(urls, twenty, "--batch-rows", "3")
    _, err = off_grid.communicate(timeout=120)
    assert off_grid.returncode == 2 and b"not a multiple of --batch-rows 3" in err
    shorter = _send(urls, five, "--batch-rows", "4")
    _, err = shorter.communicate(timeout=120)
    assert shorter.returncode == 2 and b"the input has 5" in err
    on_grid = _send(urls, twenty, "--batch-rows", "2")  # 10 is on this grid: it resumes
    out, err = on_grid.communicate(timeout=120)
    assert on_grid.returncode == 0, err.decode()
    assert json.loads(out)["resumedAfterLine"] == 10
    assert ids(s3_uri, cloud_env) == list(range(20))


def test_an_auto_numbered_batch_whose_sequence_another_producer_took_is_not_acked(
    pair: list[WriterProcess], s3_uri: str, cloud_env: dict[str, str]
) -> None:
    first, second = Producer(pair[0].url, "twin"), Producer(pair[1].url, "twin")
    assert first.send([event(1)]).sequence == 0
    assert second.send([event(2)]).sequence == 1  # it resumed after 0
    with pytest.raises(SequenceTaken, match="sequence 1 was already committed"):
        first.send([event(3)])  # its own next is 1 too: that would have been a silent duplicate
    with pytest.raises(ProducerFailed):
        first.send([event(4)])
    assert ids(s3_uri, cloud_env) == [1, 2]


def test_cancelled_submissions_give_back_their_slots(scripted: tuple[str, Scripted]) -> None:
    url, _ = scripted

    async def run() -> int:
        async with AsyncProducer(url, "p", max_in_flight=2) as producer:
            for sequence in range(3):
                (await producer.submit([event(sequence)], sequence=sequence)).cancel()  # before it starts
            ack = await asyncio.wait_for(producer.send([event(9)], sequence=9), 10)
        return ack.sequence

    assert asyncio.run(run()) == 9
