"""schemathesis against a live writer over real HTTP (SeaweedFS, the DynamoDB lease): every operation with
generated cases, all checks. No 5xx, every status, header and body as the document says, valid data
accepted and invalid data refused (two exceptions, explained in schemathesis.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from tests.helpers import WriterProcess, get, settings_file, start_writers

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.parametrize(
    ("auth", "logs"), [(False, False), (True, False), (True, True)], ids=["open", "bearer-token", "otlp-logs"]
)
def test_schemathesis_finds_nothing(
    auth: bool,
    logs: bool,
    s3_uri: str,
    cloud_env: dict[str, str],
    lock_table: str,
    tmp_path: Path,
    writers: list[WriterProcess],
) -> None:
    writer_settings = {"authTokenEnv": "INGEST_TOKEN"} if auth else {}
    log_table: dict[str, Any] = {"schema": [], "source": {"otlp": {}}} if logs else {}
    config = settings_file(
        tmp_path, writer=writer_settings, locking={"kind": "dynamodb", "tableName": lock_table}, **log_table
    )
    env = {**cloud_env, "INGEST_TOKEN": "s3cret"} if auth else cloud_env
    (writer,) = start_writers(1, s3_uri, config, env, tmp_path, writers)
    document = get(f"{writer.url}/v1/openapi.json")
    assert document.status == 200 and document.body["openapi"] == "3.1.0"
    assert ("/v1/logs" in document.body["paths"]) is logs
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
        f"{writer.url}/v1/openapi.json", "--checks", "all", "--max-examples", "60", "--seed", "1",
        "--no-color", "--report-dir", str(tmp_path / "schemathesis"),
        *(("--header", "Authorization: Bearer s3cret") if auth else ()),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout
    # what it wrote is a readable table
    DeltaTable(s3_uri, storage_options=cloud_env).to_pyarrow_table()
