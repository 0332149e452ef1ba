"""The `wes-arvados` command."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .config import BACKENDS, load_config
from .errors import ConfigError
from .pull_command import add_pull_parser, run_pull


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the WES server (web workers and run scheduler)")
    p.add_argument("--config", help="YAML configuration file (also WES_ARVADOS_CONFIG)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8080)")
    p.add_argument("--workers", type=int, help="number of web worker processes (default 2)")
    p.add_argument("--state-dir", help="where runs and the database live (default ~/.local/state/wes-arvados)")
    p.add_argument("--max-concurrent-runs", type=int, help="runs executing at once; the rest wait QUEUED (default 2)")
    p.add_argument("--backend", choices=BACKENDS, help="workflow system to run on (default local)")
    p.add_argument("--public-url", help="base URL clients reach this server at, when behind a proxy")
    p.add_argument("--allowed-dir", action="append", dest="allowed_dirs",
                   help="server directory whose files may be named by file:// URLs (repeatable)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def main(argv: Optional[List[str]] = None) -> int:
    """Parse the command line and run the chosen sub-command."""
    parser = argparse.ArgumentParser(prog="wes-arvados", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    add_pull_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "pull":
        return run_pull(args)
    try:
        if args.command == "serve":
            from .server import serve

            overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
            return serve(load_config(args.config, overrides))
    except ConfigError as exc:
        print(f"wes-arvados: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
