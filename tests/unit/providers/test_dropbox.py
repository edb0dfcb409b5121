"""Dropbox: the documented X-Dropbox-Signature and the GET challenge
(https://www.dropbox.com/developers/reference/webhooks)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, make, settings
from .handshakes import greet

SECRET = "dropbox-app-secret"
BODY = (
    b'{"list_folder": {"accounts": ["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]}, '
    b'"delta": {"users": [12345678]}}'
)


def test_dropbox_accepts_the_hex_hmac_of_the_body() -> None:
    signature = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    hdrs = headers(X_Dropbox_Signature=signature)
    make("dropbox", SECRET).verify(hdrs, BODY, 0)
    assert extracted("dropbox", hdrs, BODY) == (None, None)
    with pytest.raises(VerificationFailed, match="no signature matched"):
        make("dropbox", SECRET).verify(hdrs, BODY.replace(b"123", b"124"), 0)


def test_the_challenge_is_echoed_as_plain_text_without_sniffing() -> None:
    answer = greet("dropbox", settings("dropbox", SECRET), query={"challenge": "abc123"})
    assert answer is not None
    assert (answer.status, answer.body, answer.content_type) == (200, b"abc123", "text/plain")
    assert ("X-Content-Type-Options", "nosniff") in answer.headers


@pytest.mark.parametrize("challenge", ["", "<script>alert(1)</script>", "x" * 257])
def test_a_challenge_that_is_not_a_short_token_is_refused(challenge: str) -> None:
    with pytest.raises(providers.HandshakeRefused) as refused:
        greet("dropbox", settings("dropbox", SECRET), query={"challenge": challenge})
    assert (refused.value.status, refused.value.code) == (400, "invalid_handshake")
