"""Errors of image handling: the library's own hierarchy, rooted at `ImageError`.

The library knows no HTTP: the web layer (web/errors.py) maps these to statuses,
the request's fault (a malformed reference, a missing platform) or the registry's.
"""

from __future__ import annotations

from collections.abc import Iterable


class ImageError(Exception):
    """Base of every failure to resolve, fetch or read a container image; `msg` is safe to show."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class InvalidReference(ImageError):
    """An image reference does not follow Docker's reference grammar."""

    def __init__(self, reference: str, reason: str, detail: str = "") -> None:
        msg = f"invalid image reference {reference!r}: {reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.reference = reference
        self.reason = reason
        self.detail = detail


class ManifestError(ImageError):
    """A manifest, index or image config is malformed or of an unsupported kind."""


class PlatformNotFound(ImageError):
    """An image index has no manifest for the wanted platform."""

    def __init__(self, wanted: str, available: Iterable[str], image: str = "") -> None:
        self.wanted = wanted
        self.available = list(available)
        self.image = image
        where = f"image {image}" if image else "the image index"
        listed = ", ".join(self.available) if self.available else "none"
        super().__init__(f"{where} has no manifest for platform {wanted}; available platforms: {listed}")


class DigestMismatch(ImageError):
    """Content fetched from a registry does not hash to the digest that named it."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class RegistryError(ImageError):
    """A registry refused or failed a request, or could not be reached."""

    def __init__(self, image: str, registry: str, status: int | None, message: str) -> None:
        answered = f"answered {status}" if status is not None else "failed"
        super().__init__(f"registry {registry} {answered} for image {image}: {message}")
        self.image = image
        self.registry = registry
        self.status = status
        self.registry_message = message


class AuthError(RegistryError):
    """The registry answered 401 or 403: credentials missing, wrong or insufficient."""


class NotFoundError(RegistryError):
    """The registry does not know the repository, manifest or blob asked for."""


class TooManyRequests(RegistryError):
    """The registry answered 429: its rate limit for us is spent."""
