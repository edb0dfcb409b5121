"""Jira (Atlassian Cloud webhooks with a secret): ``X-Hub-Signature: sha256=<hex
HMAC-SHA256 of the body>``.

Webhooks registered without a secret (and those of Connect apps, which send a JWT)
are not signed this way.
"""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "jira",
    common.HmacShape(header="X-Hub-Signature", prefix="sha256="),
    event_type=("json:webhookEvent",),
    # The same on Jira's retries of a delivery.
    event_id=("header:X-Atlassian-Webhook-Identifier",),
    docs="https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks",
)
