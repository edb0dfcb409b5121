"""Clerk and Resend, which sign with Svix: checked against the official ``svix`` library.

https://clerk.com/docs/webhooks/verify-webhooks
https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import NamedTuple

import pytest
import svix.webhooks
from multidict import CIMultiDict

from .conftest import TOLERANCE, extracted, make, rejects

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE_ID = "msg_2LJcnzXoiz6yzsfKEPb8rW1TgmL"


class Sample(NamedTuple):
    scheme: str
    body: bytes
    event_type: str

    @property
    def other_secret(self) -> str:
        return "whsec_" + base64.b64encode(f"another {self.scheme} key".encode()).decode()


SAMPLES = [
    Sample(
        "clerk",
        b'{"data": {"id": "user_29w83sxmDNGwOuEthce5gg56FcC"}, "object": "event",'
        b' "type": "user.created"}',
        "user.created",
    ),
    Sample(
        "resend",
        b'{"type": "email.delivered", "created_at": "2024-02-22T23:41:12.126Z",'
        b' "data": {"email_id": "56761188-7520-42d8-8898-ff6fc54ce618"}}',
        "email.delivered",
    ),
]
by_scheme = pytest.mark.parametrize("sample", SAMPLES, ids=[s.scheme for s in SAMPLES])


def signed(body: bytes, timestamp: int, secret: str = SECRET) -> CIMultiDict[str]:
    when = datetime.fromtimestamp(timestamp, UTC)
    signature = svix.webhooks.Webhook(secret).sign(MESSAGE_ID, when, body.decode())
    return CIMultiDict(
        {"svix-id": MESSAGE_ID, "svix-timestamp": str(timestamp), "svix-signature": signature}
    )


@by_scheme
def test_accepts_what_svix_accepts(sample: Sample, now: int) -> None:
    hdrs = signed(sample.body, now)
    svix.webhooks.Webhook(SECRET).verify(sample.body, dict(hdrs))
    make(sample.scheme, sample.other_secret, SECRET).verify(hdrs, sample.body, now)
    assert extracted(sample.scheme, hdrs, sample.body) == (sample.event_type, MESSAGE_ID)


@by_scheme
@pytest.mark.parametrize(
    ("tampered", "wrong_secret", "skew", "reason"),
    [
        (True, False, 0, "no signature matched"),
        (False, True, 0, "no signature matched"),
        (False, False, TOLERANCE + 1, "stale timestamp"),
        (False, False, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["tampered", "wrong-secret", "replayed-late", "future"],
)
def test_rejects(
    sample: Sample, tampered: bool, wrong_secret: bool, skew: int, reason: str, now: int
) -> None:
    body = sample.body + b" " if tampered else sample.body
    secret = sample.other_secret if wrong_secret else SECRET
    rejects(make(sample.scheme, SECRET), signed(sample.body, now, secret), body, reason, now + skew)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(SECRET).verify(body, dict(signed(sample.body, now - skew, secret)))


@by_scheme
def test_signature_covers_the_timestamp(sample: Sample, now: int) -> None:
    hdrs = signed(sample.body, now)
    hdrs["svix-timestamp"] = str(now + 1)
    rejects(make(sample.scheme, SECRET), hdrs, sample.body, "no signature matched", now)


@by_scheme
def test_refuses_a_secret_that_is_not_whsec(sample: Sample) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        make(sample.scheme, "plain-secret")
