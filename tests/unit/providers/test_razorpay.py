"""Razorpay, checked against its official SDK (``razorpay.Utility.verify_webhook_signature``).

https://razorpay.com/docs/webhooks/validate-test/
"""

from __future__ import annotations

import hmac

import pytest
import razorpay
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "razorpay-webhook-secret"
EVENT_ID = "Ejbi5Y1wY7Zq8e"
BODY = (
    b'{"entity": "event", "account_id": "acc_BFQ7uQEaa7j2z7", "event": "payment.captured",'
    b' "payload": {"payment": {"entity": {"id": "pay_DESlfW9H8K9uqM", "amount": 100}}}}'
)


def signature(body: bytes = BODY, secret: str = SECRET) -> str:
    return hmac.digest(secret.encode(), body, "sha256").hex()


def razorpay_accepts(body: bytes, sig: str) -> bool:
    utility = razorpay.Client(auth=("rzp_test_key", "rzp_test_secret")).utility
    try:
        return bool(utility.verify_webhook_signature(body.decode(), sig, SECRET))
    except razorpay.errors.SignatureVerificationError:
        return False


def signed(sig: str) -> CIMultiDict[str]:
    return headers(X_Razorpay_Signature=sig, X_Razorpay_Event_Id=EVENT_ID)


def test_razorpay_accepts_what_its_sdk_accepts(now: int) -> None:
    assert razorpay_accepts(BODY, signature())
    make("razorpay", "old", SECRET).verify(signed(signature()), BODY, now)
    assert extracted("razorpay", signed(signature()), BODY) == ("payment.captured", EVENT_ID)


@pytest.mark.parametrize(
    ("body", "sig"),
    [
        (BODY.replace(b"100", b"900"), signature()),
        (BODY, signature(secret="another")),
        (BODY, signature()[:-1] + ("0" if signature()[-1] != "0" else "1")),
    ],
    ids=["tampered-body", "wrong-secret", "tampered-signature"],
)
def test_razorpay_rejects_what_its_sdk_rejects(body: bytes, sig: str) -> None:
    assert not razorpay_accepts(body, sig)
    rejects(make("razorpay", SECRET), signed(sig), body, "no signature matched")
