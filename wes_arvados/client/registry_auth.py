"""The ``X-Registry-Auth`` a client sends: its own credentials for the registries a run or pull needs.

They come from the docker config.json files named with ``--registry-config``
(never the default one), looked up as Docker does for each registry: its
``credHelpers`` entry, its ``auths`` entry, then ``credsStore``. Only the
registries the images live in get credentials, so a run carries no more of the
user's secrets than its pulls use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from ..images.errors import InvalidReference
from ..images.reference import parse_normalized_named
from ..images.registry.credentials import AuthConfig, Credentials, encode_registry_auth


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


def workflow_registries(workflow: str) -> List[str]:
    """The registries the images of `workflow` (a path, optionally with #fragment) are pulled from."""
    from ..images.cwl import find_images  # cwltool: loaded only when a run sends credentials, not for --help

    registries = set()
    for need in find_images(workflow):
        if need.image and need.source in ("pull", "id"):
            try:
                registries.add(parse_normalized_named(need.image).registry)
            except InvalidReference:
                continue  # not a registry reference (an image id); the server reports it if it matters
    return sorted(registries)
