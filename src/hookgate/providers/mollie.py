"""Mollie's next-gen webhooks: ``X-Mollie-Signature: sha256=<hex HMAC-SHA256 of the
body>``, keyed with the webhook's signing secret.

Classic Mollie webhooks (the ``webhookUrl`` of a payment) are **not signed**: their
form body is only ``id=tr_...``, and nothing in them can be verified. Use scheme
``none`` for those (with basic credentials in the URL, or ``allow_ips``): the
receiver must fetch the object from Mollie's API with its API key, which is the
real check, and a forged id only makes it look up a payment that did not change.
"""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "mollie",
    common.HmacShape(header="X-Mollie-Signature", prefix="sha256="),
    event_type=("json:type",),
    event_id=("json:id",),
    docs="https://docs.mollie.com/reference/webhooks-best-practices",
)
