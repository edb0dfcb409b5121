"""Shopify: ``X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>``."""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "shopify",
    common.HmacShape(header="X-Shopify-Hmac-Sha256", encoding="base64"),
    event_type=("header:X-Shopify-Topic",),
    event_id=("header:X-Shopify-Webhook-Id",),
)
