"""Discord (interactions and webhook events): ``X-Signature-Ed25519: <hex Ed25519
signature>`` of ``X-Signature-Timestamp`` followed by the body, checked with the
application's public key (hex, in ``public_keys``); and Discord's signed PING,
answered ``{"type": 1}`` for an interaction and 204 for a webhook event, not stored.

The PING is signed like everything else, so it is answered only after the signature
and the timestamp checked out: a forged one gets 401, and so does a replay older
than ``tolerance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import orjson
from cryptography.hazmat.primitives.asymmetric import ed25519

from hookgate.providers import common, keys
from hookgate.providers.common import Answer, Greeter, Request

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_SIGNATURE = "X-Signature-Ed25519"
_TIMESTAMP = "X-Signature-Timestamp"
# Interactions: type 1 is PING (answered {"type": 1}). Webhook events: type 0 is PING
# (answered 204), type 1 an event.
_INTERACTION_PONG = Answer(orjson.dumps({"type": 1}))
_EVENT_ACK = Answer(b"", status=204)
_MAX_PING = 2048


class _DiscordVerifier:
    def __init__(self, public_keys: Sequence[str], tolerance: float) -> None:
        self._keys = keys.ed25519_keys(public_keys)
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the Ed25519 signature of timestamp + body, and the timestamp."""
        signature = common.from_hex(common.header(headers, _SIGNATURE))
        timestamp = common.header(headers, _TIMESTAMP)
        common.check_timestamp(timestamp, now, self._tolerance)
        keys.check_ed25519(self._keys, signature, timestamp.encode() + body)


def _ping(settings: Settings) -> Greeter:
    def greet(request: Request, now: float) -> Answer | None:
        # Cheap before parsing: PINGs are tiny; events and interactions are not.
        if len(request.body) > _MAX_PING or b'"type"' not in request.body:
            return None
        try:
            document = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict):
            return None
        is_event = "event" in document
        if document.get("type") == 1 and not is_event and "data" not in document:
            return _INTERACTION_PONG
        if document.get("type") == 0 and not is_event:
            return _EVENT_ACK
        return None

    return greet


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    key = keys.signing_key(settings.public_keys)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("expected an Ed25519 private key to sign with")
    return {_SIGNATURE: key.sign(f"{now}".encode() + body).hex(), _TIMESTAMP: str(now)}


PROVIDER = common.Provider(
    name="discord",
    event_type=("json:event.type", "json:type"),
    event_id=("json:id",),
    build=lambda settings: _DiscordVerifier(settings.public_keys, settings.tolerance),
    signer=_sign,
    needs_secret=False,
    verify_keys=("public_keys",),
    greetings=(common.Greeting("POST", signed=True, build=_ping),),
    docs="https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint-validating-security-request-headers",
)
