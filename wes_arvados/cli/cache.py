"""The `wes-arvados cache prune` sub-command: keep the blob cache of `pull` (or of a server) within a size."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from ..images.cache import PRUNE_GRACE_SECONDS, BlobCache, default_cache_dir
from ..images.prune import parse_size, prune

DESCRIPTION = """\
Remove what the blob cache holds, least recently used first, until it holds at
most --max-size (default 0: everything that was not used within the grace
period). Archives and held files that are still also someone's output take no
space of the cache's own and stay. A server prunes its own cache after each pull
when images.cache_max_size is set.
"""


def add_cache_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Callable[[argparse.Namespace], int]:
    """Add the `cache` sub-command (with `prune`) to the `wes-arvados` parser; return its runner."""
    cache = sub.add_parser("cache", help="manage the local blob cache of pulled images")
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    p = actions.add_parser("prune", help="remove the least recently used blobs and archives",
                           description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache-dir", metavar="D",
                   help="the cache (default $XDG_CACHE_HOME/wes-arvados or ~/.cache/wes-arvados; a server's is "
                        "<state_dir>/images/cache unless images.cache_dir says otherwise)")
    p.add_argument("--max-size", metavar="SIZE", default="0",
                   help="what the cache may keep, e.g. 500M, 20G (powers of 1024; default 0)")
    p.add_argument("--grace", metavar="SECONDS", type=float, default=PRUNE_GRACE_SECONDS,
                   help=f"never remove what was used this recently (default {PRUNE_GRACE_SECONDS:g}: a running "
                        "pull's blobs are recent)")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    return run_cache


def run_cache(args: argparse.Namespace) -> int:
    """Run `cache prune`; the exit status (2 for a bad size or a missing cache)."""
    try:
        max_bytes = parse_size(args.max_size)
    except ValueError as exc:
        print(f"wes-arvados cache prune: --max-size: {exc}", file=sys.stderr)
        return 2
    root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if not (root / "blobs").is_dir():
        print(f"wes-arvados cache prune: {root} is not a blob cache (it has no blobs/)", file=sys.stderr)
        return 2
    outcome = prune(BlobCache(root), max_bytes, grace=max(0.0, args.grace), dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"cache_dir": str(root), "dry_run": args.dry_run, "removed": outcome.removed,
                          "freed": outcome.freed, "held": outcome.held, "recent": outcome.recent}))
    else:
        print(f"{root}: {outcome.summary(args.dry_run)}")
    return 0
