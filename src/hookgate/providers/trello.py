"""Trello: ``X-Trello-Webhook: <base64 HMAC-SHA1 of the body + the callback URL>``,
keyed with the application's API secret.

The callback URL is part of what is signed, exactly as it was given to Trello when
the webhook was created: set it as ``url`` (behind a proxy, hookgate cannot know it).

When a webhook is created, Trello first sends an unsigned ``HEAD`` to the callback URL
and expects a 200; hookgate answers only the source's ``methods``, so that check
needs a HEAD handshake of its own (not built here).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_HEADER = "X-Trello-Webhook"


def _callback_url(settings: Settings) -> bytes:
    if not settings.url:
        raise ValueError('scheme "trello" needs url: the callbackURL the webhook was created with')
    return settings.url.encode()


class _TrelloVerifier:
    def __init__(self, secrets: Sequence[str], callback_url: bytes) -> None:
        self._macs = common.keyed((s.encode() for s in secrets), "sha1")
        self._callback_url = callback_url

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the HMAC of the body followed by the configured callback URL."""
        signature = common.from_base64(common.header(headers, _HEADER))
        common.match(self._macs, (signature,), body, self._callback_url)


def _verifier(settings: Settings) -> common.Verifier:
    return _TrelloVerifier(settings.secrets, _callback_url(settings))


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    key = common.first_secret(settings).encode()
    digest = common.mac(key, "sha1", body, _callback_url(settings))
    return {_HEADER: base64.b64encode(digest).decode()}


PROVIDER = common.Provider(
    name="trello",
    event_type=("json:action.type",),
    event_id=("json:action.id",),
    build=_verifier,
    signer=_sign,
    docs="https://developer.atlassian.com/cloud/trello/guides/rest-api/webhooks/#webhook-signatures",
)
