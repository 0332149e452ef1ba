"""Manifests, indexes and configs parse per the OCI and Docker specs; platforms match as containerd's.

The platform cases come from containerd/platforms' published test vectors in
``data/platforms_test.json`` (see its ``origin``); the rest pin our own rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from wes_arvados.images import manifest as m
from wes_arvados.images.errors import (
    DigestMismatch,
    ImageError,
    ManifestError,
    PlatformNotFound,
)
from wes_arvados.images.manifest import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    compatible_platforms,
    config_platform,
    created,
    diff_ids,
    digest_of,
    parse_manifest,
    parse_platform,
    platform_matches,
    select_platform,
)
from wes_arvados.web.errors import image_status

VECTORS = json.loads((Path(__file__).parent / "data" / "platforms_test.json").read_text())
DEFAULTS = [Platform("linux", "amd64"), Platform("linux", "arm64"), Platform("freebsd", "arm", "v6")]


def go_platform(obj: dict[str, Any], default: Platform) -> Platform:
    """A Platform from a vector's Go-style fields, with the $default placeholders filled in."""
    fill = {"$defaultOS": default.os, "$defaultArch": default.architecture, "$defaultVariant": default.variant}
    value = {k: fill.get(v, v) if isinstance(v, str) else v for k, v in obj.items()}
    return Platform(value["OS"], value["Architecture"], value.get("Variant", ""),
                    value.get("OSVersion", ""), tuple(value.get("OSFeatures", ())))


def path_join(parts: list[str], default: Platform) -> str:
    """Go's path.Join over the vector's parts, placeholders filled in."""
    fill = {"$defaultOS": default.os, "$defaultArch": default.architecture, "$defaultVariant": default.variant}
    return "/".join(p for p in (fill.get(part, part) for part in parts) if p)


# ---- containerd/platforms vectors ---------------------------------------------------------

SELECTORS = [c for c in VECTORS["TestParseSelector"] if not c.get("skip")]


@pytest.mark.parametrize("default", DEFAULTS, ids=str)
@pytest.mark.parametrize("case", SELECTORS, ids=[c["input"] for c in SELECTORS])
def test_parse_platform_matches_containerd_vectors(case: dict[str, Any], default: Platform) -> None:
    p = parse_platform(case["input"], default)
    assert p == go_platform(case["expected"], default)
    assert platform_matches(p, p, strict=True)
    for other in case["matches"]:
        assert platform_matches(p, go_platform(other, default), strict=True)
    formatted = path_join(case["formatted"], default)
    assert str(p) == formatted
    assert str(parse_platform(formatted, default)) == formatted


@pytest.mark.parametrize("case", VECTORS["TestFormatAllEncoding"], ids=lambda c: c["expected"])
def test_platform_format_escapes_os_options(case: dict[str, Any]) -> None:
    p = go_platform(case["platform"], DEFAULTS[0])
    assert str(p) == case["expected"]
    back = parse_platform(case["expected"])
    assert (back.os_version, back.os_features) == (p.os_version, p.os_features)


@pytest.mark.parametrize("specifier", VECTORS["TestParseSelectorInvalid"])
def test_parse_platform_refuses_invalid_specifiers(specifier: str) -> None:
    with pytest.raises(ManifestError):
        parse_platform(specifier)


def test_platform_format_skips_empty_features() -> None:
    case = VECTORS["TestFormatAllSkipsEmptyOSFeatures"]
    assert str(go_platform(case["platform"], DEFAULTS[0])) == case["expected"]


def match_cases(table: str, strict: bool) -> list[tuple[str, str, bool, bool]]:
    """Flatten a TestOnly-style table into (wanted, candidate, expected, strict) rows."""
    return [
        (case["platform"], candidate, should == "true", strict)
        for case in VECTORS[table]
        for should, candidates in case["matches"].items()
        for candidate in candidates
    ]


MATCHES = match_cases("TestOnly", False) + match_cases("TestOnlyStrict", True)


@pytest.mark.parametrize(
    "wanted,candidate,expected,strict", MATCHES,
    ids=[f"{'strict' if s else 'only'}:{w}~{c}" for w, c, _, s in MATCHES],
)
def test_platform_matching_follows_containerd_only(wanted: str, candidate: str, expected: bool, strict: bool) -> None:
    assert platform_matches(parse_platform(wanted), parse_platform(candidate), strict) is expected


# ---- platform normalization ---------------------------------------------------------------


