"""The WES API under load: wes-arvados next to Sapporo and wes-service, then at scale, submitting, and a soak.

Each server runs in turn on loopback, from a virtualenv of its own for the peers
(``--venvs``, default ``.venv-bench/``, made from the pinned requirement files
beside this script), with the same number of web worker processes where the
server allows it: ``wes-arvados serve --workers 2`` (gunicorn + uvicorn), Sapporo
under uvicorn with 2 workers, wes-service with 1 (a run's state is its child
process, which only the worker that started it can wait for). Each is given the
same runs (a small CWL tool with two attachments), run by cwltool, and waits until
they end. Then ``wrk`` (Debian's, installed when missing) measures, one endpoint at
a time, GetRunStatus and GetRunLog of the first run, ListRuns (page_size=50) and
service-info: requests/s and p50/p99 latency, in one table with the ratio of
wes-arvados' requests/s to each server's.

Then wes-arvados alone:

* scale: ListRuns (its first page, and a page from the middle) and GetRunStatus,
  p50 with 100 and with 100,000 runs written straight into its SQLite store;
* submission: RunWorkflow p50/p99 (the tool and its input file as attachments)
  from 4 clients at once, and the time from submission to RUNNING;
* soak: 50 clients submitting and 200 polling (GetRunStatus, GetRunLog,
  ListRuns) for 60 s against the production server: errors, requests/s and
  percentiles.

It asserts nothing. ``--smoke`` checks that it works (tests/test_benchmarks.py):
Sapporo only as peer, 1 s per endpoint, 2,000 runs for the scale, a 3 s soak of
5 + 20 clients; its figures mean nothing.

    .venv/bin/python benchmarks/api/api_benchmark.py [--peers sapporo,wes-service] [--duration 10] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.wes import TERMINAL, WesServer, free_port  # noqa: E402
from wes_arvados.local.store import RunStore  # noqa: E402
from wes_arvados.wes.pages import encode_token  # noqa: E402

PEERS = ("sapporo", "wes-service")
ENDPOINTS = ("GetRunStatus", "GetRunLog", "ListRuns", "service-info")
WORKERS = 2

TOOL = """cwlVersion: v1.2
class: CommandLineTool
doc: Greets each name of a file.
baseCommand: [sed, 's/^/hello /']
inputs:
  names: {type: File, inputBinding: {position: 1}}
outputs:
  greetings: stdout
stdout: greetings.txt
"""
NAMES = "world\nWES\n"


# ---- servers --------------------------------------------------------------------------------


class Server:
    """A WES server started for the benchmark: its name, its base URL, how to stop it."""

    name = ""
    workers = WORKERS
    engine = "cwltool"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        """The WES base URL (the one below which /runs and /service-info are)."""
        return f"http://127.0.0.1:{self.port}/ga4gh/wes/v1"

    def start(self) -> "Server":
        """Start it and wait until service-info answers."""
        raise NotImplementedError

    def _popen(self, argv: List[str], env: Dict[str, str], cwd: Path) -> None:
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        _wait_ready(self.url + "/service-info", self.proc, self.workdir / f"{self.name}.log")

    def exited(self) -> bool:
        """Whether the server's process has ended."""
        return self.proc is not None and self.proc.poll() is not None

    def log_tail(self) -> str:
        """The end of the server's log."""
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the server and whatever it started in its session."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class WesArvados(Server):
    """``wes-arvados serve``, as in production: gunicorn with 2 uvicorn workers, the scheduler beside them."""

    name = "wes-arvados"

    def __init__(self, workdir: Path, state_dir: Optional[Path] = None, max_concurrent_runs: int = 2,
                 env: Optional[Dict[str, str]] = None) -> None:
        super().__init__(workdir)
        self.state_dir = state_dir or workdir / "wes-arvados-state"
        self.server = WesServer(self.state_dir, port=self.port, workers=WORKERS, max_concurrent_runs=max_concurrent_runs,
                                env={"WES_ARVADOS_VALIDATE_RESPONSES": "false", **(env or {})})

    def start(self) -> "WesArvados":
        """Start it (tests/wes.py's WesServer, without the tests' response validation)."""
        self.server.start()
        return self

    def exited(self) -> bool:
        """Whether the server's process has ended."""
        return self.server.proc is not None and self.server.proc.poll() is not None

    def log_tail(self) -> str:
        """The end of the server's log."""
        return self.server.log_path.read_text(errors="replace")[-3000:] if self.server.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server, then the supervisors of runs still going."""
        self.server.stop()
        self.server.kill_runs()


class Sapporo(Server):
    """Sapporo under uvicorn, 2 workers; its run.sh runs cwltool from its virtualenv instead of a container."""

    name = "sapporo"

    def __init__(self, workdir: Path, venv: Path) -> None:
        super().__init__(workdir)
        self.venv = venv

    @property
    def url(self) -> str:
        """Sapporo serves WES at its root."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Sapporo":
        """Write its launcher and run.sh, then start it."""
        home = self.workdir / "sapporo"
        (home / "runs").mkdir(parents=True, exist_ok=True)
        run_sh = home / "run.sh"
        run_sh.write_text(_sapporo_run_sh(self.venv))
        run_sh.chmod(0o755)
        launcher = home / "launch.py"
        launcher.write_text(SAPPORO_LAUNCHER)
        env = dict(os.environ, SAPPORO_RUN_DIR=str(home / "runs"), SAPPORO_RUN_SH=str(run_sh),
                   PATH=f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}")
        self._popen([str(self.venv / "bin" / "python"), str(launcher), str(self.port), str(self.workers)], env, home)
        return self


