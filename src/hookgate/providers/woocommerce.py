"""WooCommerce: ``X-WC-Webhook-Signature: <base64 HMAC-SHA256 of the body>``, keyed with
the webhook's secret.

When a webhook is saved as active, WooCommerce first posts an unsigned
``webhook_id=<n>`` ping; it is refused (401) here, which WooCommerce only logs.
"""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "woocommerce",
    common.HmacShape(header="X-WC-Webhook-Signature", encoding="base64"),
    event_type=("header:X-WC-Webhook-Topic",),
    event_id=("header:X-WC-Webhook-Delivery-ID",),
    docs="https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks",
)
