"""Segment (Webhooks destination): ``X-Signature: <hex HMAC-SHA1 of the body>``, keyed
with the destination's shared secret."""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "segment",
    common.HmacShape(header="X-Signature", algorithm="sha1"),
    # A track call's event name, else the call's type (identify, page, ...).
    event_type=("json:event", "json:type"),
    event_id=("json:messageId",),
    docs="https://segment.com/docs/connections/destinations/catalog/webhooks/",
)