# Sapporo reads its settings from the command line too, so uvicorn's arguments must not reach it.
SAPPORO_LAUNCHER = """import logging.config
import sys

if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    sys.argv = sys.argv[:1]  # before sapporo is imported: it reads its settings at import
    import uvicorn
    from sapporo.app import init_app_state
    from sapporo.config import get_config, logging_config

    get_config()
    logging.config.dictConfig(logging_config(False))
    init_app_state()
    # Once here: each worker makes its tables at start, and two at once race ("table runs already exists").
    from sapporo.database import init_db

    init_db()
    uvicorn.run("sapporo.app:create_app", factory=True, host="127.0.0.1", port=port, workers=workers)
"""


def _sapporo_run_sh(venv: Path) -> str:
    """Sapporo's own run.sh, with its cwltool function running cwltool from `venv` (no Docker here)."""
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import sapporo, pathlib; print(pathlib.Path(sapporo.__file__).parent / 'run.sh')"],
                         check=True, capture_output=True, text=True).stdout.strip()
    script = Path(out).read_text()
    override = f"""function run_cwltool() {{
    cd "${{exe_dir}}"
    local -a cmd_arr=("{venv / 'bin' / 'cwltool'}" --outdir "${{outputs_dir}}")
    _append_engine_params cmd_arr
    cmd_arr+=("${{wf_url}}" "${{wf_params}}")
    _write_and_run cmd_arr
}}

"""
    main = script.rindex("trap 'desc_error' ERR")
    return script[:main] + override + script[main:]


class WesService(Server):
    """wes-service's cwl_runner backend under uvicorn, 1 worker: only the process that started a run can wait for it."""

    name = "wes-service"
    workers = 1

    def __init__(self, workdir: Path, venv: Path) -> None:
        super().__init__(workdir)
        self.venv = venv

    def start(self) -> "WesService":
        """Start it in a directory of its own (it keeps runs in ./workflows)."""
        home = self.workdir / "wes-service"
        home.mkdir(parents=True, exist_ok=True)
        launcher = home / "launch.py"
        launcher.write_text(WES_SERVICE_LAUNCHER)
        self._popen([str(self.venv / "bin" / "python"), str(launcher), str(self.port),
                     str(self.venv / "bin" / "cwltool")], dict(os.environ), home)
        return self


WES_SERVICE_LAUNCHER = """import sys

import uvicorn
from wes_service.wes_service_main import get_parser, setup

app = setup(get_parser().parse_args(["--opt", "runner=" + sys.argv[2]]))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]))
"""


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


# ---- peers' virtualenvs, wrk ----------------------------------------------------------------


def ensure_venv(venvs: Path, peer: str) -> Path:
    """The peer's virtualenv, made (or remade, when its requirement file changed) from the pinned file."""
    requirements = HERE / f"{peer}-requirements.txt"
    venv = venvs / peer
    stamp = venv / ".requirements-sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return venv
    print(f"installing {peer} into {venv} ...", file=sys.stderr, flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(requirements)], check=True)
    stamp.write_text(digest)
    return venv


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian when missing."""
    if shutil.which("wrk") is None:
        subprocess.run([str(ROOT / ".ci" / "apt-install"), "wrk"], check=True)
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is missing and could not be installed (apt-get install wrk)")
    return path


# ---- seeding runs ---------------------------------------------------------------------------


def write_workflow(directory: Path) -> Path:
    """The tool and its input file, the two attachments of every submission; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "greet.cwl").write_text(TOOL)
    (directory / "names.txt").write_text(NAMES)
    return directory


