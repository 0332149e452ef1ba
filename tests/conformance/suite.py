"""A small library around the CWL v1.2 conformance suite and cwltest.

It finds the suite (``shared/cwl-v1.2`` beside the project), lists its tests,
runs cwltest on a selection of them with a given CWL runner — plain cwltool,
toil-wes-cwl-runner sending each test to a WES server, or our own client
``wes-arvados run`` doing the same — and returns each
test's outcome: passed, failed, or unsupported (the runner exited 33 on a test
that is not `required`).

Tests run one of two ways (`engine_options`): with containers, every test
included, the tools' Docker images coming from the stand-ins of
``containers.py``; or with ``--no-container``, tools on the host and the tests
tagged `docker` (EXCLUDED_TAGS) left out, as they need a container to pass.

cwltest and toil-wes-cwl-runner live in .venv-peers (``make peers``); plain
cwltool is the project's own (.venv).  For toil-wes-cwl-runner, cwltest runs
through ``cwltest_http.py`` so that it can check outputs the WES server returns
as http(s) URLs; ``wes-arvados run`` downloads them, so plain cwltest checks it.

The selection is written to a test file of its own (absolute tool and job
paths) rather than picked with cwltest's ``-n``: with ``-n``, cwltest's JUnit
report names results after the wrong tests (it pairs the i-th result with the
i-th test of the whole file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
SUITE_DIR = ROOT / ".." / "shared" / "cwl-v1.2"
INDEX = "conformance_tests.yaml"
PEERS_BIN = ROOT / ".venv-peers" / "bin"
PEERS_PYTHON = PEERS_BIN / "python"
TOIL_WES_RUNNER = PEERS_BIN / "toil-wes-cwl-runner"
CWLTOOL = ROOT / ".venv" / "bin" / "cwltool"
WES_ARVADOS = ROOT / ".venv" / "bin" / "wes-arvados"
CWLTEST_HTTP = Path(__file__).resolve().with_name("cwltest_http.py")
EXCLUDED_TAGS: Tuple[str, ...] = ("docker",)

PASSED = "passed"
FAILED = "failed"
UNSUPPORTED = "unsupported"
MISSING = "missing"  # cwltest reported nothing for the test
OUTCOMES = (PASSED, FAILED, UNSUPPORTED, MISSING)

# Tests that cannot pass through toil-wes-cwl-runner whatever the server does:
# the client attaches only what `cwltool --print-deps` lists, and that leaves
# some files out, so the server never receives them.  They still show in the
# tables, but do not count against the server.
CLIENT_LIMITATIONS: Dict[str, str] = {
    "initworkdir_expreng_requirements":
        "not attached by toil-wes-cwl-runner: underscore.js, pulled in with $include",
    **{f"mixed_version_v1{n}_wf":
       "not attached by toil-wes-cwl-runner: hello.txt.2, secondaryFiles of an input's default"
       for n in (0, 1, 2)},
}

# Lines for the end of pytest's output (tests/conformance/conftest.py prints them).
SUMMARY: List[str] = []


def add_summary(lines: Iterable[str]) -> None:
    """Add a section to SUMMARY, after a blank line when another part of the subset wrote one before."""
    if SUMMARY:
        SUMMARY.append("")
    SUMMARY.extend(lines)


def suite_dir() -> Path:
    """Where the conformance suite is (resolved; it may not exist)."""
    return SUITE_DIR.resolve()


def missing_prerequisites(need_peers: bool = True) -> List[str]:
    """What is missing to run the suite; empty when everything is there."""
    missing = []
    if not (suite_dir() / INDEX).is_file():
        missing.append(f"the CWL v1.2 conformance suite ({suite_dir() / INDEX})")
    if not CWLTOOL.exists():
        missing.append(f"the project's cwltool ({CWLTOOL}; run `make install`)")
    if need_peers:
        for path in (PEERS_PYTHON, TOIL_WES_RUNNER):
            if not path.exists():
                missing.append(f"{path} (run `make peers`)")
        if PEERS_PYTHON.exists():
            probe = subprocess.run([str(PEERS_PYTHON), "-c", "import cwltest, wes_client"],
                                   capture_output=True, text=True)
            if probe.returncode != 0:
                missing.append("cwltest and wes-service in .venv-peers (run `make peers`)")
    return missing


@dataclass(frozen=True)
class ConformanceTest:
    """One entry of the conformance suite."""

    id: str
    doc: str
    tags: Tuple[str, ...]
    tool: str  # absolute path, possibly with a #fragment
    job: Optional[str]  # absolute path
    should_fail: bool
    output: Any
    number: int  # 1-based, in the order of cwltest -l on the whole suite

    @property
    def label(self) -> str:
        """The test's short name, as cwltest shows it."""
        return self.id

    def to_cwltest(self) -> Dict[str, Any]:
        """This test as an entry of a cwltest test file."""
        entry: Dict[str, Any] = {"id": self.id, "doc": self.doc, "tags": list(self.tags),
                                 "tool": _uri(self.tool), "should_fail": self.should_fail}
        if self.job:
            entry["job"] = _uri(self.job)
        if self.output is not None:
            entry["output"] = self.output
        return entry


