"""Sentry (integration platform): ``Sentry-Hook-Signature: <hex HMAC-SHA256 of the
body>``, keyed with the integration's client secret.

Sentry's ``Sentry-Hook-Timestamp`` is not covered by the signature, so it is not
checked: replays are caught by dedup on ``Request-ID`` instead.
"""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "sentry",
    common.HmacShape(header="Sentry-Hook-Signature"),
    event_type=("header:Sentry-Hook-Resource",),
    event_id=("header:Request-ID",),
    docs="https://docs.sentry.io/organization/integrations/integration-platform/webhooks/",
)
