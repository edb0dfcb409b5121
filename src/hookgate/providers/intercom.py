"""Intercom: ``X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>`` keyed with the app's
client secret."""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "intercom",
    common.HmacShape(header="X-Hub-Signature", algorithm="sha1", prefix="sha1="),
    event_type=("json:topic",),
    event_id=("json:id",),
    docs="https://developers.intercom.com/docs/references/webhooks/webhook-models#signed-notifications",
)
