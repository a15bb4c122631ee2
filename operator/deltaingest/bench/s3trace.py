"""A timing proxy in front of the S3 endpoint: what one acknowledgement spends on the wire, by kind.

The writer's data-file PUT and its log PUT happen inside one delta-rs call, so the writer cannot time them
apart; this proxy sees each request. It forwards bytes and headers unchanged (SigV4 signs the Host header,
which therefore stays the proxy's). A call is timed from the proxy's request upstream to the end of the
answer: what the writer would wait for without the proxy. The proxy's own hop slows the traced writer, so
the bench uses it for the breakdown only, never for the latency targets. Tests use its faults: a request
the store never sees, or one it carries out while the writer is told it failed.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from deltaingest.devservers import free_port

_COMMIT_FILE = re.compile(r"\d{20}\.json")
# Hop-by-hop headers (RFC 9110, 7.6.1) and what aiohttp sets itself.
_DROP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade", "trailer"}


@dataclass
class Fault:
    """Answer matching requests 403 (not retried by delta-rs' object store client), ``times`` times;
    ``forward`` first passes the request on, so it takes effect although the writer sees a failure."""

    method: str
    path: re.Pattern[str]
    forward: bool = False
    times: int = 1
    hits: int = 0

    def applies(self, method: str, path: str) -> bool:
        return self.hits < self.times and method == self.method and bool(self.path.search(path))


_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>fault injected by the test proxy</Message></Error>"
)


@dataclass(frozen=True)
class Call:
    kind: str
    path: str
    started: float
    seconds: float
    status: int


def classify(method: str, path: str, query: str) -> str:
    """The role of one S3 request in a Delta commit."""
    name = path.rsplit("/", 1)[-1]
    in_log = "/_delta_log/" in path
    if method == "PUT" and in_log:
        return "log_put" if _COMMIT_FILE.fullmatch(name) else "checkpoint_put"
    if method == "PUT" and name.endswith(".parquet"):
        return "data_put"
    if method == "GET" and "list-type=2" in query:
        return "log_list" if "_delta_log" in query else "list"
    if method in ("GET", "HEAD") and in_log:
        return "log_get" if _COMMIT_FILE.fullmatch(name) else "checkpoint_get"
    return f"{method.lower()}_other"


class S3Trace:
    """The recorded calls, in order; ``between`` selects those that started inside a time window."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self._guard = threading.Lock()

    def _fault(self, method: str, path: str) -> Fault | None:
        with self._guard:
            for fault in self.faults:
                if fault.applies(method, path):
                    fault.hits += 1
                    return fault
        return None

    def between(self, start: float, end: float) -> list[Call]:
        with self._guard:
            return [c for c in self.calls if start <= c.started < end]

    async def _forward(self, request: web.Request, session: aiohttp.ClientSession) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        fault = self._fault(request.method, request.path)
        if fault is not None and not fault.forward:
            return web.Response(status=403, body=_DENIED, content_type="application/xml")
        started = time.perf_counter()
        async with session.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            data=body or None,
            headers=headers,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            auto_decompress=False,
            allow_redirects=False,
        ) as answer:
            payload = await answer.read()
            seconds = time.perf_counter() - started
            kind = classify(request.method, request.path, request.query_string)
            with self._guard:
                self.calls.append(Call(kind, request.path_qs, started, seconds, answer.status))
            if fault is not None:
                return web.Response(status=403, body=_DENIED, content_type="application/xml")
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP}
            return web.Response(status=answer.status, body=payload, headers=out)


@contextmanager
def s3_trace(upstream: str) -> Iterator[tuple[str, S3Trace]]:
    """Run the proxy on a thread of its own: its endpoint URL and the trace."""
    trace = S3Trace(upstream)
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, web.AppRunner | aiohttp.ClientSession] = {}

    async def start() -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        app = web.Application(client_max_size=1 << 30)

        async def handle(request: web.Request) -> web.StreamResponse:
            return await trace._forward(request, session)

        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        state.update(runner=runner, session=session)
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, name="s3-trace", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the S3 trace proxy did not start")
    try:
        yield f"http://127.0.0.1:{port}", trace
    finally:

        async def stop() -> None:
            runner, session = state["runner"], state["session"]
            assert isinstance(runner, web.AppRunner) and isinstance(session, aiohttp.ClientSession)
            await runner.cleanup()
            await session.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
