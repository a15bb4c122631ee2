"""Test helpers: writer subprocesses, HTTP calls, reading tables back."""

from __future__ import annotations

import collections
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deltaingest.config import Settings
from deltaingest.devservers import free_port
from deltaingest.table.schema import arrow_schema

EVENT_SCHEMA = [
    {"name": "id", "type": "long", "nullable": False},
    {"name": "ts", "type": "timestamp", "nullable": False},
    {"name": "day", "type": "date"},
    {"name": "user", "type": "string"},
    {"name": "score", "type": "double"},
    {"name": "count", "type": "integer"},
    {"name": "price", "type": "decimal(10,2)"},
    {"name": "ok", "type": "boolean"},
    {"name": "tags", "type": "array<string>"},
    {"name": "geo", "type": "struct<lat:double,lon:double>"},
]
# The Arrow schema a writer of EVENT_SCHEMA validates against.
EVENT_ARROW_SCHEMA = arrow_schema(Settings.model_validate({"table": {"schema": EVENT_SCHEMA}}).table.columns)


def settings_file(directory: Path, *, schema: list[dict[str, Any]] | None = None, **sections: Any) -> Path:
    """Write a settings YAML: a table schema plus any sections (writer, locking, ...)."""
    body: dict[str, Any] = {"table": {"schema": schema if schema is not None else EVENT_SCHEMA}}
    for key, value in sections.items():
        if key == "table":
            body["table"].update(value)
        else:
            body[key] = value
    path = directory / f"settings-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@dataclass
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def post(
    url: str,
    body: bytes,
    *,
    content_type: str = "application/x-ndjson",
    headers: dict[str, str] | None = None,
    gzip_body: bool = False,
    timeout: float = 60,
) -> Response:
    all_headers = {"Content-Type": content_type, **(headers or {})}
    if gzip_body:
        body = gzip.compress(body)
        all_headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=body, headers=all_headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Response(response.status, json.loads(response.read() or b"{}"), dict(response.headers))
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        return Response(err.code, parsed, dict(err.headers))


def get(url: str, timeout: float = 10) -> Response:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            raw = response.read()
            try:
                return Response(response.status, json.loads(raw))
            except ValueError:
                return Response(response.status, {"text": raw.decode()})
    except urllib.error.HTTPError as err:
        try:
            return Response(err.code, json.loads(err.read()), dict(err.headers))
        except ValueError:
            return Response(err.code, {}, dict(err.headers))


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def event(i: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": i,
        "ts": "2024-05-01T10:00:00+00:00",
        "day": "2024-05-01",
        "user": f"u{i % 7}",
    }
    row.update(overrides)
    return row


class WriterProcess:
    """``deltaingest writer`` (or ``daemon``) in a subprocess, ready when ``/readyz`` answers 200."""

    def __init__(
        self,
        table: str,
        config: Path,
        env: dict[str, str],
        log_dir: Path,
        *extra: str,
        command: str = "writer",
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.log_path = log_dir / f"{command}-{self.port}.log"
        args = [
            sys.executable, "-m", "deltaingest", command, "--table", table, "--config", str(config),
            "--host", "127.0.0.1", "--port", str(self.port), "--metrics-port", str(self.metrics_port), *extra,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
            )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ingest_url(self) -> str:
        return f"{self.url}/v1/ingest"

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"writer exited with {self.process.returncode}:\n{self.log()}")
            if get_quiet(f"{self.url}/readyz") == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"writer not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return response.read().decode()

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_writers(
    count: int,
    table: str,
    config: Path,
    env: dict[str, str],
    log_dir: Path,
    registry: list[WriterProcess],
    extra: tuple[str, ...] = (),
    command: str = "writer",
) -> list[WriterProcess]:
    """Start ``count`` writers (or daemons) on one table (``extra``: more flags), registered for clean-up by
    the ``writers`` fixture."""
    started = []
    for _ in range(count):
        started.append(WriterProcess(table, config, env, log_dir, *extra, command=command))
        registry.append(started[-1])
    return started


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll ``condition``; fail with ``what`` instead of hanging when it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def get_quiet(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "deltaingest", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


ROWS_PER_REQUEST = 20


@dataclass
class Load:
    """Clients that send uniquely numbered rows with producer ids, failing over to the next writer."""

    urls: list[str]
    clients: int
    stop_at_version: int
    acked: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    connection_errors: int = 0
    max_version: int = 0
    acks_by_url: collections.Counter[str] = field(default_factory=collections.Counter)
    dead: set[str] = field(default_factory=set)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, seconds: float = 240) -> None:
        threads = [threading.Thread(target=self._client, args=(c,)) for c in range(self.clients)]
        for thread in threads:
            thread.start()
        self._stop.wait(seconds)
        self._stop.set()
        for thread in threads:
            thread.join(60)

    def _client(self, client: int) -> None:
        sequence = 0
        while not self._stop.is_set():
            sequence += 1
            ids = [client * 10_000_000 + sequence * 100 + j for j in range(ROWS_PER_REQUEST)]
            body = ndjson([event(i) for i in ids])
            headers = {"X-Producer-Id": f"client-{client}", "X-Sequence": str(sequence)}
            if not self._send(client + sequence, body, headers, ids):
                return

    def _send(self, start: int, body: bytes, headers: dict[str, str], ids: list[int]) -> bool:
        """Send until acknowledged, trying the writers in turn (the same sequence on every try)."""
        for attempt in range(50):
            live = [u for u in self.urls if u not in self.dead] or self.urls
            url = live[(start + attempt) % len(live)]
            try:
                response = post(url, body, headers=headers, timeout=60)
            except OSError:
                with self._guard:
                    self.connection_errors += 1
                    self.dead.add(url)
                continue
            if response.status != 200:
                with self._guard:
                    self.failures.append(f"{response.status} {response.body}")
                return False
            with self._guard:
                self.acks_by_url[url] += 1
                # A duplicate ack is a retry whose first try committed unacknowledged: its rows count once.
                self.acked.extend(ids)
                self.max_version = max(self.max_version, response.body["version"])
                if self.max_version >= self.stop_at_version:
                    self._stop.set()
            return True
        with self._guard:
            self.failures.append("no writer reachable")
        return False
