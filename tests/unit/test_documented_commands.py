"""The commands README.md and docs/ give run on a machine that ``make`` set up."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_no_documented_command_needs_uv_on_path() -> None:
    # Where uv is not on PATH, make installs its own copy in .tools/bin, so `uv run ...` is not found.
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in DOCS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\buv run\b", line)
    ]
    assert not found, found


def test_every_documented_venv_tool_is_installed() -> None:
    named = {name for path in DOCS for name in re.findall(r"\.venv/bin/([\w.-]+)", path.read_text())}
    assert named, "the docs name no .venv/bin tool: this test checks nothing"
    installed = Path(sys.prefix) / "bin"
    assert sorted(n for n in named if not (installed / n).exists()) == []
