"""Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``, an HMAC-SHA256 of
``"<t>.<body>"`` keyed with the whole ``whsec_...`` string (not a decoded key)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings


class _StripeVerifier:
    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        # Stripe keys the HMAC with the whole "whsec_..." string, not a decoded key.
        self._macs = common.keyed((s.encode() for s in secrets), "sha256")
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check every v1 signature; v0 and unknown schemes are ignored."""
        timestamp: str | None = None
        signatures = []
        for item in common.header(headers, "Stripe-Signature").split(","):
            key, equals, value = item.partition("=")
            if not equals or (key == "t" and timestamp is not None):
                raise VerificationFailed("malformed header")
            if key == "t":
                timestamp = value
            elif key == "v1":
                signatures.append(common.from_hex(value))
        if timestamp is None:
            raise VerificationFailed("malformed header")
        # Stripe's own library only rejects old timestamps; a far-future one is as
        # much a replay risk, so both directions are bounded here.
        common.check_timestamp(timestamp, now, self._tolerance)
        common.match(self._macs, signatures, timestamp.encode() + b".", body)


def _verifier(settings: Settings) -> common.Verifier:
    return _StripeVerifier(settings.secrets, settings.tolerance)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    digest = common.mac(common.first_secret(settings).encode(), "sha256", f"{now}.".encode(), body)
    return {"Stripe-Signature": f"t={now},v1={digest.hex()}"}


PROVIDER = common.Provider(
    name="stripe",
    event_type=("json:type",),
    event_id=("json:id",),
    build=_verifier,
    signer=_sign,
)
