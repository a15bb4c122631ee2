"""Finding the external binaries some tests need (helm, kubectl, hadolint, prometheus, promtool); `make test`
installs them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str, *candidates: Path) -> str:
    """The tool's path; skip the test (or fail it under `make test`) when it is not installed."""
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    message = f"{name} is not installed: `make test` installs it (see the Makefile)"
    if os.environ.get("DELTAINGEST_REQUIRE_TOOLS"):
        pytest.fail(message)
    pytest.skip(message)


def helm() -> str:
    env = os.environ.get("HELM")
    return tool("helm", *([ROOT / env] if env else []), ROOT / ".tools" / "bin" / "helm")


def kubectl() -> str:
    env = os.environ.get("KUBECTL")
    return tool("kubectl", *([ROOT / env] if env else []), ROOT / ".tools" / "bin" / "kubectl")


def prometheus() -> str:
    return tool("prometheus", ROOT / ".tools" / "bin" / "prometheus")


def promtool() -> str:
    return tool("promtool", ROOT / ".tools" / "bin" / "promtool")
