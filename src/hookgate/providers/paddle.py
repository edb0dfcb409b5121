"""Paddle Billing: ``Paddle-Signature: ts=<unix>;h1=<hex HMAC-SHA256 of "<ts>:<body>">``
keyed with the notification destination's secret key; several ``h1`` entries may
appear during a secret rotation, and any may match."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_HEADER = "Paddle-Signature"


class _PaddleVerifier:
    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self._macs = common.keyed((s.encode() for s in secrets), "sha256")
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check every h1 signature over "<ts>:<body>", and ts."""
        timestamp: str | None = None
        signatures = []
        for item in common.header(headers, _HEADER).split(";"):
            key, equals, value = item.partition("=")
            if not equals or (key == "ts" and timestamp is not None):
                raise VerificationFailed("malformed header")
            if key == "ts":
                timestamp = value
            elif key == "h1":
                signatures.append(common.from_hex(value))
        if timestamp is None:
            raise VerificationFailed("malformed header")
        common.check_timestamp(timestamp, now, self._tolerance)
        common.match(self._macs, signatures, timestamp.encode() + b":", body)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    digest = common.mac(common.first_secret(settings).encode(), "sha256", f"{now}:".encode(), body)
    return {_HEADER: f"ts={now};h1={digest.hex()}"}


# https://developer.paddle.com/webhooks/respond-to-webhooks ("Allow Paddle IP
# addresses"): live, then sandbox. Both, so one source serves either; set allow_ips to
# narrow it.
_IP_RANGES = (
    "34.232.58.13/32",
    "34.195.105.136/32",
    "34.237.3.244/32",
    "35.155.119.135/32",
    "52.11.166.252/32",
    "34.212.5.7/32",
    "34.194.127.46/32",
    "54.234.237.108/32",
    "3.208.120.145/32",
    "44.226.236.210/32",
    "44.241.183.62/32",
    "100.20.172.113/32",
)

PROVIDER = common.Provider(
    name="paddle",
    event_type=("json:event_type",),
    event_id=("json:event_id",),
    build=lambda settings: _PaddleVerifier(settings.secrets, settings.tolerance),
    signer=_sign,
    ip_ranges=_IP_RANGES,
    docs="https://developer.paddle.com/webhooks/signature-verification",
)
