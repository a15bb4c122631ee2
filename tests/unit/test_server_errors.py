"""An unexpected exception in a handler is a JSON 500 with a request id, logged once with its traceback."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest
from aiohttp.test_utils import TestClient, TestServer

from deltaingest.config import WriterSpec
from deltaingest.ingest import server as server_module
from deltaingest.ingest.server import IngestServer
from deltaingest.metrics import Metrics


async def _post(app: Any, **headers: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/v1/ingest", data=b'{"id": 1}\n', headers={"Content-Type": "application/x-ndjson", **headers}
        )
        return response.status, await response.json(), {k.lower(): v for k, v in response.headers.items()}


def _server(auth_token: str | None = None) -> IngestServer:
    table = SimpleNamespace(schema=pa.schema([pa.field("id", pa.int64())]), uri="memory", version=lambda: 0)
    return IngestServer(
        spec=WriterSpec(),
        table=table,
        group=SimpleNamespace(),
        latest=SimpleNamespace(),
        metrics=Metrics(),
        auth_token=auth_token,  # type: ignore[arg-type]
    )


def test_a_bug_in_a_handler_is_a_json_500_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(server_module, "decode", broken)
    server = _server()
    with caplog.at_level(logging.ERROR, logger="deltaingest.ingest.server"):
        status, body, headers = asyncio.run(_post(server.app(), **{"X-Request-Id": "req-42"}))
    server.close()
    assert status == 500
    assert body == {"error": "internal error", "requestId": "req-42"}
    assert headers["x-request-id"] == "req-42"
    records = [r for r in caplog.records if r.exc_info]
    assert len(records) == 1 and "req-42" in records[0].getMessage()
    assert records[0].exc_info is not None and records[0].exc_info[0] is KeyError


def test_an_insane_request_id_is_replaced_and_aiohttp_answers_are_json() -> None:
    server = _server()

    async def run() -> tuple[int, dict[str, Any], dict[str, str]]:
        async with TestClient(TestServer(server.app())) as client:
            response = await client.get("/no/such/path", headers={"X-Request-Id": "bad id\twith spaces"})
            return response.status, await response.json(), {k.lower(): v for k, v in response.headers.items()}

    status, body, headers = asyncio.run(run())
    server.close()
    assert status == 404 and body["error"] == "Not Found"
    assert headers["x-request-id"] == body["requestId"] and len(body["requestId"]) == 32


def test_a_method_not_allowed_keeps_its_allow_header() -> None:
    """RFC 9110 15.5.6: a 405 lists the allowed methods; the JSON rewrite must keep aiohttp's Allow."""
    server = _server()

    async def run() -> tuple[int, dict[str, Any], dict[str, str]]:
        async with TestClient(TestServer(server.app())) as client:
            response = await client.delete("/v1/ingest")
            return response.status, await response.json(), {k.lower(): v for k, v in response.headers.items()}

    status, body, headers = asyncio.run(run())
    server.close()
    assert status == 405 and body["error"] == "Method Not Allowed"
    assert "POST" in headers["allow"]
    assert headers["content-type"].startswith("application/json")


async def _raw(app: Any, head: bytes) -> tuple[int, dict[str, Any]]:
    """One request as raw bytes: header values a client library would not send (not UTF-8, say)."""
    server = TestServer(app)
    await server.start_server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = b'{"id": 1}\n'
        writer.write(head + b"Host: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        answer = await reader.read()
        writer.close()
    finally:
        await server.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize("token", [b"Bearer \xe9\xff", b"\xe9", b"Bearer s3cre\xe9"])
def test_an_authorization_header_that_is_not_utf8_is_a_401(token: bytes) -> None:
    """aiohttp hands such bytes on as surrogates, which ``str.encode()`` refused: a 500 on 35e928b."""
    server = _server(auth_token="s3cret")
    head = b"POST /v1/ingest HTTP/1.1\r\nAuthorization: " + token + b"\r\n"
    status, body = asyncio.run(_raw(server.app(), head))
    server.close()
    assert (status, body["error"]) == (401, "missing or wrong bearer token")


@pytest.mark.parametrize(
    "sequence",
    ["\u0661".encode(), "\uff17".encode(), b"1_000", b"+7", b"-0", b"7 8", b"\xe9", b"1" * 21, b"0x10"],
    ids=[
        "arabic-indic digit",
        "fullwidth digit",
        "underscores",
        "plus",
        "minus",
        "space",
        "not utf8",
        "long",
        "hex",
    ],
)
def test_a_sequence_is_ascii_digits_only(sequence: bytes) -> None:
    """``int()`` takes other scripts' digits and underscores: "\u0661" was sequence 1 on 35e928b."""
    server = _server()
    head = b"POST /v1/ingest HTTP/1.1\r\nX-Producer-Id: p\r\nX-Sequence: " + sequence + b"\r\n"
    status, body = asyncio.run(_raw(server.app(), head))
    server.close()
    assert status == 400 and body["error"].startswith(
        "X-Sequence must be a non-negative integer in ASCII digits"
    )
