"""Pinning a staged workflow's Docker images to the Keep collections the server stored them in.

arvados-cwl-runner takes an image's collection from a DockerRequirement's
``http://arvados.org/cwl#dockerCollectionPDH`` when it is there, and only otherwise
parses the image name to look it up in Keep (a parsing that mishandles a registry
port and ``name@sha256:`` references). So every DockerRequirement of the staged
documents whose image the server stored gets that key, written in full so that no
``$namespaces`` entry is needed. Files are rewritten in ruamel.yaml's round-trip
mode: key order, comments and the rest of each document stay as the user wrote them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, Iterator, List, MutableMapping

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..images.cwl import (  # read as the image finder reads a requirement
    DOCKER_REQUIREMENT,
    PULL,
    image_of,
)

PDH_KEY = "http://arvados.org/cwl#dockerCollectionPDH"
CWL_SUFFIXES = (".cwl", ".yml", ".yaml", ".json")


def _requirements(node: Any) -> Iterator[MutableMapping[str, Any]]:
    """Every DockerRequirement object in a document, in list form or in map form (`{DockerRequirement: {...}}`)."""
    if isinstance(node, list):
        for item in node:
            yield from _requirements(item)
    elif isinstance(node, MutableMapping):
        if node.get("class") == DOCKER_REQUIREMENT:
            yield node
        for key in ("requirements", "hints"):
            section = node.get(key)
            if isinstance(section, MutableMapping) and isinstance(section.get(DOCKER_REQUIREMENT), MutableMapping):
                yield section[DOCKER_REQUIREMENT]
        for key, value in node.items():
            if key not in ("requirements", "hints") or isinstance(value, list):
                yield from _requirements(value)


def round_trip() -> YAML:
    """ruamel.yaml in round-trip mode: a document dumped again keeps its order, comments and quotes."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def dump(yaml: YAML, document: Any, path: Path) -> None:
    """Write `document` to `path` with `yaml`."""
    out = io.StringIO()
    yaml.dump(document, out)
    path.write_text(out.getvalue(), encoding="utf-8")


def pin_images(staged: Path, pdh_by_image: Dict[str, str]) -> List[str]:
    """Add the PDH key to each DockerRequirement under `staged` whose pulled image is in `pdh_by_image`.

    Returns the relative paths of the files rewritten. A file that is not YAML (or
    JSON) is left alone: it is no CWL document.
    """
    yaml = round_trip()
    changed: List[str] = []
    for path in sorted(p for p in staged.rglob("*") if p.is_file() and p.suffix in CWL_SUFFIXES):
        text = path.read_text(encoding="utf-8", errors="replace")
        if DOCKER_REQUIREMENT not in text:
            continue
        try:
            document = yaml.load(text)
        except YAMLError:
            continue
        touched = False
        for requirement in _requirements(document):
            found = image_of(requirement, "")
            if found is None or found[1] != PULL or found[0] not in pdh_by_image:
                continue
            if requirement.get(PDH_KEY) != pdh_by_image[found[0]]:
                requirement[PDH_KEY] = pdh_by_image[found[0]]
                touched = True
        if touched:
            dump(yaml, document, path)
            changed.append(str(path.relative_to(staged)))
    return changed
