"""GitHub, checked against the example of its documentation."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from hookgate.errors import VerificationFailed

from .conftest import headers, make, rejects

# The example from GitHub's "Validating webhook deliveries" documentation.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_accepts_the_documented_example(now: int) -> None:
    hdrs = headers(X_Hub_Signature_256=GITHUB_SIGNATURE)
    make("github", GITHUB_SECRET).verify(hdrs, GITHUB_BODY, now)
    make("github", "old secret", GITHUB_SECRET).verify(hdrs, GITHUB_BODY, now)


def test_github_accepts_upper_case_hex(now: int) -> None:
    hdrs = headers(X_Hub_Signature_256="sha256=" + GITHUB_SIGNATURE[7:].upper())
    make("github", GITHUB_SECRET).verify(hdrs, GITHUB_BODY, now)


@pytest.mark.parametrize(
    ("secret", "body", "signature", "reason"),
    [
        (GITHUB_SECRET, b"Hello, World?", GITHUB_SIGNATURE, "no signature matched"),
        ("It's a secret to everybody", GITHUB_BODY, GITHUB_SIGNATURE, "no signature matched"),
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE[7:], "malformed signature"),
        (GITHUB_SECRET, GITHUB_BODY, "sha1=" + GITHUB_SIGNATURE[7:], "malformed signature"),
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE[:-1], "malformed signature"),
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE[:-2], "no signature matched"),
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE + " ", "malformed signature"),
    ],
    ids=["tampered", "wrong-secret", "no-prefix", "sha1-prefix", "odd-hex", "short", "space"],
)
def test_github_rejects(secret: str, body: bytes, signature: str, reason: str) -> None:
    hdrs = headers(X_Hub_Signature_256=signature)
    rejects(make("github", secret), hdrs, body, reason)


def test_github_does_not_accept_the_legacy_sha1_header() -> None:
    legacy = hmac.new(GITHUB_SECRET.encode(), GITHUB_BODY, hashlib.sha1).hexdigest()
    hdrs = headers(X_Hub_Signature="sha1=" + legacy)
    rejects(make("github", GITHUB_SECRET), hdrs, GITHUB_BODY, "missing header")


def test_failure_never_shows_the_secret_or_the_expected_signature(now: int) -> None:
    hdrs = headers(X_Hub_Signature_256="sha256=" + "0" * 64)
    with pytest.raises(VerificationFailed) as failed:
        make("github", GITHUB_SECRET).verify(hdrs, GITHUB_BODY, now)
    shown = repr(failed.value) + str(failed.value) + failed.value.reason
    assert GITHUB_SECRET not in shown
    assert GITHUB_SIGNATURE[7:] not in shown
