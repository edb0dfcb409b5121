"""WooCommerce, checked against the algorithm its documentation specifies.

https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: base64 HMAC-SHA256 of the raw
body in ``X-WC-Webhook-Signature``.
"""

from __future__ import annotations

import base64
import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "woocommerce-webhook-secret-0123456789"
BODY = b'{"id": 727, "status": "processing", "total": "29.35"}'


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha256")
    return headers(
        X_WC_Webhook_Signature="" + base64.b64encode(mac).decode(),
        X_WC_Webhook_Topic="order.created",
        X_WC_Webhook_Delivery_ID="e2f3c4",
    )


def test_woocommerce_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("woocommerce", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("woocommerce", signed(), BODY) == ("order.created", "e2f3c4")


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_woocommerce_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("woocommerce", SECRET), signed(secret=secret), body, reason)


def test_woocommerce_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["X-WC-Webhook-Signature"]
    hdrs["X-WC-Webhook-Signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("woocommerce", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["X-WC-Webhook-Signature"]
    rejects(make("woocommerce", SECRET), hdrs, BODY, "missing header")
