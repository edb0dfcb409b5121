"""X (Twitter) Account Activity API: the documented signature and CRC
(https://developer.x.com/en/docs/x-api/enterprise/account-activity-api/guides/securing-webhooks)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, make, settings
from .handshakes import greet

# The example of X's CRC documentation (the consumer secret and crc_token of its sample
# code); the response token is what that sample code computes.
CONSUMER_SECRET = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu"
CRC_TOKEN = "9b4507b3-9040-4669-9ca3-6b94edb50553"
RESPONSE_TOKEN = "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="
BODY = b'{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"1"}]}'


def documented_signature(body: bytes, secret: str = CONSUMER_SECRET) -> str:
    """``sha256=`` + base64 HMAC-SHA256 of the body with the consumer secret."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def test_the_crc_answer_is_the_documented_response_token() -> None:
    answer = greet("twitter", settings("twitter", CONSUMER_SECRET), query={"crc_token": CRC_TOKEN})
    assert answer is not None and answer.status == 200
    assert answer.content_type == "application/json"
    assert orjson.loads(answer.body) == {"response_token": RESPONSE_TOKEN}
    assert documented_signature(CRC_TOKEN.encode()) == RESPONSE_TOKEN


@pytest.mark.parametrize(
    "token", ['{"tweet_create_events":[]}', "a" * 257, "with space", ""], ids=repr
)
def test_the_crc_is_refused_for_a_token_that_could_be_a_body(token: str) -> None:
    with pytest.raises(providers.HandshakeRefused) as refused:
        greet("twitter", settings("twitter", CONSUMER_SECRET), query={"crc_token": token})
    assert (refused.value.status, refused.value.code) == (400, "invalid_handshake")


def test_a_get_without_crc_token_is_no_handshake() -> None:
    assert greet("twitter", settings("twitter", CONSUMER_SECRET), query={"x": "1"}) is None


def test_twitter_accepts_the_documented_signature_and_refuses_a_tampered_body() -> None:
    hdrs = headers(X_Twitter_Webhooks_Signature=documented_signature(BODY))
    make("twitter", CONSUMER_SECRET).verify(hdrs, BODY, 0)
    assert extracted("twitter", hdrs, BODY) == (None, None)
    with pytest.raises(VerificationFailed, match="no signature matched"):
        make("twitter", CONSUMER_SECRET).verify(hdrs, BODY.replace(b"2244", b"2245"), 0)
    with pytest.raises(VerificationFailed, match="no signature matched"):
        make("twitter", "another secret").verify(hdrs, BODY, 0)
