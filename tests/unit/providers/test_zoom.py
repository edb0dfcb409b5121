"""Zoom: the documented x-zm-signature and endpoint.url_validation
(https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events and
#validate-your-webhook-endpoint)."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, make, settings
from .handshakes import greet

SECRET = "zoom-secret-token"
BODY = (
    b'{"event":"meeting.started","event_ts":1626230691572,"payload":{"account_id":"AAAAAABBBB",'
    b'"object":{"id":"1234567890","uuid":"4444AAAiAAAAAiAiAiiAii=="}}}'
)
VALIDATION = (
    b'{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,'
    b'"event":"endpoint.url_validation"}'
)


def zoom_signed(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    """``v0=`` + hex HMAC-SHA256 of ``v0:<timestamp>:<body>`` with the secret token."""
    message = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return {"x-zm-signature": signature, "x-zm-request-timestamp": str(timestamp)}


def test_zoom_accepts_the_signature_and_extracts_the_event(now: int) -> None:
    hdrs = headers(**{k.replace("-", "_"): v for k, v in zoom_signed(BODY, now).items()})
    make("zoom", SECRET).verify(hdrs, BODY, now)
    assert extracted("zoom", hdrs, BODY) == ("meeting.started", None)


@pytest.mark.parametrize(
    ("body", "skew", "secret", "reason"),
    [
        (BODY.replace(b"started", b"ended"), 0, SECRET, "no signature matched"),
        (BODY, 0, "other", "no signature matched"),
        (BODY, 301, SECRET, "stale timestamp"),
    ],
    ids=["body", "secret", "replay"],
)
def test_zoom_refuses_tampering_and_replays(
    body: bytes, skew: int, secret: str, reason: str, now: int
) -> None:
    hdrs = headers(**{k.replace("-", "_"): v for k, v in zoom_signed(BODY, now, secret).items()})
    with pytest.raises(VerificationFailed, match=reason):
        make("zoom", SECRET).verify(hdrs, body, now + skew)


def test_url_validation_answers_the_plain_and_encrypted_token() -> None:
    answer = greet("zoom", settings("zoom", SECRET), method="POST", body=VALIDATION)
    assert answer is not None and answer.status == 200
    expected = hmac.new(SECRET.encode(), b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
    assert orjson.loads(answer.body) == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": expected,
    }
    (greeting,) = providers.get("zoom").all_greetings()
    assert greeting.signed  # answered only once its signature checked out


@pytest.mark.parametrize(
    "body",
    [
        b'{"event":"endpoint.url_validation","payload":{}}',
        b'{"event":"endpoint.url_validation","payload":{"plainToken":"<b>x</b>"}}',
    ],
)
def test_a_malformed_url_validation_is_refused(body: bytes) -> None:
    with pytest.raises(providers.HandshakeRefused) as refused:
        greet("zoom", settings("zoom", SECRET), method="POST", body=body)
    assert refused.value.status == 400


def test_an_ordinary_event_is_no_handshake() -> None:
    assert greet("zoom", settings("zoom", SECRET), method="POST", body=BODY) is None
