"""`wes-arvados serve`: its flags, merged into the one Config, and the server started (web/server.py).

`pull` and `cache` share this parser and need nothing of the server, so its
modules are imported only when `serve` runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Dict

from ..errors import ConfigError


def add_serve_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Callable[[argparse.Namespace], int]:
    """Add the `serve` sub-command and its options to the `wes-arvados` parser; return its runner."""
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
    p.add_argument("--log-format", choices=["text", "json"],
                   help="text lines, or one JSON object per line with run_id/pull_id/image fields (default text)")
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
    return run_serve


def run_serve(args: argparse.Namespace) -> int:
    """Run `wes-arvados serve` with parsed arguments: flags override the file and the environment."""
    overrides: Dict[str, Any] = {"images": {}}
    for key, value in vars(args).items():
        if key.startswith("images."):
            overrides["images"][key.split(".", 1)[1]] = value
        elif key not in ("command", "config"):
            overrides[key] = value
    from ..config import load_config

    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"wes-arvados: {exc}", file=sys.stderr)
        return 2
    _metrics_directory(Path(config.state_dir) / "metrics")
    from ..web import server

    return server.serve(config)


def _metrics_directory(directory: Path) -> None:
    """Make `directory` this server's fresh prometheus_client multiprocess directory, for this process and its
    children (wes_arvados/metrics.py); before anything imports prometheus_client, which reads it then."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
