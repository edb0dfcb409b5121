"""Paddle Billing, checked against its official SDK (``paddle_billing.Notifications``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from multidict import CIMultiDict
from paddle_billing.Notifications import Secret, Verifier
from paddle_billing.Notifications.PaddleSignature import PaddleSignature

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, make, settings

SECRET = "pdl_ntfset_01gkpjp8bkh3ynbpzxr1ugfq4d_abcdefghijklmnopqrstuvwxyz123456"
BODY = (
    b'{"event_id":"evt_01h8bzakzx3hm2fmen703n5q45","event_type":"transaction.completed",'
    b'"occurred_at":"2023-08-21T11:57:47.390028Z","notification_id":"ntf_01h8bzam1z32agrxjwhjgqk8w6",'
    b'"data":{"id":"txn_01h8bz8ypny5vgh6hwsdbfdbb7","status":"completed"}}'
)


def paddle_signed(body: bytes, timestamp: int, secret: str = SECRET) -> CIMultiDict[str]:
    """What Paddle sends, its h1 computed by the SDK's own HMAC."""
    digest = PaddleSignature.calculate_hmac(secret, f"{timestamp}:".encode() + body).hexdigest()
    return headers(Paddle_Signature=f"ts={timestamp};h1={digest}")


@dataclass
class SdkRequest:
    """What the SDK's Verifier reads: headers and the raw body."""

    headers: dict[str, str]
    body: bytes


def test_paddle_accepts_what_the_sdk_signs_and_extracts_type_and_id(now: int) -> None:
    hdrs = paddle_signed(BODY, now)
    assert Verifier().verify(SdkRequest(dict(hdrs), BODY), Secret(SECRET))
    make("paddle", SECRET).verify(hdrs, BODY, now)
    assert extracted("paddle", hdrs, BODY) == (
        "transaction.completed",
        "evt_01h8bzakzx3hm2fmen703n5q45",
    )


def test_the_sdk_accepts_what_hookgate_send_signs(now: int) -> None:
    signed = providers.get("paddle").sign(settings("paddle", SECRET), BODY, now)
    assert Verifier().verify(SdkRequest(signed, BODY), Secret(SECRET))


def test_paddle_accepts_any_h1_of_a_rotation(now: int) -> None:
    old = paddle_signed(BODY, now, "old-secret")["Paddle-Signature"]
    new = paddle_signed(BODY, now)["Paddle-Signature"].split(";")[1]
    make("paddle", SECRET).verify(headers(Paddle_Signature=f"{old};{new}"), BODY, now)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("ts={now};h1=" + "0" * 64, "no signature matched"),
        ("h1=" + "0" * 64, "malformed header"),
        ("ts={now};ts={now};h1=00", "malformed header"),
        ("ts={now}", "no signature matched"),
        ("ts=soon;h1=00", "malformed timestamp"),
    ],
)
def test_paddle_refuses_a_malformed_or_forged_header(header: str, reason: str, now: int) -> None:
    hdrs = headers(Paddle_Signature=header.replace("{now}", str(now)))
    with pytest.raises(VerificationFailed, match=reason):
        make("paddle", SECRET).verify(hdrs, BODY, now)


def test_paddle_refuses_a_tampered_body_and_a_replay(now: int) -> None:
    hdrs = paddle_signed(BODY, now)
    with pytest.raises(VerificationFailed, match="no signature matched"):
        make("paddle", SECRET).verify(hdrs, BODY.replace(b"completed", b"paid"), now)
    with pytest.raises(VerificationFailed, match="stale timestamp"):
        make("paddle", SECRET).verify(hdrs, BODY, now + 301)
    assert not Verifier().verify(SdkRequest(dict(hdrs), BODY + b" "), Secret(SECRET))
