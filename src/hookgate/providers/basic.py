"""HTTP Basic: ``Authorization: Basic base64(user:password)``, each secret being
``"user:password"`` (RFC 7617: UTF-8 before base64)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings


class _BasicVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not all(":" in s for s in secrets):
            raise ValueError('scheme "basic" expects each secret as "user:password"')
        self._credentials = common.SecretMatcher(s.encode() for s in secrets)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Compare the decoded "user:password" with every secret, in constant time."""
        scheme, _, credentials = common.header(headers, "Authorization").partition(" ")
        if scheme.lower() != "basic":  # the auth scheme name is case-insensitive
            raise VerificationFailed("malformed header")
        self._credentials.check(common.from_base64(credentials.strip()))


def _verifier(settings: Settings) -> common.Verifier:
    return _BasicVerifier(settings.secrets)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    credentials = common.first_secret(settings).encode()
    return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}


PROVIDER = common.Provider(
    name="basic",
    event_type=(),
    event_id=(),
    build=_verifier,
    signer=_sign,
)
