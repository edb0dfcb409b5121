"""Scheme "none": nothing is checked; the source is protected by other means
(``allow_ips``, a VPN) or not at all."""

from __future__ import annotations

from collections.abc import Mapping

from hookgate.providers import common


class _AcceptAll:
    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Accept every request."""


PROVIDER = common.Provider(
    name="none",
    event_type=(),
    event_id=(),
    build=lambda settings: _AcceptAll(),
    signer=lambda settings, body, now: {},
    needs_secret=False,
    verify_keys=(),
)
