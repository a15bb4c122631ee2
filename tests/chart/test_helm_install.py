"""`helm install` and `helm upgrade` with the CRDs, run for real: the helm (v4) and kubectl binaries the
project installs, against tests/chart/apiserver.py, a small in-process API server that models server-side
apply's field managers and conflicts.

The command lines are read from docs/operator.md ("Install with Helm"), so what users are told to run is
what runs here. What these tests prove: which requests helm and kubectl send (server-side apply, field
manager, force or not, which objects), that their flags parse, and how they react to the API server's
answers. What they cannot prove is the API server's side: that is the model in apiserver.py, written after
Kubernetes' server-side apply (a CRD's ``spec.versions`` is an atomic list; changing a field another manager
owns is a 409 unless forced; a manager is its name together with its operation, Apply or Update).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.apiserver import FakeAPIServer, Request
from tests.tools import ROOT, helm, kubectl

CHART = "charts/deltaingest"
CHART_CRDS = "charts/deltaingest/crds/"
OUR_CRD = "deltatableingests.deltaingest.io"
CRD_NAMES = {OUR_CRD}
CRD = "CustomResourceDefinition"


def documented_commands() -> dict[str, list[list[str]]]:
    """The helm and kubectl command lines of docs/operator.md's "Install with Helm" section, by heading."""
    text = (ROOT / "docs" / "operator.md").read_text()
    section = text.split("\n## Install with Helm\n", 1)[1].split("\n## ", 1)[0]
    found: dict[str, list[list[str]]] = {}
    heading = "Install with Helm"
    for block in re.split(r"^(### .*|```console\n(?:.*\n)*?```)$", section, flags=re.M):
        if block.startswith("### "):
            heading = block[4:].strip()
        elif block.startswith("```console"):
            joined = block.removeprefix("```console\n").removesuffix("```").replace("\\\n", " ")
            for line in joined.splitlines():
                if line.startswith("$ "):
                    argv = shlex.split(line[2:], comments=True)
                    if argv[0] in ("helm", "kubectl"):
                        found.setdefault(heading, []).append(argv)
    return found


DOCS = documented_commands()
FRESH = "Install with Helm"
EXISTING = "CRDs already in the cluster"
UPGRADE = "Upgrading the CRD"


def without(flag: str, commands: list[list[str]]) -> list[list[str]]:
    return [argv for argv in commands if flag not in argv]


def only(flag: str, commands: list[list[str]]) -> list[list[str]]:
    return [argv for argv in commands if flag in argv]


@dataclass
class Cluster:
    api: FakeAPIServer
    env: dict[str, str]
    tmp: Path

    def run(self, argv: list[str], **replace: str) -> subprocess.CompletedProcess[str]:
        """Run a command line with the real binary; ``replace`` swaps arguments (a chart or CRD path)."""
        binary = {"helm": helm(), "kubectl": kubectl()}[argv[0]]
        args = [replace.get(arg, arg) for arg in argv[1:]]
        return subprocess.run(
            [binary, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300, check=False
        )

    def ok(self, argv: list[str], **replace: str) -> subprocess.CompletedProcess[str]:
        result = self.run(argv, **replace)
        assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stdout}\n{result.stderr}"
        return result

    def crd(self, name: str = OUR_CRD) -> dict[str, Any]:
        obj = self.api.get(CRD, name)
        assert obj is not None, f"{name} is not in the cluster"
        return obj

    def crd_writes(self, since: int = 0) -> list[Request]:
        return list(self.api.writes(CRD, since))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with FakeAPIServer() as api:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig")),
            "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
            "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
            "HELM_DATA_HOME": str(tmp_path / "helm-data"),
            "NO_PROXY": "127.0.0.1,localhost",
        }
        yield Cluster(api, env, tmp_path)