def _uri(path: str) -> str:
    base, sep, fragment = path.partition("#")
    return Path(base).as_uri() + sep + fragment


def _absolute(reference: str, base: Path) -> str:
    path, sep, fragment = reference.partition("#")
    return str((base / path).resolve()) + sep + fragment


def _inline(value: Any, base: Path) -> Any:
    """`value` with its `$import` (YAML/JSON) and `$include` (text) directives replaced by the files' contents."""
    if isinstance(value, dict):
        if set(value) == {"$import"}:
            target = (base / value["$import"]).resolve()
            with open(target, encoding="utf-8") as fh:
                return _inline(yaml.safe_load(fh), target.parent)
        if set(value) == {"$include"}:
            return (base / value["$include"]).read_text(encoding="utf-8")
        return {k: _inline(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_inline(v, base) for v in value]
    return value


def load_tests(index: Optional[Path] = None) -> List[ConformanceTest]:
    """Every test of the suite, in cwltest's order, with `$import`ed index files inlined."""
    index = index or suite_dir() / INDEX
    tests: List[ConformanceTest] = []

    def load(path: Path) -> None:
        with open(path, encoding="utf-8") as fh:
            entries = yaml.safe_load(fh) or []
        for entry in entries:
            if "$import" in entry:
                load((path.parent / entry["$import"]).resolve())
                continue
            test_id = entry.get("id") or entry.get("label")
            if not isinstance(test_id, str):
                raise ValueError(f"{path}: a test has no string id: {entry.get('doc')!r}")
            tests.append(ConformanceTest(
                id=test_id,
                doc=" ".join(str(entry.get("doc", "")).split()),
                tags=tuple(entry.get("tags") or ("required",)),
                tool=_absolute(entry["tool"], path.parent),
                job=_absolute(entry["job"], path.parent) if entry.get("job") else None,
                should_fail=bool(entry.get("should_fail", False)),
                output=_inline(entry.get("output"), path.parent),
                number=len(tests) + 1,
            ))

    load(index)
    ids = [t.id for t in tests]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"conformance test ids repeated: {', '.join(duplicates)}")
    return tests


def without_tags(tests: Iterable[ConformanceTest], tags: Iterable[str] = EXCLUDED_TAGS) -> List[ConformanceTest]:
    """The tests that carry none of `tags`."""
    excluded = set(tags)
    return [t for t in tests if not excluded.intersection(t.tags)]


def pick(tests: Sequence[ConformanceTest], ids: Iterable[str]) -> List[ConformanceTest]:
    """The tests with these ids, in the suite's order; KeyError names unknown ids."""
    wanted = set(ids)
    known = {t.id for t in tests}
    unknown = sorted(wanted - known)
    if unknown:
        raise KeyError(f"no such conformance tests: {', '.join(unknown)}")
    return [t for t in tests if t.id in wanted]


@dataclass
class Runner:
    """A CWL runner as cwltest calls it: ``executable *args [--outdir=D --quiet] tool [job]``.

    `plain`: its outputs are local files, so plain cwltest checks them (no http plugin).
    """

    name: str
    executable: str
    args: List[str] = field(default_factory=list)
    plain: bool = False


# Options given to cwltool in both ways of running, so that they compare like
# with like; through WES they travel as workflow_engine_parameters.  Without
# containers, the many tools that name a Docker image as a mere hint run on the
# host (cwltool would otherwise try to pull the image).
NO_CONTAINER = "--no-container"
ENGINE_OPTIONS: Tuple[str, ...] = (NO_CONTAINER,)


