"""The interface every image store implements, and what it records of an image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:
    from ..pull import OpenedImage


@dataclass(frozen=True)
class StoredImage:
    """An image a store holds, under the name a workflow uses."""

    name: str  # as the workflow or the pull request wrote it
    image_id: str  # sha256 of the config: what the runtime calls the image's ID
    manifest_digest: str
    size: int  # of the docker-save archive
    platform: Optional[str]
    stored_at: str
    location: str  # where the store keeps it: the runtime's name for it, a Keep collection's uuid
    # In Keep: the collection's portable data hash, what a workflow pins the image by.
    portable_data_hash: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        """As a JSON-able dict."""
        return asdict(self)


class ImageStore(ABC):
    """Holds images for the engine; safe for concurrent callers in several processes."""

    #: Short name for messages and listings ("docker", "podman", "keep").
    kind: str = ""

    @abstractmethod
    def lookup(self, name: str, image_id: str) -> Optional[StoredImage]:
        """The stored image if the store has `name` as exactly the image `image_id`, else None."""

    @abstractmethod
    def put(self, name: str, image: "OpenedImage") -> StoredImage:
        """Store `image` (resolved, its layers fetched as they are read) under `name`; return the record.

        Nothing becomes visible unless everything was stored.
        """

    @abstractmethod
    def list(self) -> List[StoredImage]:
        """Every image stored, newest first."""
