"""Submitting on Arvados: the time from POST /runs to the runner request that a-c-r commits.

A real server (``wes-arvados serve --backend arvados``) against the Arvados double
of the tests, with its images in a loopback registry (served as docker.io's
mirror, so every name is portless, as a-c-r's own name parsing wants). Per run:

* images not in Keep: a new user, who can read no image, submits a workflow whose
  tool image is new (built for the run); the server imports it and the runner
  image (whose blobs its cache already holds after the first run), pins both and
  runs a-c-r;
* images in Keep: the same user submits the same workflow again;
* the peer: ``arvados-cwl-runner --submit --no-wait`` on the client, for that
  workflow, with its images in Keep (without them it would need Docker).

The time is from the request to the moment the double holds the request
Committed (ours), or to a-c-r's exit (the peer's, after it committed its request).
It asserts nothing. ``--smoke`` runs each case once: a check that the script works
(tests/test_benchmarks.py), whose figures mean nothing.

    .venv/bin/python benchmarks/submit_benchmark.py [--runs 3] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.arvados.double import ArvadosDouble  # noqa: E402
from tests.arvados.test_double import WORKFLOW  # noqa: E402
from tests.images.builder import _marker, build_image, busybox_rootfs_layer, push  # noqa: E402
from tests.images.registry import Registry  # noqa: E402
from tests.wes import WesClient, WesServer  # noqa: E402

NOT_IN_KEEP = "POST /runs -> committed, images not in Keep"
IN_KEEP = "POST /runs -> committed, images in Keep"
PEER = "arvados-cwl-runner --submit --no-wait (in Keep)"


def _committed(double: ArvadosDouble, run_id: str, started: float, timeout: float = 300) -> float:
    """Seconds from `started` until the double holds `run_id` Committed."""
    while time.monotonic() - started < timeout:
        record = double.record(run_id) or {}
        if record.get("state") == "Committed":
            return time.monotonic() - started
        if ((record.get("properties") or {}).get("wes_arvados_preparation") or {}).get("state") == "failed":
            raise SystemExit(f"run {run_id} failed: {record['properties']}")
        time.sleep(0.02)
    raise SystemExit(f"run {run_id} was not committed within {timeout} s")


def _submit(client: WesClient, double: ArvadosDouble, workflow: Path) -> float:
    started = time.monotonic()
    run_id = client.run(workflow, {"message": "hi"})
    return _committed(double, run_id, started)


def _peer(double: ArvadosDouble, token: str, workflow: Path, home: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARVADOS_")}
    env.update(double.env(token), HOME=str(home), PATH=str(Path(sys.executable).parent))  # no docker on PATH
    (workflow.parent / "job.yml").write_text("message: hi\n")
    started = time.monotonic()
    subprocess.run([str(Path(sys.executable).with_name("arvados-cwl-runner")), "--submit", "--no-wait",
                    "--api=containers", workflow.name, "job.yml"], cwd=workflow.parent, env=env, check=True,
                   capture_output=True)
    return time.monotonic() - started


def main() -> None:
    """Run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each case (default 3)")
    parser.add_argument("--smoke", action="store_true", help="each case once: a check that the script works")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    scratch = Path(tempfile.mkdtemp(prefix="wes-submit-bench-"))
    cases: Dict[str, List[float]] = {NOT_IN_KEEP: [], IN_KEEP: [], PEER: []}
    try:
        with Registry(scratch / "registry") as registry, ArvadosDouble(scratch / "arvados") as double:
            push(registry, "arvados/jobs", version("arvados-cwl-runner"),
                 build_image([busybox_rootfs_layer(), _marker("runner")]))
            server = WesServer(scratch / "state", extra_args=[
                "--backend", "arvados", "--registry-mirror", f"docker.io=http://{registry.host}"],
                env={"ARVADOS_API_HOST": double.host, "ARVADOS_API_HOST_INSECURE": "1",
                     "PATH": str(Path(sys.executable).parent)}).start()
            try:
                for run in range(runs):
                    print(f"run {run + 1}/{runs}…", flush=True)
                    _, token = double.add_user(f"bench-{run}")
                    client = WesClient(server.url)
                    client.http.headers["Authorization"] = f"Bearer {token}"
                    push(registry, f"bench/tool-{run}", "1", build_image([busybox_rootfs_layer(), _marker(f"t{run}")]))
                    workdir = scratch / f"run-{run}"
                    workdir.mkdir()
                    workflow = workdir / "wf.cwl"
                    workflow.write_text(WORKFLOW.format(image=f"bench/tool-{run}:1"))
                    cases[NOT_IN_KEEP].append(_submit(client, double, workflow))
                    cases[IN_KEEP].append(_submit(client, double, workflow))
                    cases[PEER].append(_peer(double, token, workflow, scratch / f"home-{run}"))
            finally:
                server.stop()
        print()
        if args.smoke:
            print("smoke run: it checks that the benchmark works; its figures mean nothing")
        print(f"{os.cpu_count()} CPUs; {runs} runs; medians; wall = from the request to the committed runner "
              "request; x = against the peer")
        print(f"{'case':50} {'wall s':>7} {'x peer':>7}  walls s")
        peer = statistics.median(cases[PEER])
        for name, walls in cases.items():
            wall = statistics.median(walls)
            print(f"{name:50} {wall:7.2f} {wall / peer:7.2f}  {' '.join(f'{w:.2f}' for w in walls)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
