"""Postmark: **no signature**. Postmark authenticates its webhooks only by HTTP Basic
credentials written into the webhook URL (``https://user:password@host/path``) and
by the addresses it sends from, so this is scheme ``basic`` (each secret
``"user:password"``) with Postmark's event fields and published addresses.

Neither protects the body: serve the source over HTTPS only, and add the addresses
to ``allow_ips`` as well.
"""

from __future__ import annotations

from hookgate.providers import basic, common

PROVIDER = common.Provider(
    name="postmark",
    # Delivery, Bounce, SpamComplaint, Open, Click, SubscriptionChange.
    event_type=("json:RecordType",),
    # MessageID names the e-mail, not the event (one message has many): no dedup.
    event_id=(),
    build=lambda settings: basic.PROVIDER.build(settings),
    signer=basic.PROVIDER.signer,
    ip_ranges=("3.134.147.250/32", "50.31.156.6/32", "50.31.156.77/32", "18.217.206.57/32"),
    docs="https://postmarkapp.com/support/article/800-ips-for-firewalls",
)
