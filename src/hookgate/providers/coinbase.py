"""Coinbase Commerce: ``X-CC-Webhook-Signature: <hex HMAC-SHA256 of the body>``, keyed
with the webhook's shared secret."""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "coinbase",
    common.HmacShape(header="X-CC-Webhook-Signature"),
    event_type=("json:event.type",),
    event_id=("json:event.id",),
    docs="https://docs.cdp.coinbase.com/commerce/docs/webhooks-security",
)
