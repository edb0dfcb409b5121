"""Forgejo: ``X-Forgejo-Signature: <hex HMAC-SHA256 of the body>``, keyed with the
webhook's secret (Forgejo also sends Gitea's headers; its own are read here)."""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "forgejo",
    common.HmacShape(header="X-Forgejo-Signature"),
    event_type=("header:X-Forgejo-Event",),
    event_id=("header:X-Forgejo-Delivery",),
    docs="https://forgejo.org/docs/latest/user/webhooks/",
)
