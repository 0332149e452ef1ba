"""The `wes-arvados` command."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import cache, pull, register, run, serve


def main(argv: Optional[List[str]] = None) -> int:
    """Parse the command line and run the chosen sub-command; return the exit status."""
    parser = argparse.ArgumentParser(prog="wes-arvados", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {"serve": serve.add_serve_parser(sub), "pull": pull.add_pull_parser(sub),
                "cache": cache.add_cache_parser(sub), "run": run.add_run_parser(sub),
                "register": register.add_register_parser(sub)}
    args = parser.parse_args(argv)
    return commands[args.command](args)


def entry() -> None:
    """The `wes-arvados` console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
