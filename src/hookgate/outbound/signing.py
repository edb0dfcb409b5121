"""Outbound signatures: the headers that let a destination trust a delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hookgate import wire
from hookgate.config import SignMode


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 part after ``whsec_``."""
    return base64.b64decode(secret.removeprefix("whsec_"))


class Signer:
    """Signs outbound requests for one destination; keys are decoded once.

    The HMAC's keyed state is made once too, and copied for each request: copying it
    costs about half of keying a new one (``hmac.new``) per request.
    """

    def __init__(self, mode: SignMode, secret: str | None) -> None:
        self.mode = mode
        if mode == "standard" and secret:
            key = standard_key(secret)
        else:
            key = (secret or "").encode()
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def headers(self, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The signature headers of a request (none without signing)."""
        if self.mode == "standard":
            mac = self._keyed.copy()
            mac.update(f"{webhook_id}.{timestamp}.".encode())
            mac.update(body)
            signature = "v1," + base64.b64encode(mac.digest()).decode()
            return {wire.WEBHOOK_SIGNATURE: signature}
        if self.mode == "hmac-sha256":
            mac = self._keyed.copy()
            mac.update(body)
            return {wire.HMAC_SIGNATURE: mac.hexdigest()}
        return {}
