"""SendGrid (Twilio SendGrid Event Webhook): ``X-Twilio-Email-Event-Webhook-Signature:
<base64 DER ECDSA P-256 signature>`` of timestamp followed by the body, SHA-256, with
the timestamp from ``X-Twilio-Email-Event-Webhook-Timestamp``; checked with the
verification key SendGrid shows (base64 DER) in ``public_keys``.

The body is a JSON array of events (``event`` and ``sg_event_id`` on each), so there
is no single event type or id for a request.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hookgate.providers import common, keys

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


class _SendGridVerifier:
    def __init__(self, public_keys: Sequence[str], tolerance: float) -> None:
        self._keys = keys.p256_keys(public_keys)
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the ECDSA signature of timestamp + body, and the timestamp."""
        signature = common.from_base64(common.header(headers, _SIGNATURE))
        timestamp = common.header(headers, _TIMESTAMP)
        common.check_timestamp(timestamp, now, self._tolerance)
        keys.check_ecdsa(self._keys, signature, timestamp.encode() + body)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    key = keys.signing_key(settings.public_keys)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an ECDSA P-256 private key to sign with")
    signature = key.sign(f"{now}".encode() + body, ec.ECDSA(hashes.SHA256()))
    return {_SIGNATURE: base64.b64encode(signature).decode(), _TIMESTAMP: str(now)}


PROVIDER = common.Provider(
    name="sendgrid",
    event_type=(),
    event_id=(),
    build=lambda settings: _SendGridVerifier(settings.public_keys, settings.tolerance),
    signer=_sign,
    needs_secret=False,
    verify_keys=("public_keys",),
    docs="https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features",
)
