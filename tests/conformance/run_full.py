"""The whole CWL v1.2 conformance suite, with plain cwltool and through the WES server, in containers.

Usage (``make conformance``)::

    .venv/bin/python tests/conformance/run_full.py [--ids a,b] [--clients toil,run] [--no-container] [--jobs-cwltool N]
        [--jobs-wes N] [--keep DIR]

Every test runs, the ones tagged docker included, with containers: the tools'
four Docker Hub images are stand-ins built from this machine's Debian packages
and pushed to a loopback registry (containers.py), and containers run in a
Docker daemon (a private dockerd when this process may start one).  Plain
cwltool runs first, with the stand-ins loaded in the daemon under their
docker.io names; they are then removed, and the suite runs through a WES server
started with ``--registry-mirror docker.io=<the registry>``, which must pull
every image itself, with each WES client in turn (``--clients``):
toil-wes-cwl-runner, checked through cwltest_http.py, and our own
``wes-arvados run``, checked by plain cwltest, with no docker on its PATH.
Tests that need the internet (networkaccess) fail every way.
``--no-container`` runs the old way instead: no daemon, no registry, tools on
the host, tests tagged docker left out.

It prints a table of the tests whose outcomes differ and the pass counts, and
exits 1 if any test that plain cwltool passes does not pass through a client
(2 when it cannot run at all) -- apart, for toil-wes-cwl-runner, from
suite.CLIENT_LIMITATIONS, tests that it cannot send whole to any server.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conformance import suite  # noqa: E402
from tests.conformance.containers import Containers  # noqa: E402
from tests.wes import WesServer  # noqa: E402


def _say(text: str = "") -> None:
    print(text, flush=True)


# Each WES client: its column's name, how it is made from the server's URL and the
# engine options, the environment it runs in, and the tests it is excused from.
Client = Tuple[str, Callable[[str, Sequence[str]], suite.Runner], Mapping[str, str], Mapping[str, str]]
CLIENTS: Dict[str, Client] = {
    "toil": ("toil-wes-cwl-runner", suite.wes_runner, {}, suite.CLIENT_LIMITATIONS),
    # The venv's scripts only: no docker, no container runtime on the client.
    "run": ("wes-arvados run", suite.client_runner, {"PATH": str(suite.WES_ARVADOS.parent)}, {}),
}


def main(argv: Optional[List[str]] = None) -> int:
    """Run cwltool and each client, compare, report; the exit status says whether every client kept up."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", help="only these test ids (comma-separated)")
    parser.add_argument("--clients", default="toil,run",
                        help="the WES clients, in turn: toil (toil-wes-cwl-runner), run (wes-arvados run); "
                             "both by default")
    parser.add_argument("--no-container", action="store_true",
                        help="tools on the host, tests tagged docker left out (no daemon, no registry)")
    parser.add_argument("--jobs-cwltool", type=int, default=2, help="tests run at once with plain cwltool (2)")
    parser.add_argument("--jobs-wes", type=int, default=4,
                        help="tests run at once through WES (4: clients wait while the server runs 2)")
    parser.add_argument("--max-concurrent-runs", type=int, default=2, help="the server's run limit (2)")
    parser.add_argument("--timeout", type=int, default=600, help="cwltest's limit per test, in seconds (600)")
    parser.add_argument("--keep", type=Path, help="keep reports, logs and the server's state in this directory")
    parser.add_argument("--verbose", action="store_true", help="echo cwltest's progress")
    parser.add_argument("--details", action="store_true", help="print cwltest's message for each regression")
    args = parser.parse_args(argv)
    containers = not args.no_container
    chosen = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CLIENTS]
    if unknown or not chosen:
        _say(f"--clients: choose from {', '.join(CLIENTS)} (not {', '.join(unknown) or 'none'})")
        return 2

    missing = suite.missing_prerequisites()
    if containers and Containers.unavailable_reason():
        missing.append(f"containers: {Containers.unavailable_reason()} (or run with --no-container)")
    if missing:
        _say("cannot run the conformance suite; missing: " + "; ".join(missing))
        return 2
    tests = suite.load_tests()
    excluded = () if containers else suite.EXCLUDED_TAGS
    tests = suite.without_tags(tests, excluded)
    if args.ids:
        try:
            tests = suite.pick(tests, [i.strip() for i in args.ids.split(",") if i.strip()])
        except KeyError as exc:
            _say(f"{exc.args[0]}" + (f" (or they are tagged {', '.join(excluded)})" if excluded else ""))
            return 2
    options = suite.engine_options(containers)
    _say(f"CWL v1.2 conformance: {len(tests)} tests (tags left out: {', '.join(excluded) or 'none'}); "
         f"engine options: {' '.join(options) or 'none'}; "
         + ("containers, images through a loopback mirror of docker.io" if containers else "no containers"))

    with tempfile.TemporaryDirectory(prefix="wes-conformance-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        with Containers(work / "containers") if containers else contextlib.nullcontext() as world:
            if world is not None:
                clock = suite.Stopwatch()
                world.load_standins()
                whose = "a private dockerd" if world.daemon.owned else "the machine's docker daemon"
                _say(f"stand-ins pushed to {world.registry.url} and loaded into {whose} at {world.daemon.host}  "
                     f"[{clock.seconds:.0f} s]")
            env = world.env if world is not None else {}

            clock = suite.Stopwatch()
            plain = suite.run_cwltest(tests, suite.cwltool_runner(options), work / "cwltool", jobs=args.jobs_cwltool,
                                      timeout=args.timeout, echo=args.verbose, env=env)
            _say(f"{suite.count_line('cwltool', plain)}  [{clock.seconds:.0f} s]")

            state = work / "server" / "state"
            if world is not None:
                world.remove_standins()  # the server must pull them itself, through the mirror
                server = world.wes_server(state, workers=2, max_concurrent_runs=args.max_concurrent_runs)
            else:
                server = WesServer(state, workers=2, max_concurrent_runs=args.max_concurrent_runs)
            suite.start_server(server)
            columns: List[Tuple[str, Dict[str, suite.Result], Mapping[str, str]]] = []
            try:
                for key in chosen:
                    name, make_runner, client_env, excused = CLIENTS[key]
                    clock = suite.Stopwatch()
                    results = suite.run_cwltest(tests, make_runner(server.url, options), work / key,
                                                jobs=args.jobs_wes, timeout=args.timeout, echo=args.verbose,
                                                env=client_env)
                    _say(f"{suite.count_line(name, results)}  [{clock.seconds:.0f} s]")
                    columns.append((name, results, excused))
            finally:
                server.stop()
                server.kill_runs()

        different = list({t.id: t for _, results, _ in columns
                          for t in suite.differences(tests, plain, results)}.values())
        different.sort(key=lambda t: t.number)
        worse = {name: suite.regressions(tests, plain, results, excused=excused)
                 for name, results, excused in columns}
        notes = {i: why for _, _, excused in columns for i, why in excused.items()}
        _say()
        if different:
            _say(f"Tests whose outcomes differ ({len(different)}):")
            _say(suite.outcome_table(different, [("cwltool", plain)] + [(n, r) for n, r, _ in columns], notes))
        else:
            _say("No test's outcome differs.")
        if args.details:
            for name, results, _ in columns:
                if worse[name]:
                    _say()
                    _say(f"{name}:")
                    _say(suite.failure_details(worse[name], results))
        _say()
        _say(suite.count_line("cwltool", plain))
        for name, results, _ in columns:
            _say(suite.count_line(name, results))
        if args.keep:
            _say(f"reports and logs kept in {work}")
        failed = False
        for name, tests_worse in worse.items():
            if tests_worse:
                failed = True
                _say(f"FAIL: {len(tests_worse)} tests pass with cwltool but not through {name}: "
                     + ", ".join(t.id for t in tests_worse))
        if failed:
            return 1
        _say("OK: every test that passes with cwltool passes through "
             + " and through ".join(name for name, _, _ in columns))
        return 0


if __name__ == "__main__":
    sys.exit(main())
