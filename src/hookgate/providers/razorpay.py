"""Razorpay: ``X-Razorpay-Signature: <hex HMAC-SHA256 of the body>``, keyed with the
webhook secret."""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "razorpay",
    common.HmacShape(header="X-Razorpay-Signature"),
    event_type=("json:event",),
    # The same on Razorpay's retries.
    event_id=("header:X-Razorpay-Event-Id",),
    docs="https://razorpay.com/docs/webhooks/validate-test/",
)
