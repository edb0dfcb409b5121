"""Clerk, which signs with Svix: checked against the official ``svix`` library.

https://clerk.com/docs/webhooks/verify-webhooks
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import svix.webhooks
from multidict import CIMultiDict

from .conftest import TOLERANCE, extracted, make, rejects

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + base64.b64encode(b"another clerk key").decode()
BODY = (
    b'{"data": {"id": "user_29w83sxmDNGwOuEthce5gg56FcC"}, "object": "event",'
    b' "type": "user.created"}'
)
MESSAGE_ID = "msg_2LJcnzXoiz6yzsfKEPb8rW1TgmL"


def signed(timestamp: int, secret: str = SECRET) -> CIMultiDict[str]:
    when = datetime.fromtimestamp(timestamp, UTC)
    signature = svix.webhooks.Webhook(secret).sign(MESSAGE_ID, when, BODY.decode())
    return CIMultiDict(
        {"svix-id": MESSAGE_ID, "svix-timestamp": str(timestamp), "svix-signature": signature}
    )


def test_clerk_accepts_what_svix_accepts(now: int) -> None:
    hdrs = signed(now)
    svix.webhooks.Webhook(SECRET).verify(BODY, dict(hdrs))
    make("clerk", OTHER_SECRET, SECRET).verify(hdrs, BODY, now)
    assert extracted("clerk", hdrs, BODY) == ("user.created", MESSAGE_ID)


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
def test_clerk_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    rejects(make("clerk", SECRET), signed(now, secret), body, reason, now + skew)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(SECRET).verify(body, dict(signed(now - skew, secret)))


def test_clerk_signature_covers_the_timestamp(now: int) -> None:
    hdrs = signed(now)
    hdrs["svix-timestamp"] = str(now + 1)
    rejects(make("clerk", SECRET), hdrs, BODY, "no signature matched", now)


def test_clerk_refuses_a_secret_that_is_not_whsec() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        make("clerk", "plain-secret")
