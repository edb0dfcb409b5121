"""Calendly, checked against Stripe's official library: Calendly's
``Calendly-Webhook-Signature`` is Stripe's ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``
format under another header, so ``stripe.WebhookSignature`` signs it exactly.

https://developer.calendly.com/api-docs/4c305798a61d3-webhook-signatures
"""

from __future__ import annotations

import pytest
import stripe
from multidict import CIMultiDict

from .conftest import TOLERANCE, extracted, headers, make, rejects

SECRET = "calendly-webhook-signing-key"
BODY = (
    b'{"created_at": "2020-11-23T17:51:19.000000Z", "created_by":'
    b' "https://api.calendly.com/users/AAAAAAAAAAAAAAAA", "event": "invitee.created",'
    b' "payload": {"uri": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2"}}'
)


def signed(timestamp: int, secret: str = SECRET) -> CIMultiDict[str]:
    value: str = stripe.WebhookSignature.generate_signature_header(
        BODY.decode(), secret, timestamp=timestamp
    )
    return headers(Calendly_Webhook_Signature=value)


def test_calendly_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("calendly", "old-key", SECRET).verify(signed(now), BODY, now)
    # No event id: the invitee URI is shared by invitee.created and invitee.canceled.
    assert extracted("calendly", signed(now), BODY) == ("invitee.created", None)


@pytest.mark.parametrize(
    ("body", "secret", "skew", "reason"),
    [
        (BODY.replace(b"created", b"canceled"), SECRET, 0, "no signature matched"),
        (BODY, "another-key", 0, "no signature matched"),
        (BODY, SECRET, TOLERANCE + 1, "stale timestamp"),
        (BODY, SECRET, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["tampered", "wrong-secret", "replayed-late", "future"],
)
def test_calendly_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    rejects(make("calendly", SECRET), signed(now, secret), body, reason, now + skew)


def test_calendly_signs_the_timestamp(now: int) -> None:
    hdrs = signed(now)
    hdrs["Calendly-Webhook-Signature"] = hdrs["Calendly-Webhook-Signature"].replace(
        f"t={now}", f"t={now + 1}"
    )
    rejects(make("calendly", SECRET), hdrs, BODY, "no signature matched", now)


def test_calendly_reads_its_own_header_not_stripes(now: int) -> None:
    hdrs = headers(Stripe_Signature=signed(now)["Calendly-Webhook-Signature"])
    rejects(make("calendly", SECRET), hdrs, BODY, "missing header", now)