def chart_crds() -> dict[str, dict[str, Any]]:
    docs = []
    for path in sorted((ROOT / CHART_CRDS).glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return {doc["metadata"]["name"]: doc for doc in docs}


def another_release(tmp: Path) -> tuple[str, str]:
    """A copy of the chart whose DeltaTableIngest CRD differs inside ``spec.versions`` (as any two releases'
    do), and its crds/ directory: what an older or newer release put in the cluster."""
    chart = tmp / "other-release"
    shutil.copytree(ROOT / CHART, chart)
    path = chart / "crds" / "deltaingest.io_deltatableingests.yaml"
    crd = yaml.safe_load(path.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["description"] = "DeltaTableIngest as another release of the chart describes it."
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return str(chart), str(chart / "crds")


def spec(obj: dict[str, Any]) -> Any:
    return obj["spec"]


def test_the_docs_have_the_three_paths() -> None:
    assert set(DOCS) == {FRESH, EXISTING, UPGRADE}, DOCS
    assert [argv[:2] for argv in DOCS[FRESH]] == [["helm", "install"]]
    assert [argv[:2] for argv in without("--skip-crds", DOCS[EXISTING])] == [
        ["kubectl", "apply"],
        ["helm", "install"],
    ]
    assert [argv[:2] for argv in only("--skip-crds", DOCS[EXISTING])] == [["helm", "install"]]
    assert [argv[:2] for argv in DOCS[UPGRADE]] == [["kubectl", "apply"], ["helm", "upgrade"]]


def test_fresh_install_applies_the_crds_server_side_as_field_manager_helm(cluster: Cluster) -> None:
    (install,) = DOCS[FRESH]
    result = cluster.ok(install)

    writes = cluster.crd_writes()
    assert {w.path.rsplit("/", 1)[1] for w in writes} == CRD_NAMES
    for write in writes:
        assert write.method == "PATCH"
        assert write.content_type.startswith("application/apply-patch")
        assert write.query["fieldManager"] == "helm"
        assert write.query["force"] == "false"
    for name, crd in chart_crds().items():
        assert spec(cluster.crd(name)) == spec(crd)
        assert cluster.api.managers(CRD, name).keys() == {"helm (Apply)"}

    # Every kubectl command in the docs applies as the field manager helm was just seen to use.
    documented = [argv for argvs in DOCS.values() for argv in argvs if argv[0] == "kubectl"]
    assert documented
    for argv in documented:
        assert f"--field-manager={writes[0].query['fieldManager']}" in argv, argv
        assert "--server-side" in argv
    # The chart's NOTES give the same CRD command as the docs.
    assert shlex.join(DOCS[UPGRADE][0]) in result.stdout


def test_issue_11_install_over_crds_applied_by_plain_kubectl_conflicts(cluster: Cluster) -> None:
    """The reported failure: CRDs from `kubectl apply --server-side` (field manager kubectl), then install."""
    _, other_crds = another_release(cluster.tmp)
    cluster.ok(["kubectl", "apply", "--server-side", "-f", other_crds])
    (install,) = DOCS[FRESH]
    result = cluster.run(install)
    assert result.returncode != 0
    failed = (
        "failed to install CRD crds/deltaingest.io_deltatableingests.yaml: conflict occurred while applying"
    )
    assert failed in result.stderr
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.versions' in result.stderr


def test_documented_install_over_crds_applied_by_kubectl(cluster: Cluster) -> None:
    _, other_crds = another_release(cluster.tmp)
    cluster.ok(["kubectl", "apply", "--server-side", "-f", other_crds])
    before = len(cluster.api.requests)
    for argv in without("--skip-crds", DOCS[EXISTING]):
        cluster.ok(argv)

    for name, crd in chart_crds().items():
        assert spec(cluster.crd(name)) == spec(crd)
    owners = cluster.api.managers(CRD, OUR_CRD)
    assert [m for m, fields in owners.items() if ".spec.versions" in fields] == ["helm (Apply)"]
    # helm's own apply of the CRDs went through, as the same manager, without forcing.
    helm_writes = [
        w for w in cluster.crd_writes(before) if "force" in w.query and w.query["force"] == "false"
    ]
    assert {w.path.rsplit("/", 1)[1] for w in helm_writes} == CRD_NAMES


def test_documented_install_over_crds_left_by_an_older_helm(cluster: Cluster) -> None:
    """CRDs created the Helm 3 way (a create, field manager helm, operation Update), the release since
    uninstalled: plain install conflicts with that other "helm"; the documented path works."""
    other_chart, _ = another_release(cluster.tmp)
    cluster.ok(["helm", "install", "old", other_chart, "--namespace", "old", "--create-namespace",
                "--server-side=false"])  # fmt: skip
    assert any(w.method == "POST" for w in cluster.crd_writes())
    cluster.ok(["helm", "uninstall", "old", "--namespace", "old"])
    assert cluster.api.get(CRD, OUR_CRD) is not None  # helm uninstall leaves crds/ alone

    (install,) = DOCS[FRESH]
    result = cluster.run(install)
    assert result.returncode != 0
    assert 'conflict with "helm" using apiextensions.k8s.io/v1: .spec.versions' in result.stderr

    for argv in without("--skip-crds", DOCS[EXISTING]):
        cluster.ok(argv)
    assert spec(cluster.crd()) == spec(chart_crds()[OUR_CRD])


def test_reinstall_over_crds_left_by_helm_4_needs_nothing(cluster: Cluster) -> None:
    """CRDs that Helm 4 applied are managed by the same `helm` (Apply): a later install updates them."""
    other_chart, _ = another_release(cluster.tmp)
    cluster.ok(["helm", "install", "old", other_chart, "--namespace", "old", "--create-namespace"])
    cluster.ok(["helm", "uninstall", "old", "--namespace", "old"])
    (install,) = DOCS[FRESH]
    cluster.ok(install)
    assert spec(cluster.crd()) == spec(chart_crds()[OUR_CRD])


def test_skip_crds_leaves_existing_crds_alone(cluster: Cluster) -> None:
    _, other_crds = another_release(cluster.tmp)
    cluster.ok(["kubectl", "apply", "--server-side", "-f", other_crds])
    theirs = spec(cluster.crd())
    before = len(cluster.api.requests)
    (install,) = only("--skip-crds", DOCS[EXISTING])
    cluster.ok(install)
    assert cluster.crd_writes(before) == []
    assert spec(cluster.crd()) == theirs
    assert cluster.api.managers(CRD, OUR_CRD).keys() == {"kubectl (Apply)"}


def test_documented_upgrade(cluster: Cluster) -> None:
    (install,) = DOCS[FRESH]
    cluster.ok(install)
    _, new_crds = another_release(cluster.tmp)  # the next release's CRDs
    crd_step, upgrade = DOCS[UPGRADE]

    # What the docs said before: a plain server-side apply is manager kubectl, and helm owns the CRDs.
    plain = cluster.run(["kubectl", "apply", "--server-side", "-f", new_crds])
    assert plain.returncode != 0
    assert 'conflict with "helm"' in plain.stderr

    cluster.ok(crd_step, **{CHART_CRDS: new_crds})
    assert cluster.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"].startswith(
        "DeltaTableIngest as another release"
    )
    before = len(cluster.api.requests)
    cluster.ok(upgrade)
    assert cluster.crd_writes(before) == []  # helm upgrade does not touch crds/
    assert cluster.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"].startswith(
        "DeltaTableIngest as another release"
    )
    deployments = list(cluster.api.writes("Deployment", before))
    assert deployments and all(w.query["fieldManager"] == "helm" for w in deployments)


def test_the_documented_crd_command_is_safe_to_repeat_on_an_empty_cluster(cluster: Cluster) -> None:
    """The kubectl step creates the CRDs when there are none, and running it twice changes nothing."""
    crd_step, _ = DOCS[UPGRADE]
    cluster.ok(crd_step)
    first = {name: spec(cluster.crd(name)) for name in CRD_NAMES}
    cluster.ok(crd_step)
    assert {name: spec(cluster.crd(name)) for name in CRD_NAMES} == first
    (install,) = DOCS[FRESH]
    cluster.ok(install)
