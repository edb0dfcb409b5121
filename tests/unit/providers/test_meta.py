"""Meta (Facebook, Instagram, WhatsApp): the documented X-Hub-Signature-256 and the GET
verification request (https://developers.facebook.com/docs/graph-api/webhooks/getting-started)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, make, settings
from .handshakes import greet

APP_SECRET = "meta-app-secret"
TOKEN = "meta-verify-token"
# The shape of Meta's WhatsApp Cloud API notification example.
BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":'
    b'[{"value":{"messaging_product":"whatsapp"},"field":"messages"}]}]}'
)
# "Verification Requests" of the getting-started page: Meta's example query.
VERIFICATION = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": TOKEN}


def documented_signature(body: bytes, secret: str = APP_SECRET) -> str:
    """``sha256=`` + hex HMAC-SHA256 of the payload with the app secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_meta_accepts_the_signature_and_extracts_the_object_type() -> None:
    hdrs = headers(X_Hub_Signature_256=documented_signature(BODY))
    make("meta", APP_SECRET).verify(hdrs, BODY, 0)
    assert extracted("meta", hdrs, BODY) == ("whatsapp_business_account", None)


def test_meta_refuses_a_tampered_body_or_another_secret() -> None:
    hdrs = headers(X_Hub_Signature_256=documented_signature(BODY))
    with pytest.raises(VerificationFailed, match="no signature matched"):
        make("meta", APP_SECRET).verify(hdrs, BODY.replace(b"messages", b"statuses"), 0)
    with pytest.raises(VerificationFailed, match="no signature matched"):
        make("meta", "other").verify(hdrs, BODY, 0)


def test_the_verification_request_echoes_the_challenge_as_plain_text() -> None:
    answer = greet("meta", settings("meta", APP_SECRET, verify_token=TOKEN), query=VERIFICATION)
    assert answer is not None
    assert (answer.status, answer.body, answer.content_type) == (200, b"1158201444", "text/plain")
    assert ("X-Content-Type-Options", "nosniff") in answer.headers


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({**VERIFICATION, "hub.verify_token": "guess"}, 403, "handshake_refused"),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, 403, "handshake_refused"),
        ({**VERIFICATION, "hub.mode": "unsubscribe"}, 400, "invalid_handshake"),
        ({**VERIFICATION, "hub.challenge": "<script>"}, 400, "invalid_handshake"),
        ({**VERIFICATION, "hub.challenge": ""}, 400, "invalid_handshake"),
    ],
    ids=["wrong token", "no token", "not subscribe", "challenge not a token", "no challenge"],
)
def test_a_forged_or_malformed_verification_is_refused(
    query: dict[str, str], status: int, code: str
) -> None:
    with pytest.raises(providers.HandshakeRefused) as refused:
        greet("meta", settings("meta", APP_SECRET, verify_token=TOKEN), query=query)
    assert (refused.value.status, refused.value.code) == (status, code)


def test_without_a_verify_token_no_verification_is_answered() -> None:
    with pytest.raises(providers.HandshakeRefused) as refused:
        greet("meta", settings("meta", APP_SECRET), query=VERIFICATION)
    assert refused.value.status == 403


def test_a_get_without_hub_mode_is_no_handshake() -> None:
    assert greet("meta", settings("meta", APP_SECRET, verify_token=TOKEN), query={}) is None