def submit(session: requests.Session, server: Server, workflow: Path, timeout: float = 60) -> requests.Response:
    """POST /runs with the tool and its input as attachments."""
    files = [("workflow_attachment", (name, (workflow / name).read_bytes())) for name in ("greet.cwl", "names.txt")]
    data = {"workflow_url": "greet.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2",
            "workflow_engine": server.engine,
            "workflow_params": json.dumps({"names": {"class": "File", "location": "names.txt"}})}
    return session.post(server.url + "/runs", data=data, files=files, timeout=timeout)


def seed_runs(server: Server, workflow: Path, count: int, timeout: float = 300) -> List[str]:
    """Submit `count` runs, 2 at a time (as wes-arvados runs them), each pair ended before the next; their ids."""
    session = requests.Session()
    run_ids: List[str] = []
    states: Dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(run_ids) < count:
        batch = []
        for _ in range(min(2, count - len(run_ids))):
            answer = submit(session, server, workflow)
            if answer.status_code != 200:
                raise SystemExit(f"{server.name} refused a run: {answer.status_code} {answer.text[:500]}")
            batch.append(answer.json()["run_id"])
        run_ids += batch
        while not set(states.get(r, "") for r in batch) <= TERMINAL:
            if server.exited():
                raise SystemExit(f"{server.name} exited while its runs were seeded:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{server.name}: runs still going after {timeout} s: {states}\n{server.log_tail()}")
            time.sleep(0.5)
            try:
                states.update({r: session.get(f"{server.url}/runs/{r}/status", timeout=30).json()["state"]
                               for r in batch})
            except requests.RequestException as exc:  # a peer's worker restarted under the runs' load: ask again
                print(f"{server.name}: {exc}; asking again", file=sys.stderr, flush=True)
    counts: Dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    print(f"{server.name}: {count} runs seeded, ended {counts}", file=sys.stderr, flush=True)
    return run_ids


# ---- wrk ------------------------------------------------------------------------------------


