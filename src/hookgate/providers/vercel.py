"""Vercel: ``x-vercel-signature: <hex HMAC-SHA1 of the body>``, keyed with the
webhook's secret (or the integration's client secret)."""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "vercel",
    common.HmacShape(header="x-vercel-signature", algorithm="sha1"),
    event_type=("json:type",),
    event_id=("json:id",),
    docs="https://vercel.com/docs/webhooks/webhooks-api#securing-webhooks",
)
