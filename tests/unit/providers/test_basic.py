"""HTTP Basic, checked against the examples of RFC 7617."""

from __future__ import annotations

import base64

import pytest

from .conftest import BODY, headers, make, rejects


@pytest.mark.parametrize(
    ("secret", "authorization"),
    [
        # Both examples from RFC 7617 (section 2 and 2.1, the UTF-8 one).
        ("Aladdin:open sesame", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ("test:123£", "Basic dGVzdDoxMjPCow=="),
        ("Aladdin:open sesame", "basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
    ],
)
def test_basic_accepts_the_rfc_examples(secret: str, authorization: str, now: int) -> None:
    make("basic", "other:pw", secret).verify(headers(Authorization=authorization), BODY, now)


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Basic " + base64.b64encode(b"Aladdin:open sesamE").decode(), "no credentials matched"),
        ("Basic " + base64.b64encode(b"Aladdin").decode(), "no credentials matched"),
        ("Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "malformed header"),
        ("QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "malformed header"),
        ("Basic not base64!", "malformed signature"),
        ("Basic", "no credentials matched"),
    ],
)
def test_basic_rejects(authorization: str, reason: str) -> None:
    verifier = make("basic", "Aladdin:open sesame")
    rejects(verifier, headers(Authorization=authorization), BODY, reason)


def test_basic_needs_user_and_password_in_each_secret() -> None:
    with pytest.raises(ValueError, match="user:password"):
        make("basic", "Aladdin:open sesame", "just-a-password")