class Load:
    """One wrk measurement: requests/s, p50 and p99 in ms, answers that were not 2xx or 3xx, socket errors."""

    def __init__(self, rps: float, p50: float, p99: float, non_2xx: int, socket_errors: int) -> None:
        self.rps, self.p50, self.p99, self.non_2xx, self.socket_errors = rps, p50, p99, non_2xx, socket_errors


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(wrk_bin: str, url: str, duration: float, threads: int = 2, connections: int = 32) -> Load:
    """Run wrk against one URL and parse its --latency report."""
    out = subprocess.run([wrk_bin, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
                          "--latency", url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Load(rps, p50, p99, int(non_2xx.group(1)) if non_2xx else 0,
                sum(int(n) for n in sockets.groups()) if sockets else 0)


def endpoint_urls(server: Server, run_id: str) -> Dict[str, str]:
    """The URL wrk asks for each endpoint of the table."""
    return {
        "GetRunStatus": f"{server.url}/runs/{run_id}/status",
        "GetRunLog": f"{server.url}/runs/{run_id}",
        "ListRuns": f"{server.url}/runs?page_size=50",
        "service-info": f"{server.url}/service-info",
    }


def measure_api(server: Server, run_id: str, wrk_bin: str, duration: float, warm_up: bool = True) -> Dict[str, Load]:
    """Each endpoint under wrk, one after the other (a second of warm-up first, unless not `warm_up`)."""
    results = {}
    for endpoint, url in endpoint_urls(server, run_id).items():
        if warm_up:
            wrk(wrk_bin, url, 1)
        results[endpoint] = wrk(wrk_bin, url, duration)
    return results


def api_table(results: Dict[str, Dict[str, Load]], duration: float) -> str:
    """The table: per endpoint, each server's figures and wes-arvados' requests/s over its."""
    names = list(results)
    lines: List[str] = []
    lines.append(f"\nAPI: wrk -t2 -c32, {duration:g} s per endpoint; web workers: "
          + ", ".join(f"{n} {WORKERS if n != 'wes-service' else 1}" for n in names)
          + f"; {os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}")
    lines.append(f"{'endpoint':14} {'server':12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ours x':>7}")
    for endpoint in ENDPOINTS:
        ours = results["wes-arvados"][endpoint].rps
        for name in names:
            load = results[name][endpoint]
            lines.append(f"{endpoint:14} {name:12} {load.rps:9.1f} {load.p50:8.2f} {load.p99:8.2f} "
                  f"{load.non_2xx + load.socket_errors:7d} {f'{ours / load.rps:7.2f}' if load.rps else '      -'}")
    return "\n".join(lines)


# ---- scale ----------------------------------------------------------------------------------


def seed_store(state_dir: Path, count: int) -> List[str]:
    """`count` ended runs written straight into a new wes-arvados store; their ids, oldest first."""
    state_dir.mkdir(parents=True)
    database = state_dir / "wes.sqlite"
    RunStore(database)  # the schema, as the server makes it
    request = json.dumps({"workflow_url": "greet.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2",
                          "workflow_params": {}, "tags": {"batch": "scale"}})
    run_ids = [str(uuid.uuid4()) for _ in range(count)]
    with sqlite3.connect(str(database)) as db:
        db.executemany(
            "INSERT INTO runs (run_id, state, request, submitted_time, start_time, end_time, exit_code) "
            "VALUES (?, 'COMPLETE', ?, '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', '2026-01-01T00:00:02Z', 0)",
            [(run_id, request) for run_id in run_ids])
    return run_ids


def measure_scale(workdir: Path, wrk_bin: str, sizes: Tuple[int, int], duration: float, rounds: int = 3) -> str:
    """ListRuns and GetRunStatus p50 with few and with many stored runs, and their ratio.

    Both servers run at once and are measured in turns, `rounds` times each (medians),
    so that a change in the machine's load falls on both sizes alike.
    """
    cases = ("ListRuns, first page of 50", "ListRuns, a page of 50 from the middle", "GetRunStatus")
    servers: Dict[int, WesArvados] = {}
    urls: Dict[int, Dict[str, str]] = {}
    p50: Dict[int, Dict[str, List[float]]] = {size: {case: [] for case in cases} for size in sizes}
    try:
        for size in sizes:
            run_ids = seed_store(workdir / f"scale-{size}", size)
            server = servers[size] = WesArvados(workdir, workdir / f"scale-{size}").start()
            urls[size] = {cases[0]: f"{server.url}/runs?page_size=50",
                          cases[1]: f"{server.url}/runs?page_size=50&page_token={encode_token(size // 2)}",
                          cases[2]: f"{server.url}/runs/{run_ids[size // 2]}/status"}
            for url in urls[size].values():
                wrk(wrk_bin, url, 1)  # warm-up: imports, connections, the database's pages
        for _ in range(rounds):
            for case in cases:
                for size in sizes:
                    p50[size][case].append(wrk(wrk_bin, urls[size][case], duration).p50)
    finally:
        for server in servers.values():
            server.stop()
    few, many = sizes
    lines = [f"\nScale: wes-arvados, runs written into its store; wrk -t2 -c32, {duration:g} s each, "
             f"{rounds} turns per size; median p50 in ms",
             f"{'case':40} {f'{few:,} runs':>12} {f'{many:,} runs':>14} {'ratio':>7}"]
    for case in cases:
        a, b = statistics.median(p50[few][case]), statistics.median(p50[many][case])
        lines.append(f"{case:40} {a:12.2f} {b:14.2f} {b / a:7.2f}")
    return "\n".join(lines)


# ---- submission -----------------------------------------------------------------------------


def _percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def measure_submission(server: WesArvados, workflow: Path, submissions: int, to_running: int,
                       cached: Optional[List[float]], cached_missing: str) -> str:
    """RunWorkflow latency from 4 clients at once; then the time from submission to RUNNING, one run at a time."""
    lines: List[str] = []
    latencies: List[float] = []
    errors: List[str] = []
    lock = threading.Lock()
    per_client = [submissions // 4 + (1 if i < submissions % 4 else 0) for i in range(4)]

    def client(count: int) -> None:
        session = requests.Session()
        for _ in range(count):
            started = time.perf_counter()
            answer = submit(session, server, workflow)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed * 1000)
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,)) for n in per_client]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _cancel_all(server)

    waits = _times_to_running(server, lambda session: submit(session, server, workflow), to_running)
    lines.append("\nSubmission: wes-arvados; the tool and its input file as 2 attachments (no DockerRequirement); "
                 "image cached: a tool whose DockerRequirement image the server already loaded into docker")
    lines.append(f"{'case':40} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    lines.append(f"{'RunWorkflow, 4 clients at once':40} {len(latencies):5d} {statistics.median(latencies):8.2f} "
          f"{_percentile(latencies, 0.99):8.2f} {len(errors):7d}")
    lines.append(f"{'submission to RUNNING, one at a time':40} {len(waits):5d} {statistics.median(waits):8.2f} "
          f"{_percentile(waits, 0.99):8.2f} {0:7d}")
    if cached is not None:
        lines.append(f"{'submission to RUNNING, image cached':40} {len(cached):5d} {statistics.median(cached):8.2f} "
                     f"{_percentile(cached, 0.99):8.2f} {0:7d}")
    else:
        lines.append(f"  (submission to RUNNING with a cached image not measured: {cached_missing})")
    for error in errors[:5]:
        lines.append(f"  error: {error}")
    return "\n".join(lines)