@pytest.mark.parametrize("written,canonical", [
    (Platform("Linux", "x86_64"), Platform("linux", "amd64")),
    (Platform("linux", "x86-64"), Platform("linux", "amd64")),
    (Platform("linux", "amd64", "v1"), Platform("linux", "amd64")),
    (Platform("linux", "aarch64"), Platform("linux", "arm64")),
    (Platform("linux", "arm64", "v8"), Platform("linux", "arm64")),
    (Platform("linux", "armhf"), Platform("linux", "arm", "v7")),
    (Platform("linux", "armel"), Platform("linux", "arm", "v6")),
    (Platform("linux", "arm"), Platform("linux", "arm", "v7")),
    (Platform("linux", "i386"), Platform("linux", "386")),
    (Platform("macOS", "arm64"), Platform("darwin", "arm64")),
])
def test_normalization_uses_containerd_aliases(written: Platform, canonical: Platform) -> None:
    assert written.normalized() == canonical


def test_arm_v7_falls_back_to_older_arm_best_first() -> None:
    assert [str(p) for p in compatible_platforms(parse_platform("linux/arm/v7"))] == [
        "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]


# ---- platform selection --------------------------------------------------------------------


def entry(platform: dict[str, Any] | None, n: int, media_type: str = m.OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    """An index entry whose digest is made from `n`."""
    d: dict[str, Any] = {"mediaType": media_type, "digest": f"sha256:{n:064x}", "size": 500 + n, **extra}
    if platform is not None:
        d["platform"] = platform
    return d


AMD64 = entry({"os": "linux", "architecture": "amd64"}, 1)
ARM64 = entry({"os": "linux", "architecture": "arm64", "variant": "v8"}, 2)
ARMV7 = entry({"os": "linux", "architecture": "arm", "variant": "v7"}, 3)
ATTESTATION = entry(
    {"os": "unknown", "architecture": "unknown"}, 4,
    annotations={"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": f"sha256:{1:064x}"},
)


def index_of(*entries: dict[str, Any], media_type: str = m.OCI_INDEX) -> Index:
    """Parse an index document holding `entries`."""
    raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}).encode()
    parsed = parse_manifest(raw, media_type)
    assert isinstance(parsed, Index)
    return parsed


MULTI = index_of(AMD64, ARM64, ARMV7, ATTESTATION)


@pytest.mark.parametrize("wanted,chosen", [
    ("linux/amd64", AMD64),
    ("linux/arm64", ARM64),
    ("linux/arm64/v8", ARM64),
    ("linux/aarch64", ARM64),
    ("linux/arm/v7", ARMV7),
    ("linux/arm", ARMV7),
    ("linux/arm/v8", ARMV7),
])
def test_select_platform_chooses_the_matching_entry(wanted: str, chosen: dict[str, Any]) -> None:
    assert select_platform(MULTI, parse_platform(wanted)).digest == chosen["digest"]


def test_missing_platform_lists_the_available_ones() -> None:
    with pytest.raises(PlatformNotFound) as info:
        select_platform(MULTI, parse_platform("linux/s390x"), image="docker.io/library/ubuntu:22.04")
    err = info.value
    assert err.available == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    assert "linux/s390x" in err.msg and "linux/amd64, linux/arm64/v8, linux/arm/v7" in err.msg
    assert "docker.io/library/ubuntu:22.04" in err.msg and "unknown" not in err.msg
    assert isinstance(err, ImageError) and image_status(err) == 400


@pytest.mark.parametrize("wanted", ["unknown/unknown", "linux/s390x", "linux/ppc64le"])
def test_attestation_is_never_selected(wanted: str) -> None:
    with pytest.raises(PlatformNotFound):
        select_platform(MULTI, Platform("unknown", "unknown") if wanted == "unknown/unknown" else parse_platform(wanted))
    annotated_only = entry({"os": "linux", "architecture": "s390x"}, 9,
                           annotations={"vnd.docker.reference.type": "attestation-manifest"})
    with pytest.raises(PlatformNotFound):
        select_platform(index_of(AMD64, annotated_only), parse_platform("linux/s390x"))


def test_exact_variant_is_preferred_over_an_older_one() -> None:
    v6 = entry({"os": "linux", "architecture": "arm", "variant": "v6"}, 5)
    assert select_platform(index_of(v6, ARMV7), parse_platform("linux/arm/v7")).digest == ARMV7["digest"]
    assert select_platform(index_of(v6, AMD64), parse_platform("linux/arm/v7")).digest == v6["digest"]
    with pytest.raises(PlatformNotFound):
        select_platform(index_of(v6, AMD64), parse_platform("linux/arm/v7"), strict=True)


