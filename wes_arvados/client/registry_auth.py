"""The ``X-Registry-Auth`` a client sends: its own credentials for the registries a run or pull needs.

They come from the docker config.json files named with ``--registry-config``
(never the default one), looked up as Docker does for each registry: its
``credHelpers`` entry, its ``auths`` entry, then ``credsStore``. Only the
registries the images live in get credentials, so a run carries no more of the
user's secrets than its pulls use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

from ..images.errors import InvalidReference
from ..images.reference import parse_normalized_named
from ..images.registry.credentials import AuthConfig, Credentials, encode_registry_auth

if TYPE_CHECKING:  # cwltool, which images.cwl imports, is loaded only when a run is sent, not for --help
    from ..images.cwl import ImageNeed


def registry_auth_header(registries: Iterable[str], config_files: List[str]) -> Tuple[Optional[str], List[str]]:
    """The header value for `registries` (None when the files have nothing for them), and the registries it covers."""
    if not config_files:
        return None, []
    credentials = Credentials.from_files(Path(p) for p in config_files)
    found: Dict[str, AuthConfig] = {}
    for registry in sorted(set(registries)):
        auth = credentials.for_registry(registry)
        if auth:
            found[registry] = auth
    return (encode_registry_auth(found) if found else None), sorted(found)


def registries_of(images: Iterable[ImageNeed]) -> List[str]:
    """The registries `images` (as `client.dependencies.find` or `images.cwl.find_images` found them) come from."""
    registries = set()
    for need in images:
        if need.image and need.source in ("pull", "id"):
            try:
                registries.add(parse_normalized_named(need.image).registry)
            except InvalidReference:
                continue  # not a registry reference (an image id); the server reports it if it matters
    return sorted(registries)