def _times_to_running(server: Server, post: Any, count: int) -> List[float]:
    """Milliseconds from each submission to RUNNING, one run at a time (each canceled once seen RUNNING)."""
    session = requests.Session()
    waits: List[float] = []
    for _ in range(count):
        started = time.perf_counter()
        answer = post(session)
        if answer.status_code != 200:
            raise SystemExit(f"submission refused: {answer.status_code} {answer.text[:500]}")
        run_id = answer.json()["run_id"]
        state = "QUEUED"
        while state in ("QUEUED", "INITIALIZING"):
            state = session.get(f"{server.url}/runs/{run_id}/status", timeout=30).json()["state"]
            if state in ("QUEUED", "INITIALIZING"):
                time.sleep(0.005)
        if state != "RUNNING":
            log = session.get(f"{server.url}/runs/{run_id}", timeout=30).json()
            raise SystemExit(f"run {run_id} went from QUEUED to {state}, never seen RUNNING: {log['system_logs']}")
        waits.append((time.perf_counter() - started) * 1000)
        session.post(f"{server.url}/runs/{run_id}/cancel", timeout=30)
        _wait_ended(session, server, run_id)
    return waits


IMAGE_TOOL = """cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement: {{dockerPull: {image}}}
baseCommand: [sleep, "30"]
inputs: []
outputs: []
"""


def cached_image_times(workdir: Path, count: int) -> Tuple[Optional[List[float]], str]:
    """Submission to RUNNING for a tool whose image the server's docker already has (pulled by a first run).

    The image (busybox and a marker, tests/images/builder.py) is pushed to a loopback
    registry (tests/images/registry.py); the server loads it into docker on the first run.
    Returns (milliseconds per run, "") or (None, why it could not be measured).
    """
    from tests.images.builder import ImageFactory, push
    from tests.images.docker import DockerDaemon
    from tests.images.registry import REGISTRY_BIN, Registry

    reason = DockerDaemon.unavailable_reason() or (None if REGISTRY_BIN.exists() else f"{REGISTRY_BIN} is missing")
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            raise SystemExit(f"CI cannot measure submission with a cached image: {reason}")
        return None, reason
    daemon = DockerDaemon(workdir / "docker").start()
    try:
        with Registry(workdir / "registry") as registry:
            push(registry, "bench/tool", "1", ImageFactory().docker_schema2())
            image = f"{registry.host}/bench/tool:1"
            daemon.track(image)
            tool = workdir / "image-tool"
            tool.mkdir()
            (tool / "tool.cwl").write_text(IMAGE_TOOL.format(image=image))
            server = WesArvados(workdir, workdir / "image-state", env={"DOCKER_HOST": daemon.host}).start()

            def post(session: requests.Session) -> requests.Response:
                files = [("workflow_attachment", ("tool.cwl", (tool / "tool.cwl").read_bytes()))]
                return session.post(server.url + "/runs", files=files, timeout=60, data={
                    "workflow_url": "tool.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2",
                    "workflow_params": "{}"})

            try:
                _times_to_running(server, post, 1)  # the first run pulls the image and loads it
                return _times_to_running(server, post, count), ""
            finally:
                server.stop()
    finally:
        daemon.stop()


