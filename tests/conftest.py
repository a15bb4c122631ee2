"""Fixtures: real SeaweedFS and moto servers for the session, and writer processes talking to them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deltaingest.devservers import MotoDynamoDB, SeaweedFS
from tests.helpers import WriterProcess
from tests.properties import PROFILE


def pytest_report_header() -> str:
    return f"hypothesis profile: {PROFILE} (tests/properties.py)"


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedFS]:
    with SeaweedFS(bucket="tables") as server:
        yield server


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoDynamoDB]:
    with MotoDynamoDB() as server:
        yield server


@pytest.fixture
def cloud_env(seaweed: SeaweedFS, moto: MotoDynamoDB, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS environment for S3 on SeaweedFS and DynamoDB on moto, set in this process too."""
    env = {**seaweed.env(), **moto.env()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_uri(seaweed: SeaweedFS) -> str:
    return f"s3://{seaweed.bucket}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def lock_table() -> str:
    return f"locks-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[list[WriterProcess]]:
    """Collects writer processes started by a test and stops whatever is still running at the end."""
    started: list[WriterProcess] = []
    yield started
    for writer in started:
        writer.stop()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loopback traffic must never go through a proxy configured on the machine.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for key in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        if key in os.environ:
            monkeypatch.delenv(key)
