"""Coinbase Commerce, checked against its official library
(``coinbase_commerce.webhook.WebhookSignature.verify_sig_header``).

https://docs.cdp.coinbase.com/commerce/docs/webhooks-security
"""

from __future__ import annotations

import hmac

import pytest
from coinbase_commerce.error import SignatureVerificationError
from coinbase_commerce.webhook import Webhook, WebhookSignature

from .conftest import extracted, headers, make, rejects

SECRET = "cc-shared-secret"
BODY = (
    b'{"id": 1, "scheduled_for": "2017-01-31T20:50:02Z", "event": {"id":'
    b' "24934862-d980-46cb-9402-43c81b0cdba6", "type": "charge:created",'
    b' "api_version": "2018-03-22", "data": {"code": "66BEOV2A"}}}'
)


def signature(body: bytes = BODY, secret: str = SECRET) -> str:
    return hmac.digest(secret.encode(), body, "sha256").hex()


def library_accepts(body: bytes, sig: str) -> bool:
    try:
        return bool(WebhookSignature.verify_sig_header(body.decode(), sig, SECRET))
    except SignatureVerificationError:
        return False


def test_coinbase_accepts_what_its_library_accepts(now: int) -> None:
    hdrs = headers(X_CC_Webhook_Signature=signature())
    assert library_accepts(BODY, signature())
    assert Webhook.construct_event(BODY.decode(), signature(), SECRET).type == "charge:created"
    make("coinbase", "old", SECRET).verify(hdrs, BODY, now)
    assert extracted("coinbase", hdrs, BODY) == (
        "charge:created",
        "24934862-d980-46cb-9402-43c81b0cdba6",
    )


@pytest.mark.parametrize(
    ("body", "sig"),
    [
        (BODY.replace(b"charge:created", b"charge:confirmed"), signature()),
        (BODY, signature(secret="another")),
        (BODY, "0" * 64),
    ],
    ids=["tampered-body", "wrong-secret", "tampered-signature"],
)
def test_coinbase_rejects_what_its_library_rejects(body: bytes, sig: str) -> None:
    assert not library_accepts(body, sig)
    hdrs = headers(X_CC_Webhook_Signature=sig)
    rejects(make("coinbase", SECRET), hdrs, body, "no signature matched")
