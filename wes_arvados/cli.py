"""The `wes-arvados` command."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from types import ModuleType
from typing import List, Optional

from .errors import ConfigError


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the WES server (web workers and run scheduler)")
    p.add_argument("--config", help="YAML configuration file (also WES_ARVADOS_CONFIG)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8080)")
    p.add_argument("--workers", type=int, help="number of web worker processes (default 2)")
    p.add_argument("--state-dir", help="where runs and the database live (default ~/.local/state/wes-arvados)")
    p.add_argument("--max-concurrent-runs", type=int, help="runs executing at once; the rest wait QUEUED (default 2)")
    p.add_argument("--backend", help="workflow system to run on (default local)")
    p.add_argument("--public-url", help="base URL clients reach this server at, when behind a proxy")
    p.add_argument("--allowed-dir", action="append", dest="allowed_dirs",
                   help="server directory whose files may be named by file:// URLs (repeatable)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    images = p.add_argument_group("images", "how the server gets the Docker images runs need (config: images:)")
    images.add_argument("--registry-mirror", metavar="REGISTRY=URL", action="append", dest="images.mirrors",
                        help="mirror tried before REGISTRY, e.g. docker.io=http://127.0.0.1:5000 (repeatable)")
    images.add_argument("--insecure-registry", metavar="HOST", action="append", dest="images.insecure_registries",
                        help="registry reached over plain http (repeatable; loopback always is)")
    images.add_argument("--registry-config", metavar="FILE", dest="images.registry_config",
                        help="Docker config.json with registry credentials")
    images.add_argument("--allow-image", metavar="PATTERN", action="append", dest="images.allow",
                        help="only images matching these patterns may be used, e.g. 'docker.io/library/*' "
                             "(repeatable)")
    images.add_argument("--deny-image", metavar="PATTERN", action="append", dest="images.deny",
                        help="images matching this pattern are refused (repeatable; wins over --allow-image)")
    images.add_argument("--container-runtime", choices=["auto", "docker", "podman", "none"],
                        dest="images.runtime", help="where images are loaded for the local engine (default auto)")
    images.add_argument("--image-platform", metavar="OS/ARCH", dest="images.platform",
                        help="platform chosen from multi-platform images (default linux/amd64)")
    images.add_argument("--pull-jobs", type=int, metavar="N", dest="images.pull_jobs",
                        help="layer blobs downloaded at once per image (default 4)")
    images.add_argument("--image-cache-max-size", metavar="SIZE", dest="images.cache_max_size",
                        help="what the image blob cache may keep, e.g. 20G: after each pull the least recently used "
                             "blobs go (default: no limit)")
    images.add_argument("--no-image-resolve", action="store_const", const=False, dest="images.resolve",
                        help="do not pull images before runs; the engine is on its own")


def _import_pull_command() -> ModuleType:
    # Imports make many objects and no garbage; collecting during them is a tenth of `pull`'s start-up.
    enabled = gc.isenabled()
    gc.disable()
    try:
        from . import pull_command
    finally:
        if enabled:
            gc.enable()
    return pull_command


def _exit_now(status: int) -> None:
    """End the process at once: `pull` has joined its threads and closed its files, so the
    interpreter's teardown (tens of milliseconds of freeing objects) does nothing useful."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def main(argv: Optional[List[str]] = None, exit_when_done: bool = False) -> int:
    """Parse the command line and run the chosen sub-command.

    With `exit_when_done` (the console script), a finished `pull` ends the process at once.
    """
    pull_command = _import_pull_command()
    from . import cache_command  # beside pull_command: its parser needs only the cache, which pull imports

    parser = argparse.ArgumentParser(prog="wes-arvados", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    pull_command.add_pull_parser(sub)
    cache_command.add_cache_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "cache":
        return cache_command.run_cache(args)
    if args.command == "pull":
        status = pull_command.run_pull(args)
        if exit_when_done:
            _exit_now(status)
        return status
    try:
        if args.command == "serve":
            from .config import load_config  # here: `pull` starts faster without YAML and the server
            from .server import serve

            overrides: dict = {"images": {}}
            for key, value in vars(args).items():
                if key.startswith("images."):
                    overrides["images"][key.split(".", 1)[1]] = value
                elif key not in ("command", "config"):
                    overrides[key] = value
            return serve(load_config(args.config, overrides))
    except ConfigError as exc:
        print(f"wes-arvados: {exc}", file=sys.stderr)
        return 2
    return 1


def entry() -> None:
    """The `wes-arvados` console script."""
    sys.exit(main(exit_when_done=True))


if __name__ == "__main__":
    entry()
