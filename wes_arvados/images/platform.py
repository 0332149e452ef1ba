"""Platforms: parsing, normalization and matching as containerd does it.

Follows github.com/containerd/platforms (Parse, Normalize, Only, OnlyStrict),
whose test vectors drive ``tests/images/test_manifest.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .errors import ManifestError


@dataclass(frozen=True)
class Platform:
    """The os and CPU an image is built for, as in an index entry or a config."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: Any) -> Platform:
        """Read a ``platform`` object of an index entry (or the same fields of a config)."""
        if not isinstance(obj, dict):
            raise ManifestError(f"platform must be a JSON object, not {obj!r}")
        features = obj.get("os.features") or []
        if not isinstance(features, list):
            raise ManifestError(f"os.features must be a list, not {features!r}")
        return cls(
            os=json_string(obj, "os"), architecture=json_string(obj, "architecture"),
            variant=json_string(obj, "variant"), os_version=json_string(obj, "os.version"),
            os_features=tuple(str(f) for f in features),
        )

    def __str__(self) -> str:
        """The specifier form, ``os[(version+features)]/arch[/variant]`` (containerd's FormatAll)."""
        if not self.os:
            return "unknown"
        head = self.os
        version = _encode_os_option(self.os_version)
        features = "+".join(_encode_os_option(f) for f in sorted(set(self.os_features)) if f)
        if version or features:
            head += "(" + version + ("+" + features if features else "") + ")"
        return "/".join(part for part in (head, self.architecture, self.variant) if part)

    def normalized(self) -> Platform:
        """The canonical equivalent: lowercase os, ``aarch64`` as ``arm64``, arm defaulting to v7…"""
        os = self.os.lower()
        os = "darwin" if os == "macos" else os
        arch, variant = _normalize_arch(self.architecture, self.variant)
        features = tuple(sorted(set(self.os_features)))
        return Platform(os, arch, variant, self.os_version, features)


DEFAULT_PLATFORM = Platform("linux", "amd64")

