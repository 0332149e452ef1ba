"""Errors of image handling, a branch of the one `WesError` hierarchy.

The status code says whose fault it is: 400 when the request named something we
cannot use (a malformed reference, an unsupported manifest, a missing platform),
502 when the registry failed us.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import WesError


class ImageError(WesError):
    """Base of every failure to resolve, fetch or read a container image."""

    status_code = 400


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

    # The request was fine; what came back was not.
    status_code = 502

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class RegistryError(ImageError):
    """A registry refused or failed a request, or could not be reached."""

    status_code = 502

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
