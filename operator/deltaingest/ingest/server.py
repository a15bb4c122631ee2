"""The HTTP surface of the writer: ingest, health, readiness, table info; and the metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from deltaingest import __version__
from deltaingest.config import OtlpLogsSpec, WriterSpec
from deltaingest.delta_types import type_name
from deltaingest.ingest import otlp
from deltaingest.ingest.batcher import GroupCommitter
from deltaingest.ingest.committer import Batch
from deltaingest.ingest.decode import Decoded, DecodeOptions, decode
from deltaingest.ingest.errors import (
    BadRequest,
    IngestError,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    Unavailable,
)
from deltaingest.ingest.openapi import OPENAPI_PATH, openapi_document
from deltaingest.metrics import Metrics
from deltaingest.protocol import (
    INGEST_PATH,
    MAX_SEQUENCE,
    OTLP_LOGS_PATH,
    PRODUCER_HEADER,
    PRODUCERS_PATH,
    REQUEST_ID_HEADER,
    SEQUENCE_HEADER,
    producer_id_problem,
)
from deltaingest.table.hot import HotTable, LatestView

log = logging.getLogger(__name__)


class IngestServer:
    """Request handling; the commit machinery is behind ``group``."""

    def __init__(
        self,
        *,
        spec: WriterSpec,
        table: HotTable,
        group: GroupCommitter,
        latest: LatestView,
        metrics: Metrics,
        auth_token: str | None,
        otlp_logs: OtlpLogsSpec | None = None,
    ) -> None:
        self._spec = spec
        self._otlp = otlp_logs
        self._table = table
        self._group = group
        self._metrics = metrics
        self._auth = auth_token
        self._decode_options = DecodeOptions(
            unknown_fields=spec.unknown_fields,
            invalid_rows=spec.invalid_rows,
            schema_evolution=spec.schema_evolution,
            infer_timestamps=spec.infer_timestamps,
            max_bytes=spec.max_request_bytes,
        )
        self._inflight = 0
        self.ready = False
        # Decoding is CPU work in Arrow (GIL released); off the event loop so health checks stay quick.
        self._decoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")
        # Reads of the latest version have their own loaded table and thread: never the committer's.
        self._latest = latest
        self._readers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="latest")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._spec.max_request_bytes, middlewares=[json_errors])
        app.router.add_post(INGEST_PATH, self.ingest)
        if self._otlp is not None:
            app.router.add_post(OTLP_LOGS_PATH, self.otlp_logs)
        # Any characters, '/' and newlines included, so that a bad id gets its 400 rather than a 404.
        app.router.add_get(PRODUCERS_PATH + r"/{producer:[\s\S]+}", self.producer_info)
        app.router.add_get("/v1/table", self.table_info)
        app.router.add_get(OPENAPI_PATH, self.openapi)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def ingest(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            self._authorize(request)
            producer, sequence = _identity(request)
            async with self._body(request) as body:
                decoded = await self._decode(
                    lambda: decode(
                        body,
                        content_type=request.headers.get("Content-Type"),
                        content_encoding=request.headers.get("Content-Encoding"),
                        schema=self._table.schema,
                        options=self._decode_options,
                    )
                )
                batch = Batch(
                    decoded.table, producer, sequence, dead=decoded.dead, request_id=request[REQUEST_ID_KEY]
                )
                ack = await self._group.submit(batch)
            payload: dict[str, Any] = {"version": ack.version, "rows": ack.rows}
            if self._spec.invalid_rows == "deadLetter":
                payload["deadLettered"] = ack.dead_lettered
            if ack.duplicate:
                payload["duplicate"] = True
            response = web.json_response(payload)
        except IngestError as err:
            response = web.json_response(err.body(), status=err.status, headers=_retry_after(err))
            _log_failure(err)
        self._answered(response, started)
        return response

    async def otlp_logs(self, request: web.Request) -> web.Response:
        """OTLP/HTTP ``POST /v1/logs``: the same limits, decoding checks, group commit and dead letters as
        ingest, answered as OTLP says (protobuf or JSON, as the request was). No exactly-once: an OTLP
        exporter sends no sequence, so a retry of a request whose answer was lost is written again."""
        started = time.perf_counter()
        content_type = request.headers.get("Content-Type")
        media = otlp.answer_type(content_type)
        try:
            self._authorize(request)  # before anything else: 401 whatever the body
            otlp.media_type(content_type)
            if PRODUCER_HEADER in request.headers or SEQUENCE_HEADER in request.headers:
                raise BadRequest(f"{PRODUCER_HEADER} and {SEQUENCE_HEADER} are for {INGEST_PATH}, not OTLP")
            spec = self._otlp
            assert spec is not None  # the route is there with source.otlp only
            async with self._body(request) as body:
                decoded = await self._decode(
                    lambda: otlp.decode_logs(
                        body,
                        media=media,
                        content_encoding=request.headers.get("Content-Encoding"),
                        spec=spec,
                        schema=self._table.schema,
                        options=self._decode_options,
                        received=dt.datetime.now(dt.UTC),
                    )
                )
                rejected = 0
                if decoded.table.num_rows or decoded.dead:  # an empty export is a success with no commit
                    batch = Batch(
                        decoded.table, dead=decoded.dead, request_id=request[REQUEST_ID_KEY], source="otlp"
                    )
                    rejected = (await self._group.submit(batch)).dead_lettered
            message = f"{rejected} log record(s) did not fit the table: see the dead-letter table"
            answer = otlp.success_body(rejected, media, message if rejected else "")
            response = web.Response(body=answer, content_type=media)
        except IngestError as err:
            response = web.Response(
                body=otlp.error_body(err, media),
                status=err.status,
                content_type=media,
                headers=_retry_after(err),
            )
            _log_failure(err)
        self._answered(response, started)
        return response

    @contextlib.asynccontextmanager
    async def _body(self, request: web.Request) -> AsyncIterator[bytes]:
        """The request's body, held against the in-flight budget until the block (its commit) ends."""
        reserved = 0
        try:
            declared = request.content_length
            if declared is not None and declared > self._spec.max_request_bytes:
                raise PayloadTooLarge(
                    f"body of {declared} bytes exceeds the limit of {self._spec.max_request_bytes} bytes"
                )
            if declared is not None:
                reserved = self._reserve(declared)
            try:
                body = await asyncio.wait_for(request.read(), self._spec.body_timeout_seconds)
            except TimeoutError:
                raise RequestTimeout(
                    f"the body did not arrive within {self._spec.body_timeout_seconds:g} s"
                ) from None
            except web.HTTPRequestEntityTooLarge:
                raise PayloadTooLarge(
                    f"body exceeds the limit of {self._spec.max_request_bytes} bytes"
                ) from None
            if declared is None:  # chunked upload: count it now that its size is known
                reserved = self._reserve(len(body))
            self._metrics.ingest_bytes.inc(len(body))
            yield body
        finally:
            self._inflight -= reserved
            self._metrics.inflight_bytes.set(self._inflight)

    async def _decode(self, work: Callable[[], Decoded]) -> Decoded:
        decoding = time.perf_counter()
        decoded = await asyncio.get_running_loop().run_in_executor(self._decoders, work)
        self._metrics.commit_stage.labels("decode").observe(time.perf_counter() - decoding)
        return decoded

    def _answered(self, response: web.Response, started: float) -> None:
        self._metrics.ingest_requests.labels(str(response.status)).inc()
        self._metrics.request_duration.observe(time.perf_counter() - started)

    def _authorize(self, request: web.Request) -> None:
        if self._auth is None:
            return
        given = request.headers.get("Authorization", "")
        # aiohttp decodes header bytes that are not UTF-8 as surrogates; "surrogateescape" gets the bytes
        # back, where a plain encode() raises (a 500 for any client that sends one).
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), f"Bearer {self._auth}".encode()):
            raise _Unauthorized("missing or wrong bearer token")

    def _reserve(self, nbytes: int) -> int:
        """Count a request against the in-flight byte budget; refuse it (429) when over budget.

        A single request larger than the budget still goes through when nothing else is in flight."""
        if self._inflight > 0 and self._inflight + nbytes > self._spec.max_inflight_bytes:
            raise Overloaded(
                f"{self._inflight} bytes in flight (budget {self._spec.max_inflight_bytes}); retry shortly"
            )
        self._inflight += nbytes
        self._metrics.inflight_bytes.set(self._inflight)
        return nbytes

    async def table_info(self, request: web.Request) -> web.Response:
        self._authorize(request)  # the URI names a bucket and a path: not for anyone who can connect
        return web.json_response(
            {
                "uri": self._table.uri,
                "version": self._table.version(),
                "schema": [
                    {"name": f.name, "type": type_name(f.type), "nullable": f.nullable}
                    for f in self._table.schema
                ],
            }
        )

    async def producer_info(self, request: web.Request) -> web.Response:
        """A producer's last committed sequence, read from the table's latest version (so any replica
        answers the same): where a restarted producer resumes."""
        self._authorize(request)
        producer = request.match_info["producer"]
        if (problem := producer_id_problem(producer)) is not None:
            raise BadRequest(problem)
        try:
            sequence, version = await asyncio.get_running_loop().run_in_executor(
                self._readers, self._latest.transaction, producer
            )
        except Exception as err:  # the store, not a bug: the client retries
            log.warning("reading the table for producer %r failed: %s", producer, err)
            raise Unavailable(f"the table could not be read: {err}") from None
        return web.json_response({"producerId": producer, "sequence": sequence, "version": version})

    async def openapi(self, request: web.Request) -> web.Response:
        document = openapi_document(
            self._table.schema,
            policy=self._spec,
            auth=self._auth is not None,
            version=__version__,
            otlp=self._otlp is not None,
        )
        return web.json_response(document)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    def close(self) -> None:
        self._decoders.shutdown(wait=True)
        self._readers.shutdown(wait=True)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SEQUENCE = re.compile(r"[0-9]{1,20}")  # more digits than any long has are refused without parsing them
