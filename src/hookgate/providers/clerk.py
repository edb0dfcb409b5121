"""Clerk: signs with Svix (``svix-id``, ``svix-timestamp``, ``svix-signature``), the
``standard`` scheme's check with a ``whsec_`` signing secret; only the event fields
are Clerk's."""

from __future__ import annotations

from hookgate.providers import common, standard

PROVIDER = common.Provider(
    name="clerk",
    event_type=("json:type",),
    event_id=("header:svix-id", "header:webhook-id"),
    build=standard.PROVIDER.build,
    signer=standard.PROVIDER.signer,
    docs="https://clerk.com/docs/webhooks/verify-webhooks",
)