def test_amd64_falls_back_to_386() -> None:
    i386 = entry({"os": "linux", "architecture": "386"}, 6)
    assert select_platform(index_of(i386, ARM64), parse_platform("linux/amd64")).digest == i386["digest"]


def test_entry_of_unknown_media_type_is_ignored() -> None:
    odd = entry({"os": "linux", "architecture": "amd64"}, 7, media_type="application/vnd.example.future+json")
    nested = entry({"os": "linux", "architecture": "amd64"}, 8, media_type=m.OCI_INDEX)
    assert select_platform(index_of(odd, nested, AMD64), parse_platform("linux/amd64")).digest == AMD64["digest"]
    with pytest.raises(PlatformNotFound) as info:
        select_platform(index_of(odd), parse_platform("linux/amd64"))
    assert info.value.available == []


def test_entry_without_platform_is_a_last_resort() -> None:
    bare = entry(None, 10)
    assert select_platform(index_of(bare, AMD64), parse_platform("linux/amd64")).digest == AMD64["digest"]
    assert select_platform(index_of(bare), parse_platform("linux/amd64")).digest == bare["digest"]


def test_schema1_entry_matching_the_platform_is_refused_clearly() -> None:
    old = entry({"os": "linux", "architecture": "amd64"}, 11, media_type=m.DOCKER_MANIFEST_SCHEMA1_SIGNED)
    with pytest.raises(ManifestError, match="schema 1 manifests are not supported"):
        select_platform(index_of(old), parse_platform("linux/amd64"))


# ---- manifests and indexes -----------------------------------------------------------------

CONFIG = {"mediaType": m.DOCKER_CONFIG, "digest": f"sha256:{20:064x}", "size": 1469}
LAYER = {"mediaType": m.DOCKER_LAYER, "digest": f"sha256:{21:064x}", "size": 2_000_000}


def test_docker_schema2_manifest_parses() -> None:
    raw = json.dumps({"schemaVersion": 2, "mediaType": m.DOCKER_MANIFEST_SCHEMA2, "config": CONFIG, "layers": [LAYER]}).encode()
    parsed = parse_manifest(raw, m.DOCKER_MANIFEST_SCHEMA2)
    assert isinstance(parsed, Manifest)
    assert parsed.media_type == m.DOCKER_MANIFEST_SCHEMA2
    assert parsed.config == Descriptor(m.DOCKER_CONFIG, CONFIG["digest"], 1469)
    assert [layer.digest for layer in parsed.layers] == [LAYER["digest"]]
    assert parsed.raw == raw and parsed.digest == digest_of(raw)


def test_docker_manifest_list_parses_with_platforms() -> None:
    parsed = index_of(AMD64, ARM64, media_type=m.DOCKER_MANIFEST_LIST)
    assert parsed.media_type == m.DOCKER_MANIFEST_LIST
    assert [d.platform for d in parsed.manifests] == [Platform("linux", "amd64"), Platform("linux", "arm64", "v8")]


def test_kind_comes_from_content_type_or_shape_when_body_has_no_media_type() -> None:
    manifest_raw = json.dumps({"schemaVersion": 2, "config": CONFIG, "layers": [LAYER]}).encode()
    parsed = parse_manifest(manifest_raw, "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8")
    assert isinstance(parsed, Manifest) and parsed.media_type == m.DOCKER_MANIFEST_SCHEMA2
    parsed = parse_manifest(manifest_raw, "application/json")
    assert isinstance(parsed, Manifest) and parsed.media_type == m.OCI_MANIFEST
    index_raw = json.dumps({"schemaVersion": 2, "manifests": [AMD64]}).encode()
    assert isinstance(parse_manifest(index_raw, ""), Index)


def test_body_media_type_wins_over_content_type() -> None:
    raw = json.dumps({"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": [AMD64]}).encode()
    assert isinstance(parse_manifest(raw, m.OCI_MANIFEST), Index)


@pytest.mark.parametrize("raw,content_type", [
    (json.dumps({"schemaVersion": 1, "name": "library/old", "tag": "latest", "fsLayers": [], "history": []}), "application/json"),
    (json.dumps({"schemaVersion": 1, "name": "x", "signatures": []}), m.DOCKER_MANIFEST_SCHEMA1_SIGNED),
    (json.dumps({"mediaType": m.DOCKER_MANIFEST_SCHEMA1, "fsLayers": []}), ""),
    (json.dumps({"name": "x", "fsLayers": []}), m.DOCKER_MANIFEST_SCHEMA1),
])
def test_schema1_is_refused_with_a_clear_message(raw: str, content_type: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw.encode(), content_type)
    assert info.value.msg == (
        "schema 1 manifests are not supported (deprecated by Docker in 2017); "
        "push the image again with a current tool"
    )