# Where the middleware leaves the request id for handlers (the dead-letter table records it).
REQUEST_ID_KEY = web.RequestKey("request_id", str)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is JSON and carries a request id; an unexpected exception is a JSON 500, logged once.

    A 500 here is a bug in the writer, never an answer to input (input errors are ``IngestError``s)."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    headers = {REQUEST_ID_HEADER: request_id}
    request[REQUEST_ID_KEY] = request_id
    try:
        response = await handler(request)
    except IngestError as err:  # raised by a handler other than ingest, which answers its own
        return web.json_response(
            err.body() | {"requestId": request_id},
            status=err.status,
            headers={**_retry_after(err), **headers},
        )
    except web.HTTPException as err:  # aiohttp's own answers (404, 405, 413 ...): same shape as ours
        if err.status < 400:
            raise
        # Keep what the answer means beyond its status (a 405's Allow), not its plain-text body's framing.
        kept = {k: v for k, v in err.headers.items() if k.lower() not in ("content-type", "content-length")}
        return web.json_response(
            {"error": err.reason, "requestId": request_id}, status=err.status, headers={**kept, **headers}
        )
    except Exception:
        log.exception(
            "internal error answering %s %s (request id %s)", request.method, request.path, request_id
        )
        return web.json_response(
            {"error": "internal error", "requestId": request_id}, status=500, headers=headers
        )
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


