"""Bitbucket (Cloud, and Data Center 8+): ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of
the body>``, keyed with the webhook's secret.

Atlassian publishes Bitbucket's outbound addresses as a feed that changes
(ip-ranges.atlassian.com); they are not copied here, where they would go stale.
"""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "bitbucket",
    common.HmacShape(header="X-Hub-Signature", prefix="sha256="),
    event_type=("header:X-Event-Key",),
    # Cloud sends X-Request-UUID, Data Center X-Request-Id: one per delivery.
    event_id=("header:X-Request-UUID", "header:X-Request-Id"),
    docs="https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/",
)
