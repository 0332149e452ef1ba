"""Which collection a container image name or hash means, by the API server's rules.

Collection.find_all_for_docker_image: a portable data hash names a readable collection;
otherwise `repo:tag` (tag `latest` if none) is looked up through `docker_image_repo+tag`
links, then the name as a prefix of `docker_image_hash` links. Candidates are ordered by the
link's `image_timestamp` property, newest first, then the link's creation, and only
collections holding exactly one file whose name fits the supported image formats
(v2: `sha256:<64 hex>.tar`) qualify.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from . import manifests
from .errors import UnresolvableContainer
from .records import parse_time

if TYPE_CHECKING:
    from .cluster import Cluster

Record = Dict[str, Any]


def file_pattern(formats: tuple) -> "re.Pattern[str]":
    """The image file names the configured SupportedDockerImageFormats accept."""
    if "v1" in formats and "v2" in formats:
        return re.compile(r"^(sha256:)?[0-9A-Fa-f]{64}\.tar$")
    if "v2" in formats:
        return re.compile(r"^(sha256:)[0-9A-Fa-f]{64}\.tar$")
    if "v1" in formats:
        return re.compile(r"^[0-9A-Fa-f]{64}\.tar$")
    raise ValueError(f"Unrecognized configuration for docker_image_formats {formats}")


def is_image_collection(manifest: str, pattern: "re.Pattern[str]") -> bool:
    """Exactly one file (empty-directory placeholders aside), with an image file name."""
    found = [(stream, name) for stream, name, size in manifests.files(manifest) if not (name == "." and size == 0)]
    return len(found) == 1 and bool(pattern.match(found[0][1]))


def _timestamp_seconds(link: Record) -> int:
    try:
        return parse_time(str(link["properties"]["image_timestamp"])) // 1_000_000_000
    except (KeyError, TypeError, ValueError):
        return 0


def find_all(cluster: "Cluster", user: Record, term: str, tag: Optional[str] = None) -> List[Record]:
    """The image collections `term` may mean for `user`, most preferred first."""
    pattern = file_pattern(cluster.settings.docker_image_formats)
    readable = cluster.permissions.readable
    collections = cluster.trash.visible(readable(user, "collections", cluster.store.all("collections")), {})
    match = manifests.LOCATOR_RE.match(term)
    if match:
        pdh = match.group(1) + (match.group(2) or "")
        found = [c for c in collections if c["portable_data_hash"] == pdh][:1]
        return [c for c in found if is_image_collection(c["manifest_text"], pattern)]
    if tag is None and ":" in term:
        term, tag = term.split(":", 1)
    by_uuid = {c["uuid"]: c for c in collections}
    links = [link for link in readable(user, "links", cluster.store.all("links")) if link.get("head_uuid") in by_uuid]
    links.sort(key=lambda link: link["created_at"], reverse=True)
    matches = [link for link in links if link.get("link_class") == "docker_image_repo+tag"
               and link.get("name") == f"{term}:{tag or 'latest'}"]
    if not matches:
        matches = [link for link in links if link.get("link_class") == "docker_image_hash"
                   and str(link.get("name") or "").startswith(term)]
    order: Dict[str, tuple] = {}
    for link in matches:  # as the API server's loop: the last (oldest) link of a collection decides
        order[link["head_uuid"]] = (-_timestamp_seconds(link), -(parse_time(link["created_at"]) // 1_000_000_000))
    ordered = sorted((by_uuid[uuid] for uuid in order), key=lambda c: order[c["uuid"]])
    compatible = [c for c in ordered if is_image_collection(c["manifest_text"], pattern)]
    if ordered and not compatible:
        raise UnresolvableContainer("Matching Docker image is incompatible with 'docker_image_formats' configuration.")
    return compatible


def ruby_inspect(text: str) -> str:
    """String#inspect: double-quoted, with Ruby's escapes (printable UTF-8 kept)."""
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e", "#{": "\\#{"}
    out, i = "", 0
    while i < len(text):
        pair = text[i:i + 2]
        if pair in escapes:
            out, i = out + escapes[pair], i + 2
            continue
        char = text[i]
        out += escapes.get(char) or (char if char.isprintable() else f"\\u{ord(char):04X}" if ord(char) > 0x7f
                                     else f"\\x{ord(char):02X}")
        i += 1
    return f'"{out}"'


def resolve(cluster: "Cluster", user: Record, container_image: str) -> str:
    """Container.resolve_container_image: the portable data hash of the image collection to run."""
    found = find_all(cluster, user, container_image)
    if not found:
        raise UnresolvableContainer(f"docker image {ruby_inspect(container_image)} not found")
    return found[0]["portable_data_hash"]