def engine_options(containers: bool) -> Tuple[str, ...]:
    """ENGINE_OPTIONS for a run with containers (all but --no-container) or without."""
    return tuple(o for o in ENGINE_OPTIONS if o != NO_CONTAINER) if containers else ENGINE_OPTIONS


def cwltool_runner(options: Sequence[str] = ENGINE_OPTIONS) -> Runner:
    """The project's own cwltool (the version the server runs)."""
    return Runner("cwltool", str(CWLTOOL), list(options))


def client_runner(wes_url: str, options: Sequence[str] = ENGINE_OPTIONS) -> Runner:
    """Our own client, ``wes-arvados run``, against a WES server; the options go as engine parameters."""
    return Runner("wes-arvados run", str(WES_ARVADOS), ["run", f"--server={wes_url}",
                                                        *(f"--engine-parameter={o}" for o in options)], plain=True)


def wes_runner(wes_url: str, options: Sequence[str] = ENGINE_OPTIONS) -> Runner:
    """toil-wes-cwl-runner against a WES server; `wes_url` may include /ga4gh/wes/v1 (it is dropped).

    toil-wes-cwl-runner sends the options it does not know itself as
    workflow_engine_parameters.
    """
    endpoint = wes_url.split("/ga4gh/wes/")[0].rstrip("/")
    return Runner("WES", str(TOIL_WES_RUNNER), [f"--wes_endpoint={endpoint}", *options])


@dataclass
class Result:
    """What cwltest said about one test."""

    test_id: str
    outcome: str
    seconds: float = 0.0
    message: str = ""
    stderr: str = ""


def _parse_junit(path: Path) -> Dict[str, Result]:
    results: Dict[str, Result] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = case.get("file") or case.get("name") or ""
        outcome, message = PASSED, ""
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            outcome = FAILED
            message = (failure.get("message") or "") + "\n" + (failure.text or "")
        elif case.find("skipped") is not None:
            outcome = UNSUPPORTED
        err = case.find("system-err")
        results[test_id] = Result(test_id, outcome, float(case.get("time") or 0), message.strip(),
                                  (err.text or "") if err is not None else "")
    return results


