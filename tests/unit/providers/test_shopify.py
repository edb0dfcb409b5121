"""Shopify, checked against a signature computed from its documented recipe."""

from __future__ import annotations

import base64

import pytest

from .conftest import headers, make, rejects

# Shopify documents the recipe (base64 HMAC-SHA256 of the raw body with the app's
# secret) but no fixed example; this one was computed with `openssl dgst -hmac`.
SHOPIFY_SECRET = "hush"
SHOPIFY_BODY = b'{"id":820982911946154508,"email":"jon@doe.ca"}'
SHOPIFY_SIGNATURE = "fp5HwmAHEVGQQwJU1KRpk57Ts2YHF6/TLOCczCtB5bs="


def test_shopify_accepts_a_correct_signature_with_any_secret(now: int) -> None:
    hdrs = headers(X_Shopify_Hmac_Sha256=SHOPIFY_SIGNATURE)
    make("shopify", SHOPIFY_SECRET).verify(hdrs, SHOPIFY_BODY, now)
    make("shopify", "old", SHOPIFY_SECRET).verify(hdrs, SHOPIFY_BODY, now)


@pytest.mark.parametrize(
    ("secret", "body", "signature", "reason"),
    [
        (SHOPIFY_SECRET, SHOPIFY_BODY + b" ", SHOPIFY_SIGNATURE, "no signature matched"),
        ("Hush", SHOPIFY_BODY, SHOPIFY_SIGNATURE, "no signature matched"),
        (SHOPIFY_SECRET, SHOPIFY_BODY, SHOPIFY_SIGNATURE.rstrip("="), "malformed signature"),
        (SHOPIFY_SECRET, SHOPIFY_BODY, "not*base64", "malformed signature"),
        (
            SHOPIFY_SECRET,
            SHOPIFY_BODY,
            base64.b64decode(SHOPIFY_SIGNATURE).hex(),
            "no signature matched",
        ),
    ],
    ids=["tampered", "wrong-secret", "unpadded", "garbage", "hex-instead"],
)
def test_shopify_rejects(secret: str, body: bytes, signature: str, reason: str) -> None:
    rejects(make("shopify", secret), headers(X_Shopify_Hmac_Sha256=signature), body, reason)
