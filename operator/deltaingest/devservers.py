"""Local stand-ins for the cloud, for tests, benchmarks and demos: SeaweedFS (a real S3 server, honouring
If-None-Match) and moto's DynamoDB server, each a subprocess bound to 127.0.0.1 on free ports."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ACCESS_KEY = "deltaingest"
SECRET_KEY = "deltaingest-secret"
_GRPC_OFFSET = 10_000  # SeaweedFS takes port + 10000 for gRPC


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_grpc: bool = False) -> int:
    """A free loopback port (and, with ``with_grpc``, port + 10000 free too), below 55000."""
    for _ in range(1000):
        port = random.randrange(20_000, 45_000)
        if _bindable(port) and (not with_grpc or _bindable(port + _GRPC_OFFSET)):
            return port
    raise RuntimeError("no free port found")


class _Server:
    """A subprocess with a log file, stopped on exit."""

    process: subprocess.Popen[bytes] | None = None

    def __init__(self, workdir: Path | None = None) -> None:
        self.port = 0
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"deltaingest-{type(self).__name__.lower()}-"))
        self.log_path = self.workdir / "server.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir, start_new_session=True
            )
        return self.process

    def _wait_until(self, check: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Wait for ``check``; on failure stop the process (no caller's ``__exit__`` runs) and raise."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if check():
                return
            time.sleep(0.1)
        state = (
            f"exited with {self.process.returncode}" if self.process.poll() is not None else "did not come up"
        )
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{what} {state} within {timeout}s: {tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SeaweedFS(_Server):
    """``weed mini`` with S3 on a free port, credentials required, and one bucket."""

    def __init__(self, *, bucket: str = "deltaingest", workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.bucket = bucket

    def env(self) -> dict[str, str]:
        """The AWS variables a process needs to reach this server (delta-rs and boto3 alike)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self) -> SeaweedFS:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        used: set[int] = set()

        def port(grpc: bool = True) -> int:
            while (candidate := free_port(with_grpc=grpc)) in used:
                pass
            used.update({candidate, candidate + _GRPC_OFFSET})
            return candidate

        self.port = port()
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        args = [
            weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
            f"-bucket={self.bucket}", f"-s3.port={self.port}", f"-master.port={port()}",
            f"-volume.port={port()}", f"-filer.port={port()}", f"-webdav.port={port()}",
            f"-admin.port={port()}", f"-s3.port.iceberg={port(False)}", f"-s3.port.lance={port(False)}",
            f"-metricsPort={port(False)}",
        ]  # fmt: skip
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self._spawn(args, env)
        self._wait_until(self._bucket_ready, "SeaweedFS")
        return self

    def s3_client(self) -> Any:
        """A boto3 S3 client for this server (tests list objects with it to see what really is stored)."""
        import boto3  # noqa: PLC0415

        env = self.env()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )

    def _bucket_ready(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            self.s3_client().head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError):
            return False
        return True

    def __enter__(self) -> SeaweedFS:
        return self.start()


# moto's own server handles requests on parallel threads, and its DynamoDB backend does not serialize them:
# two conditional UpdateItems on one item can both succeed, which real DynamoDB never allows. Serving moto's
# application from a single thread makes every request atomic, as the lock's correctness requires.
_SERIAL_MOTO = """
import os, sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
run_simple(host, port, DomainDispatcherApplication(create_backend_app), threaded=False,
           request_handler=MotoRequestHandler)
"""


class MotoDynamoDB(_Server):
    """moto's DynamoDB (the real wire protocol) on a free port, one request at a time."""

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def start(self) -> MotoDynamoDB:
        self.port = free_port()
        self._spawn([sys.executable, "-c", _SERIAL_MOTO, "127.0.0.1", str(self.port)])
        self._wait_until(self._up, "moto")
        return self

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def __enter__(self) -> MotoDynamoDB:
        return self.start()
