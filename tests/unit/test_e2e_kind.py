"""``make e2e-kind``: without a Docker engine it stops at once; its stores are where the example expects."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import yaml

from tests.unit.test_crd import K8S_VERSION

ROOT = Path(__file__).resolve().parents[2]
STORES = ROOT / "scripts" / "e2e-kind-stores.yaml"


def test_without_a_docker_engine_it_stops_at_once_and_creates_nothing(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "Makefile", tree)
    shutil.copytree(ROOT / "scripts", tree / "scripts")
    before = sorted(tree.rglob("*"))
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"  # nothing listens there, as with no engine
    result = subprocess.run(
        ["make", "-C", str(tree), "e2e-kind"], capture_output=True, env=env, timeout=120, check=False
    )
    assert result.returncode != 0
    assert b"e2e-kind needs a running Docker engine" in result.stderr
    assert b"stopped before building, installing or creating anything" in result.stderr
    # Neither the environment nor helm was installed, and no work directory was made.
    assert sorted(tree.rglob("*")) == before


def test_the_stores_validate_and_are_where_the_example_points() -> None:
    stores = list(yaml.safe_load_all(STORES.read_text()))
    for doc in stores:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    services = {
        f"http://{d['metadata']['name']}.{d['metadata']['namespace']}.svc:{d['spec']['ports'][0]['port']}"
        for d in stores
        if d["kind"] == "Service"
    }
    example = (ROOT / "examples" / "kubernetes" / "minio-dynamodb.yaml").read_text()
    (spec,) = [d["spec"] for d in yaml.safe_load_all(example) if d["kind"] == "DeltaTableIngest"]
    assert {spec["storage"]["endpoint"], spec["locking"]["endpoint"]} == services
    # The bucket Job runs the image the script builds and loads into the cluster.
    (job,) = [d for d in stores if d["kind"] == "Job"]
    built = re.search(r"^IMAGE=(\S+)", (ROOT / "scripts" / "e2e-kind.sh").read_text(), re.MULTILINE)
    assert built and job["spec"]["template"]["spec"]["containers"][0]["image"] == built.group(1)
