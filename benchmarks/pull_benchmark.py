"""How fast `wes-arvados pull` is next to `skopeo copy docker://… docker-archive:…`, on one big image.

Builds (once, kept in --workdir) an image of realistic content in a loopback
registry, then alternates skopeo and wes-arvados runs with cold caches and prints
a table of medians: wall time, CPU time and peak RSS of the child process, and the
ratio to skopeo. Also times a re-pull of the unchanged image, `--layers=compressed`,
and the gzip inflaters this machine has. It prints; it asserts nothing.
`--smoke` runs it end to end on a tiny image in a throw-away registry, once: a
check that the script works (tests/test_benchmarks.py), whose figures mean nothing.

    .venv/bin/python benchmarks/pull_benchmark.py [--runs 6] [--size-mb 680] [--layers 8] [--smoke]

See benchmarks/README.rst.
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
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.images.builder import RegistryClient, big_image, push  # noqa: E402
from tests.images.registry import Registry  # noqa: E402

REPO, TAG = "bench/big", "1"

# What --smoke changes (flags given explicitly still win): a 4 MB image, one run, no warm-up.
SMOKE = {"runs": 1, "size_mb": 4, "layers": 2, "warm_gib": 0.0}
SMOKE_HELP = ("check the script end to end, not how fast anything is: a 4 MB image of 2 layers in a "
              "temporary registry (--workdir is not used), one run, no warm-up")


@dataclass
class Sample:
    """One run of a child process."""

    wall: float
    cpu: float
    rss_mb: float


@dataclass
class Case:
    """The runs of one command line."""

    name: str
    samples: List[Sample] = field(default_factory=list)

    def median(self, what: Callable[[Sample], float]) -> float:
        """The median of one measure over the runs."""
        return statistics.median(what(s) for s in self.samples)


def run_child(argv: List[str], env: Optional[Dict[str, str]] = None) -> Sample:
    """Run `argv` and measure it alone: wall time, and CPU time of its rusage from wait4.

    Peak RSS comes from GNU time's %M when /usr/bin/time exists: a child's own
    ru_maxrss also counts the memory of the parent it was forked from.
    """
    rss_file = Path(f"/tmp/wes-arvados-bench-rss-{os.getpid()}")
    launcher = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file)] if Path("/usr/bin/time").exists() else []
    started = time.monotonic()
    proc = subprocess.Popen(launcher + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        rss_file.unlink(missing_ok=True)
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{stderr}")
    rss_kb = float(rss_file.read_text().split()[-1]) if launcher else usage.ru_maxrss
    rss_file.unlink(missing_ok=True)
    return Sample(wall, usage.ru_utime + usage.ru_stime, rss_kb / 1024)


# GiB of memory touched and freed before each run (--warm-gib); see `settle`.
WARM_GIB = 3.0


def settle(warm_gib: float) -> None:
    """Start every run from the same state, so that none pays for its predecessor.

    Earlier runs' dirty pages go to the disk (`sync`). Then `warm_gib` GiB of memory is
    touched and freed: on a VM whose balloon reports free pages to the host (as
    this project's Firecracker VMs do), memory freed a while ago has gone back to
    the host, and a run whose page-cache writes land on such pages pays for the
    host faulting them in again: three times the system time of a run that finds
    recently freed memory (benchmarks/README.rst). Which one a run got depended on
    how much its predecessor had just freed: the run after skopeo was the slow one.
    """
    subprocess.run(["sync"], check=False)
    time.sleep(0.5)
    if warm_gib > 0:
        size = int(warm_gib * (1 << 30))
        touched = bytearray(size)
        touched[0:size:4096] = bytes(len(range(0, size, 4096)))  # a byte in every page
        del touched  # freed right before the run: the pages the run's writes get are warm


@contextmanager
def work_directory(workdir: Path, smoke: bool) -> Iterator[Path]:
    """`workdir`, or for a smoke run a temporary directory removed afterwards.

    A smoke run never uses the kept registry: its tiny image would take the big one's tag.
    """
    if not smoke:
        yield workdir
        return
    temporary = Path(tempfile.mkdtemp(prefix="wes-arvados-bench-smoke-"))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; `--smoke` (which `parser` must have) turns the defaults into `SMOKE`'s."""
    if parser.parse_known_args()[0].smoke:
        parser.set_defaults(**SMOKE)
    return parser.parse_args()


def ensure_image(registry: Registry, size_mb: int, layers: int) -> None:
    """Build and push the benchmark image unless the registry already has it."""
    if RegistryClient(registry.url).get_manifest(REPO, TAG).status_code == 200:
        return
    print(f"building a {size_mb} MB image of {layers} layers (once; kept in the work directory)…", flush=True)
    started = time.monotonic()
    # In a child process, so that this one stays small for the children it forks.
    subprocess.run([sys.executable, __file__, "--push-to", registry.url, "--size-mb", str(size_mb),
                    "--layers", str(layers)], check=True)
    print(f"built and pushed in {time.monotonic() - started:.0f} s", flush=True)


def build_and_push(url: str, size_mb: int, layers: int) -> None:
    """Build the benchmark image (in memory, deterministic) and push it to the registry at `url`."""
    push(url, REPO, TAG, big_image(size_mb << 20, layers=layers, seed=7))


def describe_image(registry: Registry) -> str:
    """Layer count and compressed size of the benchmark image."""
    manifest = RegistryClient(registry.url).get_manifest(REPO, TAG).json()
    compressed = sum(layer["size"] for layer in manifest["layers"])
    return f"{len(manifest['layers'])} layers, {compressed / 1e6:.1f} MB compressed"


def inflater_speeds(registry: Registry) -> Dict[str, float]:
    """MB/s of uncompressed output inflating the first layer, 1 MiB in and at most 1 MiB out per call."""
    manifest = RegistryClient(registry.url).get_manifest(REPO, TAG).json()
    blob = RegistryClient(registry.url).get_blob(REPO, manifest["layers"][0]["digest"])
    modules: Dict[str, object] = {"zlib (stdlib)": zlib}
    try:
        from isal import isal_zlib
        modules["isal"] = isal_zlib
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng
        modules["zlib-ng"] = zlib_ng
    except ImportError:
        pass
    speeds = {}
    view = memoryview(blob)
    for name, module in modules.items():
        best = float("inf")
        for _ in range(3):
            started, produced = time.perf_counter(), 0
            d = module.decompressobj(31)  # type: ignore[attr-defined]
            for i in range(0, len(blob), 1 << 20):
                data = view[i:i + (1 << 20)]
                while data:
                    produced += len(d.decompress(data, 1 << 20))
                    data = d.unconsumed_tail
            best = min(best, time.perf_counter() - started)
        speeds[name] = produced / best / 1e6
    return speeds


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6,
                        help="runs of each cold case (default 6: a median of 6 is steadier on a VM than one of 3)")
    parser.add_argument("--size-mb", type=int, default=680, help="uncompressed image size (default 680: ~434 MB gzip)")
    parser.add_argument("--layers", type=int, default=8, help="layers of the image (default 8)")
    parser.add_argument("--jobs", type=int, default=None, help="--jobs for wes-arvados (default: its own)")
    parser.add_argument("--warm-gib", type=float, default=WARM_GIB,
                        help=f"memory touched and freed before each run (default {WARM_GIB}; 0: none)")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "wes-arvados-benchmark", help="keeps the registry storage between runs of the benchmark")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    parser.add_argument("--push-to", help=argparse.SUPPRESS)
    args = parse_args(parser)
    if args.push_to:
        return build_and_push(args.push_to, args.size_mb, args.layers)
    if shutil.which("skopeo") is None:
        sys.exit("skopeo is missing (apt-get install skopeo)")
    with work_directory(args.workdir, args.smoke) as work, Registry(work / "registry") as registry:
        scratch = work / "scratch"
        ensure_image(registry, args.size_mb, args.layers)
        ref = f"{registry.host}/{REPO}:{TAG}"
        # The command as users run it: the console script pip installed (no runpy, no importlib.util).
        script = Path(sys.executable).with_name("wes-arvados")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "wes_arvados"]
        ours = command + ["pull", ref] + (["--jobs", str(args.jobs)] if args.jobs else [])
        # Bytecode as an installed package has it (pip compiles it), not recompiled on every start.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "wes_arvados")], check=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        out, cache = scratch / "out.tar", scratch / "cache"

        def fresh() -> None:
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            settle(args.warm_gib)

        skopeo = Case("skopeo copy docker:// docker-archive:")
        cold = Case("wes-arvados pull (uncompressed, cold cache)")
        compressed = Case("wes-arvados pull --layers=compressed (cold)")
        warm = Case("wes-arvados pull, re-pull of the unchanged image")
        # The part of every pull that no core shares: the interpreter and the imports (`--help` exits after them).
        startup = Case("wes-arvados start-up alone (pull --help)")
        def run_skopeo() -> None:
            fresh()
            skopeo.samples.append(run_child(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                                             f"docker-archive:{out}"]))

        def run_cold_then_warm() -> None:
            fresh()
            cold.samples.append(run_child(ours + ["-o", str(out), "--cache-dir", str(cache)], env))
            settle(args.warm_gib)
            warm.samples.append(run_child(ours + ["-o", str(out), "--cache-dir", str(cache)], env))
            startup.samples.append(run_child(command + ["pull", "--help"], env))

        def run_compressed() -> None:
            fresh()
            compressed.samples.append(run_child(ours + ["-o", str(out), "--cache-dir", str(cache),
                                                        "--layers", "compressed"], env))

        # The order turns at every run, so that no case always follows the same one
        # (on a VM, a run right after skopeo's seconds at full load is often slower).
        order = [run_skopeo, run_cold_then_warm, run_compressed]
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}…", flush=True)
            for step in order[run % 3:] + order[:run % 3]:
                step()
        shutil.rmtree(scratch, ignore_errors=True)
        from wes_arvados.images.compression import INFLATER

        print()
        if args.smoke:
            print("smoke run: it checks that the benchmark works; its figures mean nothing")
        print(f"image: {describe_image(registry)}; {os.cpu_count()} CPUs; {args.runs} runs each; "
              f"medians; CPU = user + system of the child; inflater in use: {INFLATER}; "
              f"{args.warm_gib:g} GiB touched and freed before each run")
        base_wall, base_cpu = skopeo.median(lambda s: s.wall), skopeo.median(lambda s: s.cpu)
        print(f"{'case':50} {'wall s':>7} {'CPU s':>7} {'RSS MB':>7} {'wall ×':>7} {'CPU ×':>7}  walls s")
        for case in (skopeo, cold, compressed, warm, startup):
            # Ratios of the unrounded medians, to three places: a target of 0.10 is not met by 0.104.
            wall, cpu = case.median(lambda s: s.wall), case.median(lambda s: s.cpu)
            rss = max(s.rss_mb for s in case.samples)
            walls = " ".join(f"{s.wall:.2f}" for s in case.samples)
            print(f"{case.name:50} {wall:7.2f} {cpu:7.2f} {rss:7.0f} {wall / base_wall:7.3f} {cpu / base_cpu:7.3f}  {walls}")
        print()
        print("gzip inflaters on the first layer (MB/s of output):",
              ", ".join(f"{name} {speed:.0f}" for name, speed in inflater_speeds(registry).items()))


if __name__ == "__main__":
    main()
