"""The naive HTTP baseline for ``bench writer``: the same decoding as the writer, then one
``write_deltalake(uri, data, mode="append")`` per request, concurrently, with no group commit, no table kept
open and no lock (delta-rs resolves the concurrent appends itself)."""

from __future__ import annotations

import argparse
import asyncio

import pyarrow as pa
from aiohttp import web
from deltalake import DeltaTable, write_deltalake

from deltaingest.ingest.decode import DecodeOptions, decode
from deltaingest.ingest.errors import IngestError
from deltaingest.table.schema import normalize
from deltaingest.table.storage import storage_options


def app(uri: str) -> web.Application:
    options = storage_options(uri)
    schema = normalize(pa.schema(DeltaTable(uri, storage_options=options).schema().to_arrow()))

    async def ingest(request: web.Request) -> web.Response:
        body = await request.read()
        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(
                None,
                lambda: decode(body, content_type=request.content_type, content_encoding=None, schema=schema,
                               options=DecodeOptions()).table,
            )  # fmt: skip
        except IngestError as err:
            return web.json_response(err.body(), status=err.status)
        await loop.run_in_executor(
            None, lambda: write_deltalake(uri, data, mode="append", storage_options=options)
        )
        return web.json_response({"rows": data.num_rows})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    application = web.Application(client_max_size=64 * 1024 * 1024)
    application.router.add_post("/v1/ingest", ingest)
    application.router.add_get("/readyz", ready)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(app(args.table), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
