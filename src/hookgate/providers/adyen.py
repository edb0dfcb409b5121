"""Adyen (standard webhooks): the signature is in the body, not a header. Each
``notificationItems[].NotificationRequestItem`` carries ``additionalData.hmacSignature``,
the base64 HMAC-SHA256 of its fields ``pspReference``, ``originalReference``,
``merchantAccountCode``, ``merchantReference``, ``amount.value``, ``amount.currency``,
``eventCode`` and ``success`` joined by ``:`` (a missing one is empty), keyed with the
hex-decoded HMAC key of the webhook. Every item must be signed, not only the first.

Nothing signed says when: replays are caught by dedup only, which needs an
``event_id`` of your choice (Adyen has no per-event id; ``pspReference`` repeats
across the events of one payment). ``hookgate send --provider adyen`` signs every
item of the body it is given (a JSON object without ``notificationItems`` is sent as
the only item).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_SIGNED_FIELDS = (
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
)
_AFTER_AMOUNT = ("eventCode", "success")


def _key(secret: str) -> bytes:
    try:
        return binascii.a2b_hex(secret)
    except ValueError:
        raise ValueError("an Adyen HMAC key is hex, as shown in the Customer Area") from None


def _text(value: Any) -> str:
    """A signed field as Adyen writes it into the signed string."""
    if value is None:
        return ""
    if isinstance(value, bool):  # documented as the strings "true"/"false"
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    raise VerificationFailed("malformed body")


def signed_string(item: Mapping[str, Any]) -> bytes:
    """What Adyen signs of one NotificationRequestItem."""
    amount = item.get("amount") or {}
    if not isinstance(amount, dict):
        raise VerificationFailed("malformed body")
    fields = [item.get(name) for name in _SIGNED_FIELDS]
    fields += [amount.get("value"), amount.get("currency")]
    fields += [item.get(name) for name in _AFTER_AMOUNT]
    return ":".join(_text(field) for field in fields).encode()


def _items(body: bytes) -> list[dict[str, Any]]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise VerificationFailed("malformed body") from None
    wrapped = document.get("notificationItems") if isinstance(document, dict) else None
    if not isinstance(wrapped, list) or not wrapped:
        raise VerificationFailed("malformed body")
    items = []
    for wrapper in wrapped:
        item = wrapper.get("NotificationRequestItem") if isinstance(wrapper, dict) else None
        if not isinstance(item, dict):
            raise VerificationFailed("malformed body")
        items.append(item)
    return items


class _AdyenVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        self._macs = common.keyed((_key(s) for s in secrets), "sha256")

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the hmacSignature of every notification item in the body."""
        for item in _items(body):
            additional = item.get("additionalData")
            signature = additional.get("hmacSignature") if isinstance(additional, dict) else None
            if not isinstance(signature, str):
                raise VerificationFailed("missing signature")
            common.match(self._macs, (common.from_base64(signature),), signed_string(item))


def _verifier(settings: Settings) -> common.Verifier:
    return _AdyenVerifier(settings.secrets)


def _prepare(settings: Settings, body: bytes, now: int) -> bytes:
    """A test body as Adyen sends it: every item given its ``hmacSignature``."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise ValueError("an Adyen test body is a JSON object")
    if "notificationItems" not in document:
        document = {"live": "false", "notificationItems": [{"NotificationRequestItem": document}]}
    try:
        items = _items(orjson.dumps(document))
        key = _key(common.first_secret(settings))
        for item in items:
            digest = common.mac(key, "sha256", signed_string(item))
            additional = item.get("additionalData")
            item["additionalData"] = {
                **(additional if isinstance(additional, dict) else {}),
                "hmacSignature": common.to_base64(digest),
            }
    except VerificationFailed:
        raise ValueError("an Adyen test body's JSON notificationItems cannot be signed") from None
    wrapped = [{"NotificationRequestItem": item} for item in items]
    return orjson.dumps({**document, "notificationItems": wrapped})


PROVIDER = common.Provider(
    name="adyen",
    event_type=("json:notificationItems.0.NotificationRequestItem.eventCode",),
    event_id=(),
    build=_verifier,
    # The signatures are inside the body, which ``_prepare`` fills in.
    signer=lambda settings, body, now: {},
    prepare=_prepare,
    docs="https://docs.adyen.com/development-resources/webhooks/verify-hmac-signatures/",
)
