"""The image: no Docker engine runs here, so the Dockerfile is linted and checked against what uses it."""

from __future__ import annotations

import re
import subprocess

from deltaingest.k8s.render import RUN_AS_USER
from tests.tools import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    command = [hadolint, "--failure-threshold", "info", str(DOCKERFILE)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_matches_the_pods_that_run_it() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(bases) == 3  # uv, build, runtime: multi-stage
    for base in bases:
        assert ":" in base
        assert not base.endswith(":latest")
    # The rendered pods and the chart set runAsUser; the image must have that user and run as it.
    assert f"USER {RUN_AS_USER}:{RUN_AS_USER}" in text
    assert f"--uid {RUN_AS_USER}" in text
    assert 'ENTRYPOINT ["deltaingest"]' in text
    assert "--frozen" in text  # the image installs exactly the locked dependencies