def _cancel_all(server: Server) -> None:
    """Cancel every queued or running run, so that the next measurement has the machine to itself."""
    session = requests.Session()
    params = [("page_size", "1000")] + [("state", s) for s in ("QUEUED", "INITIALIZING", "RUNNING")]
    page = session.get(f"{server.url}/runs", params=params, timeout=60).json()
    for run in page["runs"]:
        session.post(f"{server.url}/runs/{run['run_id']}/cancel", timeout=60)
    for run in page["runs"]:
        _wait_ended(session, server, run["run_id"])


def _wait_ended(session: requests.Session, server: Server, run_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if session.get(f"{server.url}/runs/{run_id}/status", timeout=30).json()["state"] in TERMINAL:
            return
        time.sleep(0.05)
    raise SystemExit(f"run {run_id} did not end within {timeout} s")


# ---- soak -----------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection to the server: a request, its answer (status, body).

    Written out by hand: with 250 clients, a general HTTP client (httpx) spent a core of
    its own and became the soak's bottleneck.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = None

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> Tuple[int, bytes]:
        """Send one request; (status, body) of the answer (a closed connection is opened again next time)."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        try:
            status_line = await reader.readline()
            headers: Dict[str, str] = {}
            while True:
                line = (await reader.readline()).decode("latin-1").strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int((await reader.readline()).strip(), 16)
                    data += await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                data = await reader.readexactly(int(headers.get("content-length", "0")))
            if headers.get("connection", "").lower() == "close":
                self.close()
            return int(status_line.split()[1]), data
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            self.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def _multipart(fields: Dict[str, str], files: Dict[str, bytes]) -> Tuple[bytes, str]:
    """A multipart/form-data body of RunWorkflow's fields and attachments, and its content type."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="workflow_attachment"; filename="{name}"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
              for name, data in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def soak(server: WesArvados, workflow: Path, run_ids: List[str], submitters: int, pollers: int,
         duration: float) -> str:
    """`submitters` clients submitting and `pollers` polling, for `duration` s; errors and percentiles per operation."""
    lines: List[str] = []
    base = "/ga4gh/wes/v1"
    body, content_type = _multipart(
        {"workflow_url": "greet.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2",
         "workflow_params": json.dumps({"names": {"class": "File", "location": "names.txt"}})},
        {name: (workflow / name).read_bytes() for name in ("greet.cwl", "names.txt")})
    samples: Dict[str, List[float]] = {"RunWorkflow": [], "GetRunStatus": [], "GetRunLog": [], "ListRuns": []}
    errors: Dict[str, int] = {op: 0 for op in samples}
    kinds: Dict[str, int] = {}  # what the errors were: "operation: status message" or the exception
    known = list(run_ids)

    def error(op: str, what: str) -> None:
        errors[op] += 1
        kinds[f"{op}: {what}"] = kinds.get(f"{op}: {what}", 0) + 1

    async def timed(op: str, connection: Connection, method: str, path: str, data: bytes = b"") -> Optional[bytes]:
        started = time.perf_counter()
        try:
            status, answer = await asyncio.wait_for(connection.request(method, base + path, data, content_type), 60)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as exc:
            error(op, f"{type(exc).__name__} {exc}"[:160])
            connection.close()
            return None
        samples[op].append((time.perf_counter() - started) * 1000)
        if status != 200:
            error(op, f"{status} {answer[:120]!r}")
            return None
        return answer

    async def submitter(deadline: float) -> None:
        connection = Connection("127.0.0.1", server.port)
        while time.monotonic() < deadline:
            answer = await timed("RunWorkflow", connection, "POST", "/runs", body)
            if answer is not None:
                known.append(json.loads(answer)["run_id"])
        connection.close()

    async def poller(deadline: float) -> None:
        connection = Connection("127.0.0.1", server.port)
        while time.monotonic() < deadline:
            pick = random.random()
            if pick < 0.8:
                await timed("GetRunStatus", connection, "GET", f"/runs/{random.choice(known)}/status")
            elif pick < 0.95:
                await timed("GetRunLog", connection, "GET", f"/runs/{random.choice(known)}")
            else:
                await timed("ListRuns", connection, "GET", "/runs?page_size=50")
        connection.close()

    async def main() -> float:
        started = time.monotonic()
        deadline = started + duration
        await asyncio.gather(*[submitter(deadline) for _ in range(submitters)],
                             *[poller(deadline) for _ in range(pollers)])
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    lines.append(f"\nSoak: wes-arvados serve (2 web workers, 2 runs at once), {submitters} submitting and {pollers} polling "
          f"for {duration:g} s (took {elapsed:.1f} s)")
    lines.append(f"{'operation':14} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8}")
    for op, values in list(samples.items()) + [("all", [v for vs in samples.values() for v in vs])]:
        count_errors = sum(errors.values()) if op == "all" else errors[op]
        if not values:
            lines.append(f"{op:14} {0:9d} {count_errors:7d}")
            continue
        lines.append(f"{op:14} {len(values):9d} {count_errors:7d} {len(values) / elapsed:8.1f} {_percentile(values, 0.5):8.2f} "
              f"{_percentile(values, 0.9):8.2f} {_percentile(values, 0.99):8.2f} {max(values):8.2f}")
    for what, count in sorted(kinds.items(), key=lambda item: -item[1])[:10]:
        lines.append(f"  {count} x {what}")
    return "\n".join(lines)


# ---- main -----------------------------------------------------------------------------------


def _peer(name: str, workdir: Path, venvs: Path) -> Server:
    venv = ensure_venv(venvs, name)
    return Sapporo(workdir, venv) if name == "sapporo" else WesService(workdir, venv)


def _peer_names(value: str) -> List[str]:
    names = [n for n in value.split(",") if n]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer {unknown}; choose among {', '.join(PEERS)}")
    return names


def main(argv: Optional[Iterable[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=_peer_names, default=None, help="comma-separated (default: sapporo,wes-service)")
    parser.add_argument("--venvs", type=Path, default=ROOT / ".venv-bench", help="where the peers' virtualenvs are")
    parser.add_argument("--duration", type=float, default=10, help="seconds of wrk per endpoint (default 10)")
    parser.add_argument("--runs", type=int, default=10, help="runs seeded in each server (default 10)")
    parser.add_argument("--scale", type=int, default=100_000, help="stored runs of the scale case (default 100000)")
    parser.add_argument("--soak", type=float, default=60, help="seconds of the soak (default 60)")
    parser.add_argument("--install-only", action="store_true", help="make the peers' virtualenvs and wrk, then stop")
    parser.add_argument("--smoke", action="store_true", help="seconds, Sapporo only: a check that the script works")
    args = parser.parse_args(list(argv) if argv is not None else None)
    peers = args.peers if args.peers is not None else (["sapporo"] if args.smoke else list(PEERS))
    if args.smoke:
        args.duration, args.runs, args.scale, args.soak = 1, 2, 2000, 3
    submitters, pollers = (5, 20) if args.smoke else (50, 200)
    wrk_bin = ensure_wrk()
    for name in peers:
        ensure_venv(args.venvs, name)
    if args.install_only:
        return

    workdir = Path(tempfile.mkdtemp(prefix="wes-api-benchmark-"))
    try:
        workflow = write_workflow(workdir / "workflow")
        results: Dict[str, Dict[str, Load]] = {}
        ours = WesArvados(workdir).start()
        try:
            run_ids = seed_runs(ours, workflow, args.runs)
            results[ours.name] = measure_api(ours, run_ids[0], wrk_bin, args.duration, not args.smoke)
            cached, cached_missing = cached_image_times(workdir, 1 if args.smoke else 10)
            submission = measure_submission(ours, workflow, 8 if args.smoke else 100, 1 if args.smoke else 10,
                                            cached, cached_missing)
            soaked = soak(ours, workflow, run_ids, submitters, pollers, args.soak)
        finally:
            ours.stop()
        for name in peers:
            peer = _peer(name, workdir, args.venvs).start()
            try:
                peer_runs = seed_runs(peer, workflow, args.runs)
                results[peer.name] = measure_api(peer, peer_runs[0], wrk_bin, args.duration, not args.smoke)
            finally:
                peer.stop()
        scale = measure_scale(workdir, wrk_bin, (100, args.scale), 1 if args.smoke else 3, 1 if args.smoke else 3)
        print("\n".join([api_table(results, args.duration), scale, submission, soaked]))
        if args.smoke:
            print("\nsmoke run: it checks that the benchmark works; its figures mean nothing")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
