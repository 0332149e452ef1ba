"""The whole CWL v1.2 conformance suite, with plain cwltool and through the WES server, in containers.

Usage (``make conformance``)::

    .venv/bin/python tests/conformance/run_full.py [--ids a,b] [--no-container] [--jobs-cwltool N]
        [--jobs-wes N] [--keep DIR]

Every test runs, the ones tagged docker included, with containers: the tools'
four Docker Hub images are stand-ins built from this machine's Debian packages
and pushed to a loopback registry (containers.py), and containers run in a
Docker daemon (a private dockerd when this process may start one).  Plain
cwltool runs first, with the stand-ins loaded in the daemon under their
docker.io names; they are then removed, and the suite runs through a WES server
started with ``--registry-mirror docker.io=<the registry>``, which must pull
every image itself.  Tests that need the internet (networkaccess) fail both
ways.  ``--no-container`` runs the old way instead: no daemon, no registry,
tools on the host, tests tagged docker left out.

It prints a table of the tests whose outcomes differ and both pass counts, and
exits 1 if any test that plain cwltool passes does not pass through WES (2 when
it cannot run at all) -- apart from suite.CLIENT_LIMITATIONS, tests that
toil-wes-cwl-runner cannot send whole to any server.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conformance import suite  # noqa: E402
from tests.conformance.containers import Containers  # noqa: E402
from tests.wes import WesServer  # noqa: E402


def _say(text: str = "") -> None:
    print(text, flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Run both, compare, report; the exit status says whether WES kept up with cwltool."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", help="only these test ids (comma-separated)")
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
            try:
                clock = suite.Stopwatch()
                wes = suite.run_cwltest(tests, suite.wes_runner(server.url, options), work / "wes",
                                        jobs=args.jobs_wes, timeout=args.timeout, echo=args.verbose)
                _say(f"{suite.count_line('WES', wes)}  [{clock.seconds:.0f} s]")
            finally:
                server.stop()
                server.kill_runs()

        different = suite.differences(tests, plain, wes)
        worse = suite.regressions(tests, plain, wes, excused=suite.CLIENT_LIMITATIONS)
        _say()
        if different:
            _say(f"Tests whose outcomes differ ({len(different)}):")
            _say(suite.outcome_table(different, [("cwltool", plain), ("WES", wes)], suite.CLIENT_LIMITATIONS))
        else:
            _say("No test's outcome differs.")
        if args.details and worse:
            _say()
            _say(suite.failure_details(worse, wes))
        _say()
        _say(suite.count_line("cwltool", plain))
        _say(suite.count_line("WES", wes))
        if args.keep:
            _say(f"reports and logs kept in {work}")
        if worse:
            _say(f"FAIL: {len(worse)} tests pass with cwltool but not through WES: "
                 + ", ".join(t.id for t in worse))
            return 1
        _say("OK: every test that passes with cwltool passes through WES")
        return 0


if __name__ == "__main__":
    sys.exit(main())
