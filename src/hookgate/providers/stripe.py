"""Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``, an HMAC-SHA256 of
``"<t>.<body>"`` keyed with the whole ``whsec_...`` string (not a decoded key).

Calendly signs the same way in its own header: ``StripeStyleVerifier`` and
``stripe_style_headers`` serve both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings


class StripeStyleVerifier:
    """Checks ``t=<unix>,v1=<hex>...`` in ``header``: an HMAC-SHA256 of ``"<t>.<body>"``."""

    def __init__(self, secrets: Sequence[str], tolerance: float, header: str) -> None:
        # Stripe keys the HMAC with the whole "whsec_..." string, not a decoded key.
        self._macs = common.keyed((s.encode() for s in secrets), "sha256")
        self._tolerance = tolerance
        self._header = header

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check every v1 signature; v0 and unknown schemes are ignored."""
        timestamp: str | None = None
        signatures = []
        for item in common.header(headers, self._header).split(","):
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


def stripe_style_headers(header: str, secret: str, body: bytes, now: int) -> dict[str, str]:
    """``header`` signing ``body`` at ``now`` as ``StripeStyleVerifier`` checks it."""
    digest = common.mac(secret.encode(), "sha256", f"{now}.".encode(), body)
    return {header: f"t={now},v1={digest.hex()}"}


def _verifier(settings: Settings) -> common.Verifier:
    return StripeStyleVerifier(settings.secrets, settings.tolerance, "Stripe-Signature")


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    return stripe_style_headers("Stripe-Signature", common.first_secret(settings), body, now)


PROVIDER = common.Provider(
    name="stripe",
    event_type=("json:type",),
    event_id=("json:id",),
    build=_verifier,
    signer=_sign,
)
