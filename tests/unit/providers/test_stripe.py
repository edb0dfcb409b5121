"""Stripe, checked against its official library."""

from __future__ import annotations

import pytest
import stripe
from multidict import CIMultiDict

from .conftest import BODY, TOLERANCE, at, headers, make, rejects

STRIPE_SECRET = "whsec_test_secret_0123456789"


def stripe_header(timestamp: int, secret: str = STRIPE_SECRET, body: bytes = BODY) -> str:
    header: str = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp
    )
    return header


def test_stripe_accepts_the_official_library_and_it_agrees(now: int) -> None:
    header = stripe_header(now)
    make("stripe", STRIPE_SECRET).verify(headers(Stripe_Signature=header), BODY, now)
    stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, TOLERANCE)
    stripe.Webhook.construct_event(BODY, header, STRIPE_SECRET, TOLERANCE)


def test_stripe_accepts_a_rotated_secret(now: int) -> None:
    verifier = make("stripe", "whsec_old", STRIPE_SECRET)
    verifier.verify(headers(Stripe_Signature=stripe_header(now)), BODY, now)


def test_stripe_accepts_any_v1_and_ignores_v0(now: int) -> None:
    # During a secret roll Stripe sends one v1 per active secret.
    old = stripe_header(now, "whsec_old").split("v1=")[1]
    new = stripe_header(now).split("v1=")[1]
    header = f"t={now},v1={old},v0=not-hex-at-all,v1={new},x=1"
    make("stripe", STRIPE_SECRET).verify(headers(Stripe_Signature=header), BODY, now)
    stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, TOLERANCE)


@pytest.mark.parametrize(
    ("body", "secret", "skew", "reason"),
    [
        (BODY + b"\n", STRIPE_SECRET, 0, "no signature matched"),
        (BODY, "whsec_wrong", 0, "no signature matched"),
        (BODY, STRIPE_SECRET, TOLERANCE + 1, "stale timestamp"),
        (BODY, STRIPE_SECRET, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["tampered", "wrong-secret", "stale", "future"],
)
def test_stripe_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    hdrs = headers(Stripe_Signature=stripe_header(now))
    rejects(make("stripe", secret), hdrs, body, reason, now + skew)


def test_stripe_rejects_future_timestamps_that_stripes_library_lets_through(now: int) -> None:
    header = stripe_header(now + 3600)
    # Stripe's own check is one-sided (only "too old"); ours bounds both ways.
    stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, TOLERANCE)
    hdrs = headers(Stripe_Signature=header)
    rejects(make("stripe", STRIPE_SECRET), hdrs, BODY, "future timestamp", now)


def test_stripe_timestamp_is_signed(now: int) -> None:
    header = stripe_header(now).replace(f"t={now}", f"t={now + 1}")
    rejects(
        make("stripe", STRIPE_SECRET),
        headers(Stripe_Signature=header),
        BODY,
        "no signature matched",
        now,
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("v1=00", "malformed header"),
        ("t={now},t={now},v1=00", "malformed header"),
        ("t={now},v1", "malformed header"),
        ("t={now}", "no signature matched"),
        ("t={now},v0=abcd", "no signature matched"),
        (f"t=abc,v1={'0' * 64}", "malformed timestamp"),
        ("t={now},v1=xyz", "malformed signature"),
        ("t={now},v1=abc", "malformed signature"),
        ("t={now}, v1=" + "0" * 64, "no signature matched"),
        ("", "malformed header"),
        ("t=é", "malformed header"),
    ],
)
def test_stripe_rejects_malformed_headers(header: str, reason: str, now: int) -> None:
    hdrs = headers(Stripe_Signature=at(header, now))
    rejects(make("stripe", STRIPE_SECRET), hdrs, BODY, reason, now)


def test_stripe_rejects_a_missing_header() -> None:
    rejects(make("stripe", STRIPE_SECRET), CIMultiDict(), BODY, "missing header")
