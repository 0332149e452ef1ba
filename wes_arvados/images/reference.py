"""Image references, parsed and normalized exactly as Docker does.

The grammar, the normalization of familiar names (``ubuntu`` is
``docker.io/library/ubuntu``) and the error kinds follow
github.com/distribution/reference; digests are checked as
github.com/opencontainers/go-digest does with sha256, sha384 and sha512
registered. distribution/reference's own test vectors drive
``tests/images/test_reference.py``.

Use `parse_normalized_named` for anything a user typed; `parse` is the strict,
non-normalizing parser and leaves the domain empty when there is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .errors import InvalidReference

__all__ = [
    "Reference",
    "parse",
    "parse_docker_ref",
    "parse_named",
    "parse_normalized_named",
    "validate_digest",
    "with_name",
]

# Why a reference is invalid: the texts of the Go error values, so that a
# message reads the same as Docker's.
REFERENCE_INVALID_FORMAT = "invalid reference format"
TAG_INVALID_FORMAT = "invalid tag format"
DIGEST_INVALID_FORMAT = "invalid digest format"
NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
NAME_EMPTY = "repository name must have at least one component"
NAME_TOO_LONG = "repository name must not be more than 255 characters"
NAME_NOT_CANONICAL = "repository name must be canonical"
NAME_IS_IDENTIFIER = "invalid repository name, cannot specify 64-byte hexadecimal strings"
CHECKSUM_INVALID_FORMAT = "invalid checksum digest format"
CHECKSUM_INVALID_LENGTH = "invalid checksum digest length"
DIGEST_UNSUPPORTED = "unsupported digest algorithm"

NAME_TOTAL_LENGTH_MAX = 255
DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"

# Hex length of each registered digest algorithm (go-digest accepts lowercase only).
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

# The grammar, piece by piece (see the package comment of distribution/reference).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6 + r")(?::[0-9]+)?"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# re.ASCII: Go's \w is [0-9A-Za-z_]; fullmatch: Go's $ does not match before "\n".
_REFERENCE_RE = re.compile(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII)
_ANCHORED_NAME_RE = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_GO_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: where the image lives and which version of it."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None
    # The text it was parsed from, for messages and for stores that keep names as written; not part of its identity.
    written: str = field(default="", compare=False, repr=False)

    @property
    def as_written(self) -> str:
        """The reference as the user wrote it (its full form if it was not parsed from text)."""
        return self.written or str(self)

    @property
    def name(self) -> str:
        """The full name without tag or digest, e.g. ``docker.io/library/ubuntu``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def repository(self) -> str:
        """The repository path within the registry, e.g. ``library/ubuntu``."""
        return self.path

    @property
    def registry(self) -> str:
        """The registry domain as written after normalization, e.g. ``docker.io``."""
        return self.domain or DEFAULT_DOMAIN

    @property
    def registry_host(self) -> str:
        """The host[:port] to connect to; Docker Hub is served by ``registry-1.docker.io``."""
        return DEFAULT_REGISTRY_HOST if self.registry == DEFAULT_DOMAIN else self.registry

    @property
    def familiar_name(self) -> str:
        """The name as Docker shows it, e.g. ``ubuntu`` or ``dmcgowan/myapp``."""
        domain, path = self.domain, self.path
        if domain != DEFAULT_DOMAIN:
            return self.name
        if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
            return path[len(OFFICIAL_REPO_PREFIX):]
        return path

    @property
    def tag_or_default(self) -> str | None:
        """The tag; ``latest`` when there is neither tag nor digest; None for a bare digest."""
        if self.tag is not None:
            return self.tag
        return None if self.digest is not None else DEFAULT_TAG

    @property
    def identifier(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest, else the tag, else latest."""
        if self.digest is not None:
            return self.digest
        return self.tag if self.tag is not None else DEFAULT_TAG

    def __str__(self) -> str:
        """The full reference, ``name[:tag][@digest]``."""
        return self.name + self._suffix()

    def familiar_string(self) -> str:
        """The reference as Docker shows it, e.g. ``busybox:latest@sha256:…``."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """This reference with `tag` (any digest is kept), as Go's WithTag."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(f"{self.name}:{tag}", TAG_INVALID_FORMAT)
        return replace(self, tag=tag, written="")

    def with_digest(self, digest: str) -> Reference:
        """This reference with `digest` (any tag is kept), as Go's WithDigest.

        Like Go, this checks the digest's grammar only; use `validate_digest`
        first when the algorithm and length must be right.
        """
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidReference(f"{self.name}@{digest}", DIGEST_INVALID_FORMAT)
        return replace(self, digest=digest, written="")

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest


def validate_digest(digest: str) -> str:
    """Return `digest` if it is a well-formed digest of a registered algorithm, else raise."""
    algorithm, sep, encoded = digest.partition(":")
    if not algorithm or not sep or not encoded:
        raise InvalidReference(digest, CHECKSUM_INVALID_FORMAT)
    length = DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        reason = DIGEST_UNSUPPORTED if _GO_DIGEST_RE.fullmatch(digest) else CHECKSUM_INVALID_FORMAT
        raise InvalidReference(digest, reason)
    if len(encoded) != length:
        raise InvalidReference(digest, CHECKSUM_INVALID_LENGTH, f"{algorithm} needs {length} hex digits")
    if not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidReference(digest, CHECKSUM_INVALID_FORMAT, "lowercase hex digits only")
    return digest


def parse(s: str) -> Reference:
    """Parse `s` strictly, without normalization (Go's Parse); the domain may be empty."""
    return _parse(s, s)


def parse_normalized_named(s: str) -> Reference:
    """Parse a reference as a user writes it into its full form (Go's ParseNormalizedNamed)."""
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidReference(s, NAME_IS_IDENTIFIER)
    domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference(s, NAME_CONTAINS_UPPERCASE, f"repository name {remote!r}")
    return _parse(f"{domain}/{remainder}", s)


def parse_named(s: str) -> Reference:
    """Parse a reference that must already be in its full, normalized form (Go's ParseNamed)."""
    ref = parse_normalized_named(s)
    if str(ref) != s:
        raise InvalidReference(s, NAME_NOT_CANONICAL, f"the canonical form is {str(ref)!r}")
    return ref


def parse_docker_ref(s: str) -> Reference:
    """Parse and normalize `s`, then keep only what identifies the image (Go's ParseDockerRef).

    A reference with both tag and digest keeps only the digest; one with
    neither gets the tag ``latest``.
    """
    ref = parse_normalized_named(s)
    if ref.digest is not None:
        return replace(ref, tag=None)
    if ref.tag is None:
        return replace(ref, tag=DEFAULT_TAG)
    return ref


def with_name(name: str) -> Reference:
    """Make a reference of a bare name (no tag, no digest), as Go's WithName."""
    match = _ANCHORED_NAME_RE.fullmatch(name)
    if match is None:
        raise InvalidReference(name, REFERENCE_INVALID_FORMAT)
    domain, path = match.group(1) or "", match.group(2)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(name, NAME_TOO_LONG)
    return Reference(domain, path)


def _parse(s: str, original: str) -> Reference:
    """Parse `s`; errors name `original`, the text the user wrote."""
    if s == "":
        raise InvalidReference(original, NAME_EMPTY)
    match = _REFERENCE_RE.fullmatch(s)
    if match is None:
        lowered = s.lower()
        if lowered != s and _REFERENCE_RE.fullmatch(lowered):
            raise InvalidReference(original, NAME_CONTAINS_UPPERCASE)
        raise InvalidReference(original, REFERENCE_INVALID_FORMAT)
    name, tag, digest = match.groups()
    name_match = _ANCHORED_NAME_RE.fullmatch(name)
    assert name_match is not None  # the reference pattern embeds the name pattern
    domain, path = name_match.group(1) or "", name_match.group(2)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(original, NAME_TOO_LONG)
    if digest is not None:
        try:
            validate_digest(digest)
        except InvalidReference as exc:
            raise InvalidReference(original, exc.reason, exc.detail) from None
    return Reference(domain, path, tag, digest, original)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Split a familiar name into a domain and the rest, as Docker guesses it."""
    first, slash, rest = name.partition("/")
    if not slash:
        # A single element ("ubuntu", "ubuntu:22.04") is an official image,
        # never "host:port".
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == "localhost":
        domain, remainder = first, rest
    elif first == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    elif "." in first or ":" in first or first.lower() != first:
        # A dot, a port, or capitals (never allowed in a path) mark a host.
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder
