"""Typeform: ``Typeform-Signature: sha256=<base64 HMAC-SHA256 of the body>``, keyed with
the secret set on the webhook."""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "typeform",
    common.HmacShape(header="Typeform-Signature", encoding="base64", prefix="sha256="),
    event_type=("json:event_type",),
    event_id=("json:event_id",),
    docs="https://www.typeform.com/developers/webhooks/secure-your-webhooks/",
)
