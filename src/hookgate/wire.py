"""Names that cross the wire: delivery and destination states, outbound header names.

Each is a public contract (docs/interfaces.md): extend, never rename. Every module
that spells one of them imports it from here, so one edit cannot leave a second
spelling behind.
"""

from __future__ import annotations

from typing import Literal

# -- states -------------------------------------------------------------------------

DeliveryState = Literal["pending", "delivered", "dead"]
DELIVERY_STATES: tuple[DeliveryState, ...] = ("pending", "delivered", "dead")

# As /readyz and the admin API report a destination: "backing_off" after a failed
# attempt while deliveries wait, "open" while its circuit is open.
DestinationState = Literal["ok", "backing_off", "open", "paused"]
DESTINATION_STATES: tuple[DestinationState, ...] = ("ok", "backing_off", "open", "paused")

# -- headers hookgate sets on outbound requests ----------------------------------------

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"  # sign = "standard"
HMAC_SIGNATURE = "X-Webhook-Signature"  # sign = "hmac-sha256"
SOURCE = "Hookgate-Source"
EVENT_TYPE = "Hookgate-Event-Type"
ATTEMPT = "Hookgate-Attempt"
BATCH_SIZE = "Hookgate-Batch-Size"
VIA = "Via"
# A hookgate names itself in Via as "hookgate-<identity>" (RFC 9110 pseudonym).
VIA_PREFIX = "hookgate-"


def via_name(identity: str) -> str:
    """The name a hookgate goes by in Via headers: its database's identity, shortened."""
    return f"{VIA_PREFIX}{identity[:16]}"


# Lower-cased: forward_headers and headers from the config cannot replace these.
OWN_HEADERS = frozenset(
    name.lower()
    for name in (
        WEBHOOK_ID,
        WEBHOOK_TIMESTAMP,
        WEBHOOK_SIGNATURE,
        HMAC_SIGNATURE,
        SOURCE,
        EVENT_TYPE,
        ATTEMPT,
        BATCH_SIZE,
        VIA,
    )
)
