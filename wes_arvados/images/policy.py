"""Which images the operator lets runs use: allow and deny lists of name patterns."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import List, Sequence

from .errors import ImageError
from .reference import Reference


class ImageDenied(ImageError):
    """The operator's policy does not allow this image."""


def _matches(ref: Reference, pattern: str) -> bool:
    # A pattern may name a registry (docker.io), a repository (docker.io/library/*) or a tagged name.
    return any(fnmatchcase(candidate, pattern) for candidate in (ref.registry, ref.name, str(ref)))


@dataclass(frozen=True)
class ImagePolicy:
    """Patterns (shell wildcards) matched against the normalized name; `deny` wins, an empty `allow` allows all."""

    allow: Sequence[str] = field(default_factory=list)
    deny: Sequence[str] = field(default_factory=list)

    def check(self, ref: Reference) -> None:
        """Raise `ImageDenied` naming the image and the rule when `ref` may not be used."""
        denied: List[str] = [p for p in self.deny if _matches(ref, p)]
        if denied:
            raise ImageDenied(f"image {ref} is denied by the server's policy (deny: {denied[0]})")
        if self.allow and not any(_matches(ref, p) for p in self.allow):
            raise ImageDenied(f"image {ref} is not allowed by the server's policy "
                              f"(allowed: {', '.join(self.allow)})")
