"""Storing a big image in Keep: `wes-arvados pull --arvados` next to `docker pull` + `arv-keepdocker`.

Uses the benchmark image of pull_benchmark.py (built once into a loopback
registry) and the Arvados double of the tests (tests/arvados) as the cluster. For
each tool it prints wall and CPU seconds, peak RSS and the bytes PUT to Keep;
then the same again for a second, unchanged store (nothing should be uploaded).
arv-keepdocker is the peer: it needs a Docker daemon (the tests' DockerDaemon),
which first pulls the image from the registry (timed apart). It asserts nothing.
`--smoke` runs it end to end on a tiny image in a throw-away registry, once, the
peer included when a Docker daemon can be had: a check that the script works
(tests/test_benchmarks.py), whose figures mean nothing.

    .venv/bin/python benchmarks/keep_benchmark.py [--runs 2] [--no-peer] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pull_benchmark import (REPO, SMOKE_HELP, TAG, WARM_GIB, Sample, ensure_image,  # noqa: E402
                                       parse_args, run_child, settle, work_directory)
from tests.arvados.double import ArvadosDouble  # noqa: E402
from tests.images.docker import DockerDaemon  # noqa: E402
from tests.images.registry import Registry  # noqa: E402


def _row(name: str, samples: List[Sample], put: List[int]) -> str:
    wall = statistics.median(s.wall for s in samples)
    cpu = statistics.median(s.cpu for s in samples)
    rss = max(s.rss_mb for s in samples)
    return f"{name:55} {wall:7.2f} {cpu:7.2f} {rss:7.0f} {statistics.median(put) / 1e6:9.1f}"


def main() -> None:
    """Run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each case (default 2)")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "wes-arvados-benchmark", help="where pull_benchmark.py keeps its registry storage")
    parser.add_argument("--no-peer", action="store_true", help="skip arv-keepdocker (it needs a Docker daemon)")
    parser.add_argument("--warm-gib", type=float, default=WARM_GIB,
                        help=f"memory touched and freed before each run (default {WARM_GIB}; 0: none)")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    # pull_benchmark.py's image, whose registry storage this script shares; --smoke makes it tiny.
    parser.set_defaults(size_mb=680, layers=8)
    args = parse_args(parser)
    scratch = Path(tempfile.mkdtemp(prefix="wes-keep-bench-"))
    try:
        with work_directory(args.workdir, args.smoke) as work, Registry(work / "registry") as registry, \
                ArvadosDouble(scratch / "arvados") as double:
            ensure_image(registry, args.size_mb, args.layers)
            ref = f"{registry.host}/{REPO}:{TAG}"
            bin_dir = Path(sys.executable).parent
            cases: Dict[str, List[Sample]] = {}
            puts: Dict[str, List[int]] = {}

            def measure(name: str, argv: List[str], env: Dict[str, str]) -> None:
                settle(args.warm_gib)
                double.reset_counters()
                cases.setdefault(name, []).append(run_child(argv, env))
                puts.setdefault(name, []).append(double.keep_put_bytes)

            daemon: Optional[DockerDaemon] = None
            if not args.no_peer and DockerDaemon.unavailable_reason() is None:
                daemon = DockerDaemon(scratch / "docker").start()
            try:
                for run in range(args.runs):
                    print(f"run {run + 1}/{args.runs}…", flush=True)
                    _, token = double.add_user(f"bench-{run}")
                    env = {k: v for k, v in os.environ.items() if not k.startswith("ARVADOS_")}
                    env.update(double.env(token), PYTHONPATH=str(ROOT), HOME=str(scratch / f"home-{run}"))
                    env.pop("PYTHONDONTWRITEBYTECODE", None)
                    ours = [sys.executable, "-m", "wes_arvados", "pull", ref, "--arvados",
                            "--cache-dir", str(scratch / f"cache-{run}")]
                    measure("wes-arvados pull --arvados (cold cache, empty Keep)", ours, env)
                    measure("wes-arvados pull --arvados again (unchanged)", ours, env)
                    if daemon is not None:
                        _, peer_token = double.add_user(f"peer-{run}")
                        peer_env = dict(env, **double.env(peer_token), DOCKER_HOST=daemon.host)
                        daemon.docker("rmi", "-f", ref, check=False)
                        started = time.monotonic()
                        daemon.docker("pull", ref)
                        daemon.track(ref)
                        cases.setdefault("  (docker pull, before arv-keepdocker)", []).append(
                            Sample(time.monotonic() - started, 0.0, 0.0))
                        puts.setdefault("  (docker pull, before arv-keepdocker)", []).append(0)
                        measure("arv-keepdocker (docker save + arv-put)",
                                [str(bin_dir / "arv-keepdocker"), f"{registry.host}/{REPO}", TAG], peer_env)
            finally:
                if daemon is not None:
                    daemon.stop()
            print()
            if args.smoke:
                print("smoke run: it checks that the benchmark works; its figures mean nothing")
            print(f"image {ref}: {args.layers} layers, ~{args.size_mb} MB uncompressed; {os.cpu_count()} CPUs; "
                  f"{args.runs} runs; medians; "
                  "RSS = peak of the child (GNU time)")
            print(f"{'case':55} {'wall s':>7} {'CPU s':>7} {'RSS MB':>7} {'PUT MB':>9}")
            for name, samples in cases.items():
                print(_row(name, samples, puts[name]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