# From Go's list of GOOS and GOARCH values, as containerd keeps them.
_KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos",
))
_KNOWN_ARCH = frozenset((
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
))
# arm64 v8 is the baseline and written without a variant; arm defaults to v7.
_ARM64_VARIANTS = {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"}
_ARM_VARIANTS = {"": "v7", "5": "v5", "6": "v6", "7": "v7", "8": "v8"}
_OS_RE = re.compile(r"([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?")
_COMPONENT_RE = re.compile(r"[A-Za-z0-9_.-]+")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_platform(specifier: str, default: Platform = DEFAULT_PLATFORM) -> Platform:
    """Parse ``os[(version+features)][/arch[/variant]]`` or a lone os or arch, as containerd's Parse.

    A lone os takes its architecture from `default`, a lone architecture its
    os (containerd uses the running machine for both).
    """
    def invalid(why: str) -> ManifestError:
        return ManifestError(f"invalid platform {specifier!r}: {why}")

    if "*" in specifier:
        raise invalid("wildcards are not supported")
    parts = specifier.split("/", 3)
    head = _OS_RE.fullmatch(parts[0])
    if head is None:
        raise invalid(f"{parts[0]!r} is not an os[(version+features)]")
    for part in parts[1:]:
        if not _COMPONENT_RE.fullmatch(part):
            raise invalid(f"{part!r} is not a valid component")
    os = head.group(1).lower()
    os = "darwin" if os == "macos" else os
    os_version = _decode_os_option(head.group(2) or "", invalid)
    raw_features = head.group(3)[1:].split("+") if head.group(3) else []
    features = tuple(f for f in (_decode_os_option(r, invalid) for r in raw_features) if f)
    if len(parts) == 1:
        if os in _KNOWN_OS:
            return Platform(os, default.architecture, default.variant, os_version, features)
        arch, variant = _normalize_arch(parts[0], "")
        if arch not in _KNOWN_ARCH:
            raise invalid("unknown operating system or architecture")
        return Platform(default.os, arch, "" if (arch, variant) == ("arm", "v7") else variant)
    if len(parts) == 2:
        arch, variant = _normalize_arch(parts[1], "")
        # Plain "arm" means v7; containerd writes it without the variant.
        variant = "" if (arch, variant) == ("arm", "v7") else variant
    elif len(parts) == 3:
        arch, variant = _normalize_arch(parts[1], parts[2])
        variant = "v8" if (arch, variant) == ("arm64", "") else variant
    else:
        raise invalid("too many components")
    return Platform(os, arch, variant, os_version, features)


def platform_matches(wanted: Platform, candidate: Platform, strict: bool = False) -> bool:
    """Whether an image for `candidate` runs where `wanted` is asked (containerd's Only, or OnlyStrict)."""
    return rank(wanted, candidate, strict) is not None


def compatible_platforms(wanted: Platform, strict: bool = False) -> list[Platform]:
    """The platforms an image may have to run on `wanted`, best first (containerd's platformVector)."""
    wanted = wanted.normalized()
    return [wanted] if strict else [p.normalized() for p in _platform_vector(wanted)]


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", _ARM64_VARIANTS.get(variant, variant)
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        return "arm", _ARM_VARIANTS.get(variant, variant)
    return arch, variant


def _arm64_versions(variant: str) -> list[tuple[int, int]] | None:
    """(major, highest minor) pairs an arm64 variant can run, newest first, or None if unknown."""
    match = re.fullmatch(r"v([89])(?:\.([0-9]))?", variant)
    if match is None:
        return None
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if major == 8:
        return [(8, minor)]
    # ARMv9.x includes ARMv8.(x+5); there is no v9.8 or beyond in the table.
    return None if minor > 7 else [(9, minor), (8, min(minor + 5, 9))]


def _platform_vector(p: Platform) -> list[Platform]:
    def like(arch: str, variant: str) -> Platform:
        return Platform(p.os, arch, variant, p.os_version, p.os_features)

    vector = [p]
    level = p.variant.removeprefix("v")
    if p.architecture == "amd64":
        if level.isdigit() and int(level) > 1:
            vector += [like("amd64", f"v{n}") for n in range(int(level) - 1, 0, -1)]
        vector.append(like("386", ""))
    elif p.architecture == "arm":
        if level.isdigit() and int(level) > 5:
            vector += [like("arm", f"v{n}") for n in range(int(level) - 1, 4, -1)]
    elif p.architecture == "arm64":
        variant = p.variant or "v8"
        versions = _arm64_versions(variant)
        if versions is None:
            return []
        vector = [
            like("arm64", f"v{major}.{minor}" if minor else f"v{major}")
            for major, top in versions for minor in range(top, -1, -1)
        ]
        # Every arm64 CPU also runs 32-bit arm/v8 and below.
        vector += _platform_vector(like("arm", "v8"))
    return vector


def _exact_match(want: Platform, got: Platform) -> bool:
    """containerd's NewMatcher on normalized platforms; os.version is not compared.

    containerd compares os.version only for Windows, whose containers we do not run.
    """
    return (
        (want.os, want.architecture, want.variant) == (got.os, got.architecture, got.variant)
        and set(got.os_features) <= set(want.os_features)
    )


def rank(wanted: Platform, candidate: Platform, strict: bool) -> tuple[int, int] | None:
    """Sort key of `candidate` for `wanted` (lower is better), or None when it does not match."""
    got = candidate.normalized()
    for i, want in enumerate(compatible_platforms(wanted, strict)):
        if _exact_match(want, got):
            return (i, -len(got.os_features))
    return None


def _encode_os_option(value: str) -> str:
    for char, code in (("%", "%25"), ("+", "%2B"), ("(", "%28"), (")", "%29"), ("/", "%2F")):
        value = value.replace(char, code)
    return value


def _decode_os_option(value: str, invalid: Any) -> str:
    if _BAD_ESCAPE_RE.search(value):
        raise invalid(f"bad %-escape in {value!r}")
    return unquote(value)


def json_string(obj: dict[str, Any], key: str) -> str:
    """A string field of a JSON object (\"\" when absent or null); `ManifestError` for other types."""
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ManifestError(f"{key} must be a string, not {value!r}")
    return value
