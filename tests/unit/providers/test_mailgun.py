"""Mailgun: the signature fields of the body
(https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks)."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse

import orjson
import pytest

from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, make

KEY = "key-mailgun-signing"
# The token and timestamp of the documentation's example (its signature is a placeholder,
# so the signature here is computed as the page says: hex HMAC-SHA256 of timestamp+token).
TOKEN = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
TIMESTAMP = 1770920772


def signature(timestamp: int = TIMESTAMP, token: str = TOKEN, key: str = KEY) -> str:
    return hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


def body(**changes: object) -> bytes:
    signed = {"token": TOKEN, "timestamp": str(TIMESTAMP), "signature": signature()}
    return orjson.dumps(
        {
            "signature": {**signed, **changes},
            "event-data": {"event": "delivered", "id": "CPgfbmQMTCKtHW6uIWtuVe"},
        }
    )


def test_mailgun_accepts_the_signature_and_extracts_event_and_id() -> None:
    make("mailgun", KEY).verify(headers(), body(), TIMESTAMP)
    assert extracted("mailgun", headers(), body()) == ("delivered", "CPgfbmQMTCKtHW6uIWtuVe")


def test_mailgun_accepts_a_signed_form_body() -> None:
    form = urllib.parse.urlencode(
        {"timestamp": TIMESTAMP, "token": TOKEN, "signature": signature(), "recipient": "a@b.c"}
    ).encode()
    make("mailgun", KEY).verify(headers(), form, TIMESTAMP)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"token": TOKEN[:-1] + "4"}, "no signature matched"),
        ({"timestamp": str(TIMESTAMP + 1)}, "no signature matched"),
        ({"signature": signature(key="other")}, "no signature matched"),
        ({"signature": None}, "missing signature fields"),
        ({"timestamp": TIMESTAMP}, "missing signature fields"),
    ],
)
def test_mailgun_refuses_forged_fields(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(VerificationFailed, match=reason):
        make("mailgun", KEY).verify(headers(), body(**changes), TIMESTAMP)


def test_mailgun_refuses_a_replay_older_than_the_tolerance() -> None:
    with pytest.raises(VerificationFailed, match="stale timestamp"):
        make("mailgun", KEY).verify(headers(), body(), TIMESTAMP + 301)
