"""Image references parse and normalize as distribution/reference does.

Most cases are the published test vectors of distribution/reference, carried in
``data/reference_test.json`` and ``data/normalize_test.json`` (see their
``origin``); the rest pin what the pull needs beyond Go's API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from wes_arvados.images import reference as ref
from wes_arvados.images.errors import ImageError, InvalidReference
from wes_arvados.images.reference import (
    Reference,
    parse,
    parse_docker_ref,
    parse_named,
    parse_normalized_named,
    validate_digest,
    with_name,
)
from wes_arvados.web.errors import image_status

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "reference_test.json").read_text())
NORMALIZE = json.loads((DATA / "normalize_test.json").read_text())

# The Go error values of the vectors, by the reason wes_arvados gives.
GO_ERRORS = {
    "ErrNameEmpty": ref.NAME_EMPTY,
    "ErrReferenceInvalidFormat": ref.REFERENCE_INVALID_FORMAT,
    "ErrNameContainsUppercase": ref.NAME_CONTAINS_UPPERCASE,
    "ErrNameTooLong": ref.NAME_TOO_LONG,
    "ErrNameNotCanonical": ref.NAME_NOT_CANONICAL,
    "digest.ErrDigestInvalidLength": ref.CHECKSUM_INVALID_LENGTH,
    "digest.ErrDigestUnsupported": ref.DIGEST_UNSUPPORTED,
}


def cases(table: list[dict[str, Any]], key: str = "input") -> Any:
    """Parametrize over a vector table, each case named by its input."""
    return pytest.mark.parametrize("case", table, ids=[repr(c[key])[:60] for c in table])


def optional(value: str) -> str | None:
    """Go writes an absent tag or digest as ""; wes_arvados as None."""
    return value or None


# ---- reference_test.go ------------------------------------------------------------------


@cases(REFERENCE["TestReferenceParse"])
def test_parse_matches_go_vectors(case: dict[str, Any]) -> None:
    expect = case.get("wes_arvados", case)
    if "err" in expect:
        with pytest.raises(InvalidReference) as info:
            parse(case["input"])
        assert info.value.reason == GO_ERRORS[expect["err"]]
        return
    r = parse(case["input"])
    assert str(r) == case["input"]
    assert r.name == expect["repository"]
    assert r.domain == expect.get("domain", "")
    assert r.tag == optional(expect.get("tag", ""))
    assert r.digest == optional(expect.get("digest", ""))


@cases(REFERENCE["TestWithNameFailure"])
def test_with_name_refuses_go_vectors(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidReference) as info:
        with_name(case["input"])
    assert info.value.reason == GO_ERRORS[case["err"]]


@cases(REFERENCE["TestDomainAndPath"])
def test_with_name_splits_domain_and_path(case: dict[str, Any]) -> None:
    r = with_name(case["input"])
    assert (r.domain, r.path) == (case["domain"], case["path"])


@cases(REFERENCE["TestSerialization"], key="description")
def test_parse_round_trips_serialization_vectors(case: dict[str, Any]) -> None:
    if "err" in case:
        with pytest.raises(InvalidReference) as info:
            parse(case["input"])
        assert info.value.reason == GO_ERRORS[case["err"]]
        return
    r = parse(case["input"])
    assert (r.name, r.tag, r.digest) == (case["name"], optional(case["tag"]), optional(case["digest"]))
    assert str(r) == case["input"]


@cases(REFERENCE["TestWithTag"], key="combined")
def test_with_tag_keeps_digest(case: dict[str, Any]) -> None:
    r = with_name(case["name"])
    if case["digest"]:
        r = r.with_digest(case["digest"])
    assert str(r.with_tag(case["tag"])) == case["combined"]


@cases(REFERENCE["TestWithDigest"], key="combined")
def test_with_digest_keeps_tag(case: dict[str, Any]) -> None:
    r = with_name(case["name"])
    if case["tag"]:
        r = r.with_tag(case["tag"])
    assert str(r.with_digest(case["digest"])) == case["combined"]


@cases(REFERENCE["TestParseNamed"])
def test_parse_named_requires_canonical_form(case: dict[str, Any]) -> None:
    if "err" in case:
        with pytest.raises(InvalidReference) as info:
            parse_named(case["input"])
        assert info.value.reason == GO_ERRORS[case["err"]]
        return
    r = parse_named(case["input"])
    assert (r.domain, r.path) == (case["domain"], case["path"])


# ---- normalize_test.go ------------------------------------------------------------------

VALID_NAMES = NORMALIZE["TestValidateReferenceName"]["valid"] + NORMALIZE["TestValidateRemoteName"]["valid"]
INVALID_NAMES = NORMALIZE["TestValidateReferenceName"]["invalid"] + NORMALIZE["TestValidateRemoteName"]["invalid"]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_normalized_parse_accepts_valid_names(name: str) -> None:
    parse_normalized_named(name)


@pytest.mark.parametrize("name", INVALID_NAMES, ids=[n[:60] for n in INVALID_NAMES])
def test_normalized_parse_refuses_invalid_names(name: str) -> None:
    with pytest.raises(InvalidReference):
        parse_normalized_named(name)


REPOSITORY_INFO = [
    (written, case)
    for case in NORMALIZE["TestParseRepositoryInfo"]
    for written in (case["FamiliarName"], case["FullName"], case["AmbiguousName"])
    if written
]


@pytest.mark.parametrize("written,case", REPOSITORY_INFO, ids=[w for w, _ in REPOSITORY_INFO])
def test_normalized_parse_gives_full_and_familiar_names(written: str, case: dict[str, str]) -> None:
    r = parse_normalized_named(written)
    assert r.familiar_name == case["FamiliarName"]
    assert str(r) == case["FullName"]
    assert r.domain == case["Domain"]
    assert r.path == case["RemoteName"]


def test_tag_and_digest_are_both_kept() -> None:
    case = NORMALIZE["TestParseReferenceWithTagAndDigest"]
    r = parse_normalized_named(case["input"])
    assert str(r) == case["string"]
    assert r.tag is not None and r.digest is not None
    assert r.familiar_string() == case["familiar_string"]
    assert r.identifier == r.digest  # the digest wins for pulling


def test_invalid_components_are_refused() -> None:
    case = NORMALIZE["TestInvalidReferenceComponents"]
    with pytest.raises(InvalidReference):
        parse_normalized_named(case["invalid_name"])
    r = parse_normalized_named(case["name"])
    with pytest.raises(InvalidReference, match=ref.TAG_INVALID_FORMAT):
        r.with_tag(case["invalid_tag"])
    with pytest.raises(InvalidReference, match=ref.DIGEST_INVALID_FORMAT):
        r.with_digest(case["invalid_digest"])


NAMED_ANY = [c for c in NORMALIZE["TestParseAnyReference"] if not c.get("digest_only")]


@cases(NAMED_ANY, key="Reference")
def test_named_references_normalize_to_their_equivalent(case: dict[str, str]) -> None:
    r = parse_normalized_named(case["Reference"])
    assert str(r) == case["Equivalent"]
    assert r == parse(case["Equivalent"])


@cases(NORMALIZE["TestNormalizedSplitHostname"])
def test_normalized_parse_splits_domain_and_path(case: dict[str, str]) -> None:
    r = parse_normalized_named(case["input"])
    assert (r.domain, r.path) == (case["domain"], case["path"])


@cases(NORMALIZE["TestParseDockerRef"], key="name")
def test_docker_ref_keeps_digest_or_defaults_tag(case: dict[str, str]) -> None:
    r = parse_docker_ref(case["input"])
    assert str(r) == case["expected"]
    parse(str(r))


# ---- beyond the Go vectors ------------------------------------------------------------------


def test_official_image_normalizes_to_docker_hub() -> None:
    r = parse_normalized_named("ubuntu")
    assert r == Reference("docker.io", "library/ubuntu")
    assert (r.name, r.repository, r.registry, r.registry_host) == (
        "docker.io/library/ubuntu", "library/ubuntu", "docker.io", "registry-1.docker.io")
    assert (r.familiar_name, r.familiar_string(), str(r)) == ("ubuntu", "ubuntu", "docker.io/library/ubuntu")


def test_legacy_index_domain_becomes_docker_io() -> None:
    r = parse_normalized_named("index.docker.io/library/ubuntu:22.04")
    assert str(r) == "docker.io/library/ubuntu:22.04"
    assert r.registry_host == "registry-1.docker.io"


@pytest.mark.parametrize("written,host,path", [
    ("localhost/app", "localhost", "app"),
    ("localhost:5000/team/app:1", "localhost:5000", "team/app"),
    ("[::1]:5000/x", "[::1]:5000", "x"),
    ("quay.io/biocontainers/samtools:1.17--h00cdaf9_0", "quay.io", "biocontainers/samtools"),
])
def test_other_registries_are_connected_to_as_written(written: str, host: str, path: str) -> None:
    r = parse_normalized_named(written)
    assert (r.registry, r.registry_host, r.repository) == (host, host, path)
    assert r.familiar_string() == written


def test_tag_or_default_and_identifier() -> None:
    digest = "sha256:" + "a" * 64
    assert parse_normalized_named("ubuntu").tag_or_default == "latest"
    assert parse_normalized_named("ubuntu").identifier == "latest"
    assert parse_normalized_named("ubuntu:22.04").tag_or_default == "22.04"
    assert parse_normalized_named(f"ubuntu@{digest}").tag_or_default is None
    assert parse_normalized_named(f"ubuntu@{digest}").identifier == digest
    assert parse_normalized_named(f"ubuntu:22.04@{digest}").identifier == digest


def test_with_tag_and_with_digest_return_new_references() -> None:
    r = parse_normalized_named("ubuntu")
    digest = "sha256:" + "b" * 64
    assert str(r.with_tag("24.04")) == "docker.io/library/ubuntu:24.04"
    assert str(r.with_digest(digest)) == f"docker.io/library/ubuntu@{digest}"
    assert r.tag is None and r.digest is None


def test_error_names_the_input_and_the_reason() -> None:
    with pytest.raises(InvalidReference) as info:
        parse_normalized_named("Ubuntu")
    err = info.value
    assert err.reference == "Ubuntu" and err.reason == ref.NAME_CONTAINS_UPPERCASE
    assert "'Ubuntu'" in err.msg and "must be lowercase" in err.msg
    assert isinstance(err, ImageError) and str(err) == err.msg
    assert image_status(err) == 400  # the web layer's mapping: the request named an unusable image


def test_sixty_four_hex_characters_are_not_a_name() -> None:
    with pytest.raises(InvalidReference) as info:
        parse_normalized_named("a" * 64)
    assert info.value.reason == ref.NAME_IS_IDENTIFIER
    parse_normalized_named("a" * 63)
    parse_normalized_named("docker.io/" + "a" * 64)


def test_path_longer_than_255_characters_is_refused() -> None:
    parse_normalized_named("example.com/" + "a" * 255)
    with pytest.raises(InvalidReference) as info:
        parse_normalized_named("example.com/" + "a" * 256)
    assert info.value.reason == ref.NAME_TOO_LONG


def test_error_from_normalized_parse_names_what_the_user_wrote() -> None:
    with pytest.raises(InvalidReference) as info:
        parse_normalized_named("ubuntu@sha256:abc")
    assert info.value.reference == "ubuntu@sha256:abc"


@pytest.mark.parametrize("digest,reason", [
    ("sha256:" + "0" * 64, None),
    ("sha384:" + "0" * 96, None),
    ("sha512:" + "0" * 128, None),
    ("sha256:" + "0" * 63, ref.CHECKSUM_INVALID_LENGTH),
    ("sha384:" + "0" * 64, ref.CHECKSUM_INVALID_LENGTH),
    ("sha256:" + "A" * 64, ref.CHECKSUM_INVALID_FORMAT),
    ("md5:" + "0" * 32, ref.DIGEST_UNSUPPORTED),
    ("sha256", ref.CHECKSUM_INVALID_FORMAT),
    (":" + "0" * 64, ref.CHECKSUM_INVALID_FORMAT),
    ("Sha256:" + "0" * 64, ref.CHECKSUM_INVALID_FORMAT),
])
def test_digests_are_checked_like_go_digest(digest: str, reason: str | None) -> None:
    if reason is None:
        assert validate_digest(digest) == digest
        return
    with pytest.raises(InvalidReference) as info:
        validate_digest(digest)
    assert info.value.reason == reason


@pytest.mark.parametrize("text", ["ubuntu\n", "ubuntu:lätest", "ubuntu:tag\n", " ubuntu"])
def test_no_trailing_newline_or_non_ascii_slips_through(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_normalized_named(text)


def test_a_reference_remembers_how_it_was_written_without_it_being_part_of_its_identity() -> None:
    short, full = parse_normalized_named("ubuntu"), parse_normalized_named("docker.io/library/ubuntu:latest")
    assert (short.as_written, full.as_written) == ("ubuntu", "docker.io/library/ubuntu:latest")
    assert short.with_tag("latest") == full and hash(short.with_tag("latest")) == hash(full)
    assert str(short) == "docker.io/library/ubuntu" and short.with_tag("22.04").as_written == "docker.io/library/ubuntu:22.04"
