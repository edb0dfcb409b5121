"""PagerDuty (v3 webhooks): ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]``, each an
HMAC-SHA256 of the body; one per active secret while a secret is rotated.

The signature covers no time: replays are caught by dedup on the event id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_HEADER = "X-PagerDuty-Signature"


class _PagerDutyVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        self._macs = common.keyed((s.encode() for s in secrets), "sha256")

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check every ``v1=`` entry; entries of other versions are skipped."""
        signatures = []
        for item in common.header(headers, _HEADER).split(","):
            version, _, signature = item.strip().partition("=")
            if version == "v1":
                signatures.append(common.from_hex(signature))
        common.match(self._macs, signatures, body)


def _verifier(settings: Settings) -> common.Verifier:
    return _PagerDutyVerifier(settings.secrets)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    digest = common.mac(common.first_secret(settings).encode(), "sha256", body)
    return {_HEADER: "v1=" + digest.hex()}


PROVIDER = common.Provider(
    name="pagerduty",
    event_type=("json:event.event_type",),
    event_id=("json:event.id",),
    build=_verifier,
    signer=_sign,
    docs="https://developer.pagerduty.com/docs/28e906a0bb2e8-verifying-signatures",
)
