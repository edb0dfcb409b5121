"""Calendly: ``Calendly-Webhook-Signature: t=<unix>,v1=<hex>``, an HMAC-SHA256 of
``"<t>.<body>"`` keyed with the subscription's signing key: Stripe's scheme under
another header name.

Calendly's payloads carry no event id (the invitee URI is the same for
``invitee.created`` and ``invitee.canceled``), so there is no dedup by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hookgate.providers import common, stripe

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_HEADER = "Calendly-Webhook-Signature"


def _verifier(settings: Settings) -> common.Verifier:
    return stripe.StripeStyleVerifier(settings.secrets, settings.tolerance, _HEADER)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    return stripe.stripe_style_headers(_HEADER, common.first_secret(settings), body, now)


PROVIDER = common.Provider(
    name="calendly",
    event_type=("json:event",),
    event_id=(),
    build=_verifier,
    signer=_sign,
    docs="https://developer.calendly.com/api-docs/4c305798a61d3-webhook-signatures",
)