class _Unauthorized(IngestError):
    status = 401


def _log_failure(err: IngestError) -> None:
    if err.status >= 500:
        log.warning("ingest failed: %s", err.message)


def _identity(request: web.Request) -> tuple[str | None, int | None]:
    """``X-Producer-Id`` and ``X-Sequence``: both or neither; the sequence a non-negative integer."""
    producer = request.headers.get(PRODUCER_HEADER)
    raw_sequence = request.headers.get(SEQUENCE_HEADER)
    if producer is None and raw_sequence is None:
        return None, None
    if not producer or raw_sequence is None:
        raise BadRequest(f"{PRODUCER_HEADER} and {SEQUENCE_HEADER} must be sent together")
    if (problem := producer_id_problem(producer)) is not None:
        raise BadRequest(f"{PRODUCER_HEADER}: {problem}")
    # ASCII digits only: int() also takes "1_000", " 7", "+7" and other scripts' digits ("\u0661" is 1).
    if not _SEQUENCE.fullmatch(raw_sequence):
        shown = raw_sequence.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise BadRequest(f"{SEQUENCE_HEADER} must be a non-negative integer in ASCII digits, got {shown!r}")
    sequence = int(raw_sequence)
    if sequence > MAX_SEQUENCE:
        # Delta stores it as a long; refusing it here keeps one bad header from failing a whole group.
        raise BadRequest(f"{SEQUENCE_HEADER} must be between 0 and {MAX_SEQUENCE}")
    return producer, sequence


def _retry_after(err: IngestError) -> dict[str, str]:
    return {"Retry-After": "1"} if err.status in (429, 503) else {}


def metrics_app(metrics: Metrics) -> web.Application:
    """``/metrics`` on its own port, so scraping never competes with ingest for a connection slot."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", serve)
    return app
