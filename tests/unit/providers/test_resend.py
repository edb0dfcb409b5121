"""Resend, which signs with Svix: checked against the official ``svix`` library.

https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import svix.webhooks
from multidict import CIMultiDict

from .conftest import TOLERANCE, extracted, make, rejects

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + base64.b64encode(b"another resend key").decode()
BODY = (
    b'{"type": "email.delivered", "created_at": "2024-02-22T23:41:12.126Z",'
    b' "data": {"email_id": "56761188-7520-42d8-8898-ff6fc54ce618"}}'
)
MESSAGE_ID = "msg_2LJcnzXoiz6yzsfKEPb8rW1TgmL"


def signed(timestamp: int, secret: str = SECRET) -> CIMultiDict[str]:
    when = datetime.fromtimestamp(timestamp, UTC)
    signature = svix.webhooks.Webhook(secret).sign(MESSAGE_ID, when, BODY.decode())
    return CIMultiDict(
        {"svix-id": MESSAGE_ID, "svix-timestamp": str(timestamp), "svix-signature": signature}
    )


def test_resend_accepts_what_svix_accepts(now: int) -> None:
    hdrs = signed(now)
    svix.webhooks.Webhook(SECRET).verify(BODY, dict(hdrs))
    make("resend", OTHER_SECRET, SECRET).verify(hdrs, BODY, now)
    assert extracted("resend", hdrs, BODY) == ("email.delivered", MESSAGE_ID)


@pytest.mark.parametrize(
    ("body", "secret", "skew", "reason"),
    [
        (BODY + b" ", SECRET, 0, "no signature matched"),
        (BODY, OTHER_SECRET, 0, "no signature matched"),
        (BODY, SECRET, TOLERANCE + 1, "stale timestamp"),
        (BODY, SECRET, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["tampered", "wrong-secret", "replayed-late", "future"],
)
def test_resend_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    rejects(make("resend", SECRET), signed(now, secret), body, reason, now + skew)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(SECRET).verify(body, dict(signed(now - skew, secret)))


def test_resend_signature_covers_the_timestamp(now: int) -> None:
    hdrs = signed(now)
    hdrs["svix-timestamp"] = str(now + 1)
    rejects(make("resend", SECRET), hdrs, BODY, "no signature matched", now)


def test_resend_refuses_a_secret_that_is_not_whsec() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        make("resend", "plain-secret")
