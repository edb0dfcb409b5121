"""GitLab: ``X-Gitlab-Token`` carries the secret itself (a shared token, not a
signature: it does not protect the body)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings


class _GitlabVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not all(s.isascii() for s in secrets):
            # It travels in an HTTP header, where non-ASCII is never accepted here.
            raise ValueError("a GitLab secret token must be ASCII")
        self._tokens = common.SecretMatcher(s.encode() for s in secrets)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Compare the token with every secret, in constant time."""
        self._tokens.check(common.header(headers, "X-Gitlab-Token").encode())


def _verifier(settings: Settings) -> common.Verifier:
    return _GitlabVerifier(settings.secrets)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    return {"X-Gitlab-Token": common.first_secret(settings)}


PROVIDER = common.Provider(
    name="gitlab",
    event_type=("header:X-Gitlab-Event",),
    event_id=("header:X-Gitlab-Event-UUID",),
    build=_verifier,
    signer=_sign,
)
