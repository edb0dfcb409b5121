"""Linear: ``Linear-Signature: <hex HMAC-SHA256 of the body>`` keyed with the webhook's
signing secret; the body's ``webhookTimestamp`` (unix milliseconds) must be within
``tolerance`` (Linear advises one minute, the default with ``provider = "linear"``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import orjson

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_SHAPE = common.HmacShape(header="Linear-Signature")


class _LinearVerifier:
    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self._signature = common.HmacVerifier(_SHAPE, secrets, tolerance)
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the signature, then the signed body's webhookTimestamp."""
        self._signature.verify(headers, body, now)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise VerificationFailed("malformed body") from None
        stamp = document.get("webhookTimestamp") if isinstance(document, dict) else None
        if isinstance(stamp, bool) or not isinstance(stamp, int):
            raise VerificationFailed("malformed timestamp")
        common.check_timestamp(str(max(stamp, 0) // 1000), now, self._tolerance)


def _prepare(settings: Settings, body: bytes, now: int) -> bytes:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("a Linear test body is a JSON object") from None
    if not isinstance(document, dict):
        raise ValueError("a Linear test body is a JSON object")
    return orjson.dumps({**document, "webhookTimestamp": now * 1000})


PROVIDER = common.Provider(
    name="linear",
    event_type=("json:type",),
    event_id=("header:Linear-Delivery",),
    build=lambda settings: _LinearVerifier(settings.secrets, settings.tolerance),
    signer=lambda settings, body, now: _SHAPE.sign(common.first_secret(settings), body, now),
    prepare=_prepare,
    tolerance=60,
    docs="https://linear.app/developers/webhooks#securing-webhooks",
)
