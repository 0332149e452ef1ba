"""The `wes-arvados pull` sub-command: an image from a registry into a docker-save archive, no docker needed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, TypeVar

from ..images.errors import ImageError, InvalidReference
from ..images.progress import Progress, TerminalProgress, human_size, summary_line
from ..images.pull import (
    COMPRESSED,
    DEFAULT_JOBS,
    DOCKER_ARCHIVE,
    FORMATS,
    LAYER_MODES,
    PullOptions,
    PullResult,
    pull,
)
from ..images.reference import Reference, parse_normalized_named
from ..images.registry import RegistryOptions
from ..images.registry.credentials import Credentials, default_docker_config
from ..images.registry.options import parse_mirrors

# Exit statuses: 1 the pull failed, 2 the command line is wrong (as argparse), 130 interrupted.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

T = TypeVar("T")

DESCRIPTION = """\
Pull IMAGE from its registry into a file that `docker load`, arv-keepdocker, podman,
skopeo and Singularity read, without a docker daemon. Layers are fetched in parallel,
verified against their digests, and kept in a local blob cache so that pulling an
unchanged image again downloads nothing.
"""


def add_pull_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Callable[[argparse.Namespace], int]:
    """Add the `pull` sub-command and its options to the `wes-arvados` parser; return its runner."""
    p = sub.add_parser("pull", help="pull an image into a docker-save archive (no docker daemon needed)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="image reference, e.g. busybox:1.36 or 127.0.0.1:5000/x/img@sha256:…")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write (default: derived from the image name in the current directory, "
                        "e.g. img_1.tar for IMAGE img:1; for --format oci a directory img_1, or a tar "
                        "when FILE ends with .tar)")
    p.add_argument("--platform", metavar="P",
                   help="platform to choose from a multi-platform image, os/arch[/variant] (default linux/amd64)")
    p.add_argument("--format", choices=FORMATS, default=DOCKER_ARCHIVE,
                   help="docker-archive: the `docker save` layout (default); oci: an OCI image layout")
    p.add_argument("--layers", choices=LAYER_MODES, default=None,
                   help="uncompressed: layers as plain tars, as `docker save` writes them (default for "
                        "docker-archive); compressed: layers exactly as the registry serves them (faster; "
                        "always so for --format oci)")
    p.add_argument("--registry-config", metavar="FILE", action="append", default=[],
                   help="Docker config.json with registry credentials (repeatable; default "
                        "$DOCKER_CONFIG/config.json or ~/.docker/config.json)")
    p.add_argument("--insecure-registry", metavar="HOST", action="append", default=[],
                   help="registry reached over plain http (repeatable; loopback always is)")
    p.add_argument("--registry-mirror", metavar="REGISTRY=URL", action="append", default=[],
                   help="mirror tried before REGISTRY, e.g. docker.io=https://mirror.example (repeatable)")
    p.add_argument("--cache-dir", metavar="D",
                   help="blob cache directory, which also keeps finished archives as hard links (default "
                        "$XDG_CACHE_HOME/wes-arvados or ~/.cache/wes-arvados)")
    p.add_argument("--no-cache", action="store_true",
                   help="use a temporary cache beside the output, removed afterwards")
    p.add_argument("--jobs", type=_positive, default=DEFAULT_JOBS, metavar="N",
                   help=f"layer blobs downloaded at once (default {DEFAULT_JOBS}); they are decompressed in order "
                        "as the archive is written")
    p.add_argument("--server", metavar="URL",
                   help="have the wes-arvados server at URL import the image into its store instead of writing "
                        "a file here (credentials from --registry-config for the image's registry go with it)")
    p.add_argument("--token", metavar="T", help="bearer token for --server")
    p.add_argument("--arvados", action="store_true",
                   help="store the image in Keep as arv-keepdocker does (collection and links), using "
                        "ARVADOS_API_HOST / ARVADOS_API_TOKEN; prints the collection uuid and portable data hash")
    p.add_argument("--project-uuid", metavar="UUID", help="with --arvados: the project that owns the collection")
    p.add_argument("--json", action="store_true",
                   help="no progress bar; print one JSON object on stdout (the result, or {\"error\": …})")
    return run_pull


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def registry_options(args: argparse.Namespace, mirrors: Optional[Dict[str, List[str]]] = None) -> RegistryOptions:
    """Registry settings from the command line."""
    configs = [Path(p) for p in args.registry_config]
    if not configs:
        default = default_docker_config()
        configs = [default] if default else []
    return RegistryOptions(insecure_registries=list(args.insecure_registry), mirrors=mirrors if mirrors is not None else parse_mirrors(args.registry_mirror),
                           credentials=Credentials.from_files(configs))


def _registry_of(image: str) -> str:
    try:
        return parse_normalized_named(image).registry
    except ImageError:
        return "?"


def run_pull(args: argparse.Namespace) -> int:
    """Run `wes-arvados pull` with parsed arguments; return the exit status."""
    progress: Progress = Progress()
    if not args.json and sys.stderr.isatty():
        progress = TerminalProgress(sys.stderr)
    if args.format != DOCKER_ARCHIVE and args.layers not in (None, COMPRESSED):
        _fail(args, "--format oci keeps layers as the registry serves them; drop --layers uncompressed")
        return EXIT_USAGE
    if args.server:
        return _run_remote(args)
    status, ref = _guarded(args, lambda: parse_normalized_named(args.image))
    if ref is None:
        return status
    if args.arvados:
        return _run_keep(args, ref)
    try:
        mirrors = parse_mirrors(args.registry_mirror)
    except ImageError as exc:
        _fail(args, str(exc))
        return EXIT_USAGE
    def work() -> PullResult:
        options = PullOptions(format=args.format, layers=args.layers or "uncompressed", platform=args.platform,
                              jobs=args.jobs, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                              use_cache=not args.no_cache, registry=registry_options(args, mirrors),
                              progress=progress)
        return pull(ref, args.output, options)
    status, result = _guarded(args, work)
    if result is None:
        return status
    if args.json:
        print(json.dumps(result.to_json(), sort_keys=True))
    else:
        print(summary_line(result.image_id, result.manifest_digest, result.size, result.seconds, result.output),
              file=sys.stderr)
    return 0


def _guarded(args: argparse.Namespace, work: Callable[[], T]) -> Tuple[int, Optional[T]]:
    """Run `work`; on failure say why (as the command does) and give the exit status instead of a result."""
    try:
        return 0, work()
    except KeyboardInterrupt:
        _fail(args, "interrupted")
        return EXIT_INTERRUPTED, None
    except InvalidReference as exc:
        _fail(args, str(exc))
        return EXIT_USAGE, None
    except (ImageError, OSError) as exc:
        _fail(args, str(exc))
        return EXIT_FAILED, None


def _run_keep(args: argparse.Namespace, ref: Reference) -> int:
    from .pull_keep import pull_to_keep

    status, result = _guarded(args, lambda: pull_to_keep(ref, registry_options(args), args.platform,
                                                         args.project_uuid,
                                                         Path(args.cache_dir) if args.cache_dir else None, args.jobs))
    if result is None:
        return status
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"{result['collection_uuid']} {result['portable_data_hash']}")
        how = "uploaded" if result["uploaded"] else "already in Keep"
        print(f"{args.image}: image {result['image_id']}, {human_size(result['size'])}, {how} "
              f"in {result['seconds']:.2f} s", file=sys.stderr)
    return 0


def _run_remote(args: argparse.Namespace) -> int:
    from ..client.session import api_base
    from .pull_remote import pull_on_server

    status, pull = _guarded(args, lambda: pull_on_server(args.server, args.image, args.platform,
                                                         args.registry_config, args.token))
    if pull is None:
        return status
    if args.json:
        print(json.dumps(pull, sort_keys=True))
    else:
        how = "already held" if pull.get("cached") else "pulled"
        print(f"{api_base(args.server)}: image {pull['image_id']} (manifest {pull['manifest_digest']}), "
              f"{human_size(pull['size'])}, {how} by the {pull['store']} store", file=sys.stderr)
    return 0


def _fail(args: argparse.Namespace, cause: str) -> None:
    cause = " ".join(cause.split())  # one line, whatever the registry said
    message = f"wes-arvados pull: {args.image} (registry {_registry_of(args.image)}): {cause}"
    print(message, file=sys.stderr)
    if args.json:
        print(json.dumps({"error": cause, "image": args.image, "registry": _registry_of(args.image)}, sort_keys=True))
