"""Outbound signatures, checked against the official Standard Webhooks library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookgate.outbound import signing

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"type":"payment_intent.succeeded","id":"evt_1","amount":4200}'


def standard_headers(secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    timestamp = int(time.time())
    signer = signing.Signer("standard", secret)
    headers = signer.headers(msg_id, timestamp, body)
    assert set(headers) == {"webhook-signature"}
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), **headers}


@pytest.mark.parametrize(
    "body",
    [BODY, b"", b"not json at all \x00\x7f", "caf\u00e9 \u2713".encode(), b"{}" * 5000],
)
def test_standard_signature_verified_by_official_library(body: bytes) -> None:
    headers = standard_headers(SECRET, "msg_00000000000000ff", body)
    assert headers["webhook-signature"].startswith("v1,")
    Webhook(SECRET).verify(body, headers, json_parse=False)


def test_standard_signature_with_random_secret() -> None:
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    headers = standard_headers(secret, "msg_0123456789abcdef", BODY)
    assert Webhook(secret).verify(BODY, headers) == {
        "type": "payment_intent.succeeded",
        "id": "evt_1",
        "amount": 4200,
    }


@pytest.mark.parametrize(
    "tamper",
    ["body", "id", "timestamp", "secret"],
)
def test_standard_signature_rejected_when_anything_changes(tamper: str) -> None:
    headers = standard_headers(SECRET, "msg_1", BODY)
    body = BODY
    secret = SECRET
    if tamper == "body":
        body = BODY.replace(b"4200", b"4201")
    elif tamper == "id":
        headers["webhook-id"] = "msg_2"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    else:
        secret = "whsec_" + base64.b64encode(b"another key of some length").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_standard_signature_matches_spec_by_hand() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    headers = signing.Signer("standard", SECRET).headers("msg_1", 1_700_000_000, BODY)
    assert headers == {"webhook-signature": "v1," + base64.b64encode(expected).decode()}


def test_standard_key() -> None:
    assert signing.standard_key(SECRET) == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


@pytest.mark.parametrize(
    "secret", ["s3cret", "whsec_looks_standard_but_is_used_as_is", "\u00e9t\u00e9"]
)
def test_hmac_sha256_is_hex_of_body(secret: str) -> None:
    headers = signing.Signer("hmac-sha256", secret).headers("msg_1", 1_700_000_000, BODY)
    expected = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers == {"X-Webhook-Signature": expected}
    assert len(expected) == 64


def test_hmac_sha256_ignores_id_and_timestamp() -> None:
    signer = signing.Signer("hmac-sha256", "k")
    assert signer.headers("a", 1, BODY) == signer.headers("b", 2, BODY)


def test_none_signs_nothing() -> None:
    assert signing.Signer("none", None).headers("msg_1", 1, BODY) == {}
    assert signing.Signer("none", "ignored").headers("msg_1", 1, BODY) == {}