def run_cwltest(tests: Sequence[ConformanceTest], runner: Runner, workdir: Path, jobs: int = 2,
                timeout: int = 600, echo: bool = False, env: Optional[Mapping[str, str]] = None) -> Dict[str, Result]:
    """Run cwltest on `tests` with `runner`; return each test's result by id.

    cwltest's own log goes to ``workdir/cwltest.log`` (and to stderr too with
    `echo`), its JUnit report to ``workdir/junit.xml``; temporary files
    (cwltest's --outdir and cwltool's work directories) go below ``workdir/tmp``
    (through TMPDIR), so a Docker daemon on this machine can bind-mount them.
    `env` is added to the runner's environment (e.g. DOCKER_HOST).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    test_file = workdir / "tests.json"
    # Not ASCII-escaped: cwltest reads the file as YAML, which keeps a JSON surrogate pair
    # (an emoji's \ud83d\udd7a) as two characters, so the output it expects would be wrong.
    test_file.write_text(json.dumps([t.to_cwltest() for t in tests], indent=1, ensure_ascii=False),
                         encoding="utf-8")
    junit = workdir / "junit.xml"
    if junit.exists():
        junit.unlink()
    cwltest = [str(PEERS_BIN / "cwltest")] if runner.plain else [str(PEERS_PYTHON), str(CWLTEST_HTTP)]
    cmd = [*cwltest, "--test", str(test_file), "--tool", runner.executable,
           "-j", str(jobs), "--timeout", str(timeout), "--junit-xml", str(junit),
           "--classname", runner.name, "--", *runner.args]
    environment = {**os.environ, **(env or {})}
    # toil-wes-cwl-runner calls `cwltool --print-deps`: the peers' cwltool, beside it.
    environment["PATH"] = os.pathsep.join([str(PEERS_BIN), environment.get("PATH", "")])
    environment["TMPDIR"] = str(tmp)
    environment.pop("PYTHONPATH", None)
    log_path = workdir / "cwltest.log"
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        # The suite is read-only; relative test paths are resolved from its directory.
        proc = subprocess.Popen(cmd, cwd=str(suite_dir()), env=environment, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if echo:
                sys.stderr.write(f"[{runner.name}] {line}")
                sys.stderr.flush()
        code = proc.wait()
    if code not in (0, 1) or not junit.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"cwltest for {runner.name} exited with {code} and no report:\n{tail}")
    reported = _parse_junit(junit)
    return {t.id: reported.get(t.id, Result(t.id, MISSING, message="cwltest reported nothing for this test"))
            for t in tests}


def counts(results: Dict[str, Result]) -> Counter:
    """How many tests had each outcome."""
    tally: Counter = Counter({o: 0 for o in OUTCOMES})
    tally.update(r.outcome for r in results.values())
    return tally


def count_line(name: str, results: Dict[str, Result]) -> str:
    """``NAME: P passed, F failed, U unsupported of N`` (and missing ones, if any)."""
    tally = counts(results)
    line = (f"{name}: {tally[PASSED]} passed, {tally[FAILED]} failed, {tally[UNSUPPORTED]} unsupported "
            f"of {len(results)}")
    if tally[MISSING]:
        line += f", {tally[MISSING]} missing"
    return line


def regressions(tests: Sequence[ConformanceTest], baseline: Dict[str, Result], candidate: Dict[str, Result],
                excused: Iterable[str] = ()) -> List[ConformanceTest]:
    """Tests the baseline passes and the candidate does not, apart from the `excused` ids."""
    skip = set(excused)
    return [t for t in tests
            if t.id not in skip and baseline[t.id].outcome == PASSED and candidate[t.id].outcome != PASSED]


def shortfall(test: ConformanceTest, baseline: Dict[str, Result], candidate: Dict[str, Result],
              name: str) -> Optional[str]:
    """Why `candidate` (run by `name`) falls short of plain cwltool's `baseline` on `test`; None if it does not."""
    if baseline[test.id].outcome != PASSED or candidate[test.id].outcome == PASSED:
        return None  # nothing to live up to (the baseline's own tests report that), or lived up to
    return (f"passes with plain cwltool, {candidate[test.id].outcome} through {name}:\n"
            + failure_details([test], candidate))


def differences(tests: Sequence[ConformanceTest], first: Dict[str, Result],
                second: Dict[str, Result]) -> List[ConformanceTest]:
    """Tests whose outcomes differ."""
    return [t for t in tests if first[t.id].outcome != second[t.id].outcome]


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table with a header rule."""
    body = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in body])


def outcome_table(tests: Sequence[ConformanceTest], columns: Sequence[Tuple[str, Dict[str, Result]]],
                  notes: Optional[Dict[str, str]] = None) -> str:
    """One row per test: its label, its outcome under each runner, and a note if any."""
    notes = notes or {}
    return format_table(["test"] + [name for name, _ in columns] + ["note"],
                        [[t.label] + [results[t.id].outcome for _, results in columns] + [notes.get(t.id, "")]
                         for t in tests])


def failure_details(tests: Sequence[ConformanceTest], results: Dict[str, Result], limit: int = 1500) -> str:
    """cwltest's message and the runner's stderr tail for each test, for a report."""
    parts = []
    for t in tests:
        r = results[t.id]
        parts.append(f"--- {t.id} ({r.outcome}): {t.doc}\n{r.message[-limit:]}\n"
                     f"stderr (tail):\n{r.stderr[-limit:]}")
    return "\n".join(parts)


def start_server(server: Any, timeout: float = 120) -> Any:
    """``server.start()`` (a tests.wes.WesServer) that also waits out slow first answers.

    WesServer.start retries only on refused connections; on a busy machine a
    web worker that is still booting can also let service-info time out.  A
    server that never answers is stopped before the error goes up.
    """
    try:
        return server.start(timeout)
    except requests.RequestException:
        pass
    except BaseException:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()
        raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.proc.poll() is None:
        try:
            if requests.get(server.url + "/service-info", timeout=10).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.5)
    if server.proc.poll() is None:
        server.stop()
    raise RuntimeError(f"the WES server did not answer in {timeout} s; its log: {server.log_path}")


class Stopwatch:
    """Seconds since creation."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def seconds(self) -> float:
        """Elapsed seconds."""
        return time.monotonic() - self.start
