"""Outbound signatures: the headers that let a destination trust a delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hookgate.config import SignMode


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 part after ``whsec_``."""
    return base64.b64decode(secret.removeprefix("whsec_"))


class Signer:
    """Signs outbound requests for one destination; keys are decoded once."""

    def __init__(self, mode: SignMode, secret: str | None) -> None:
        self.mode = mode
        if mode == "standard" and secret:
            self._key = standard_key(secret)
        else:
            self._key = (secret or "").encode()

    def headers(self, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        if self.mode == "standard":
            signed = f"{webhook_id}.{timestamp}.".encode() + body
            digest = hmac.new(self._key, signed, hashlib.sha256).digest()
            return {"webhook-signature": "v1," + base64.b64encode(digest).decode()}
        if self.mode == "hmac-sha256":
            return {"X-Webhook-Signature": hmac.new(self._key, body, hashlib.sha256).hexdigest()}
        return {}
