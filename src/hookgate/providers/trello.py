"""Trello: ``X-Trello-Webhook: <base64 HMAC-SHA1 of the body + the callback URL>``,
keyed with the application's API secret.

The callback URL is part of what is signed, exactly as it was given to Trello when
the webhook was created: behind a reverse proxy or TLS terminator, set the source's
``public_url`` to it (hookgate cannot know it). ``hookgate send`` signs the URL given.

When a webhook is created, Trello first sends an unsigned ``HEAD`` to the callback URL
and expects a 200: that is answered (empty, stored nowhere). It carries no proof and
needs none: the answer says only that the URL exists, which any request to it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Answer, Greeter, Request, Settings

_HEADER = "X-Trello-Webhook"


class _TrelloVerifier(common.UrlBound):
    def __init__(self, secrets: Sequence[str]) -> None:
        self._macs = common.keyed((s.encode() for s in secrets), "sha1")

    def verify_request(self, request: Request, now: float) -> None:
        """Check the HMAC of the body followed by the URL Trello posted to."""
        signature = common.from_base64(common.header(request.headers, _HEADER))
        common.match(self._macs, (signature,), request.body, request.url.encode())


def _callback_check(settings: Settings) -> Greeter:
    def greet(request: Request, now: float) -> Answer | None:
        """Trello's HEAD when a webhook is created: 200, nothing else."""
        return common.Answer(b"", content_type="text/plain")

    return greet


def _sign(settings: Settings, url: str, body: bytes, now: int) -> dict[str, str]:
    digest = common.mac(common.first_secret(settings).encode(), "sha1", body, url.encode())
    return {_HEADER: common.to_base64(digest)}


PROVIDER = common.Provider(
    name="trello",
    event_type=("json:action.type",),
    event_id=("json:action.id",),
    build=lambda settings: _TrelloVerifier(settings.secrets),
    signer=common.url_bound_signer,
    request_signer=_sign,
    greetings=(common.Greeting("HEAD", signed=False, build=_callback_check),),
    docs="https://developer.atlassian.com/cloud/trello/guides/rest-api/webhooks/#webhook-signatures",
)
