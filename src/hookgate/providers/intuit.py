"""Intuit (QuickBooks Online): ``intuit-signature: <base64 HMAC-SHA256 of the body>``,
keyed with the app's webhook *verifier token*.

One request may carry several changes; the defaults name the first: the entity of a
``eventNotifications`` payload, or the type and id of the first CloudEvent of the
newer format (a JSON array).
"""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "intuit",
    common.HmacShape(header="intuit-signature", encoding="base64"),
    event_type=("json:0.type", "json:eventNotifications.0.dataChangeEvent.entities.0.name"),
    event_id=("json:0.id",),
    docs="https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks/managing-webhooks-notifications",
)