def test_unknown_layer_media_types_are_kept() -> None:
    odd_layer = {"mediaType": "application/vnd.example.layer.v1+squashfs", "digest": f"sha256:{22:064x}", "size": 9,
                 "annotations": {"org.example": "yes"}}
    foreign = {**LAYER, "mediaType": m.DOCKER_FOREIGN_LAYER, "urls": ["https://example.com/layer"]}
    raw = json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST,
                      "config": {**CONFIG, "mediaType": m.OCI_CONFIG}, "layers": [LAYER, odd_layer, foreign]}).encode()
    parsed = parse_manifest(raw, m.OCI_MANIFEST)
    assert isinstance(parsed, Manifest)
    assert [layer.media_type for layer in parsed.layers] == [m.DOCKER_LAYER, odd_layer["mediaType"], m.DOCKER_FOREIGN_LAYER]
    assert parsed.layers[1].annotations == {"org.example": "yes"}
    assert parsed.layers[2].urls == ("https://example.com/layer",)


def test_artifact_config_media_type_is_kept() -> None:
    raw = json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "artifactType": "application/vnd.example",
                      "config": {**CONFIG, "mediaType": m.OCI_EMPTY, "size": 2}, "layers": []}).encode()
    parsed = parse_manifest(raw, m.OCI_MANIFEST)
    assert isinstance(parsed, Manifest) and parsed.config.media_type == m.OCI_EMPTY


@pytest.mark.parametrize("doc,why", [
    (b"not json", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example+json"}).encode(), "unsupported manifest media type"),
    (json.dumps({"schemaVersion": 2}).encode(), "unsupported manifest media type"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "layers": []}).encode(), "has no config"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_INDEX}).encode(), "has no manifests"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": {**CONFIG, "digest": "sha256:abc"}}).encode(), "descriptor digest"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": {**CONFIG, "size": -1}}).encode(), "invalid size"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": {**CONFIG, "size": "12"}}).encode(), "invalid size"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": {"digest": CONFIG["digest"], "size": 1}}).encode(), "no mediaType"),
])
def test_malformed_documents_are_manifest_errors(doc: bytes, why: str) -> None:
    with pytest.raises(ManifestError, match=why):
        parse_manifest(doc, "")


def test_expected_digest_is_verified() -> None:
    raw = json.dumps({"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": [AMD64]}).encode()
    good = digest_of(raw)
    assert parse_manifest(raw, m.OCI_INDEX, expected_digest=good).digest == good
    assert parse_manifest(raw, m.OCI_INDEX, expected_digest=digest_of(raw, "sha512")).digest == digest_of(raw, "sha512")
    with pytest.raises(DigestMismatch) as info:
        parse_manifest(raw, m.OCI_INDEX, expected_digest=f"sha256:{0:064x}")
    assert info.value.actual == good and image_status(info.value) == 502


def test_accept_asks_for_every_supported_kind_and_not_schema1() -> None:
    assert set(m.ACCEPT) == {m.DOCKER_MANIFEST_SCHEMA2, m.DOCKER_MANIFEST_LIST, m.OCI_MANIFEST, m.OCI_INDEX}
    assert not set(m.ACCEPT) & m.SCHEMA1_TYPES


# ---- image config ----------------------------------------------------------------------------

CONFIG_DOC = {
    "architecture": "arm64", "variant": "v8", "os": "linux", "created": "2024-05-01T12:00:00Z",
    "config": {"Cmd": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": [f"sha256:{30:064x}", f"sha256:{31:064x}"]},
}


def test_config_helpers_read_diff_ids_created_and_platform() -> None:
    raw = json.dumps(CONFIG_DOC).encode()
    assert diff_ids(raw) == [f"sha256:{30:064x}", f"sha256:{31:064x}"]
    assert created(raw) == "2024-05-01T12:00:00Z"
    assert config_platform(raw) == Platform("linux", "arm64", "v8")
    bare = json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode()
    assert created(bare) is None and config_platform(bare) is None and diff_ids(bare) == []


@pytest.mark.parametrize("doc", [b"{", json.dumps({"rootfs": {}}).encode(),
                                 json.dumps({"rootfs": {"diff_ids": ["sha256:short"]}}).encode()])
def test_bad_config_is_a_manifest_error(doc: bytes) -> None:
    with pytest.raises(ManifestError):
        diff_ids(doc)
