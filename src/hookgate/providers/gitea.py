"""Gitea: ``X-Gitea-Signature: <hex HMAC-SHA256 of the body>``, keyed with the
webhook's secret."""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "gitea",
    common.HmacShape(header="X-Gitea-Signature"),
    event_type=("header:X-Gitea-Event",),
    event_id=("header:X-Gitea-Delivery",),
    docs="https://docs.gitea.com/usage/webhooks",
)
