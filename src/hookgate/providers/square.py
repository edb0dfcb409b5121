"""Square: ``x-square-hmacsha256-signature: <base64 HMAC-SHA256 of the notification URL
followed by the body>``, keyed with the subscription's signature key.

The URL is the notification URL exactly as configured in the Square Developer
Console: behind a reverse proxy or TLS terminator, set the source's ``public_url``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Request, Settings

_SIGNATURE = "x-square-hmacsha256-signature"


class _SquareVerifier(common.UrlBound):
    def __init__(self, secrets: Sequence[str]) -> None:
        self._macs = common.keyed((s.encode() for s in secrets), "sha256")

    def verify_request(self, request: Request, now: float) -> None:
        """Check the HMAC of the URL and the body."""
        signature = common.from_base64(common.header(request.headers, _SIGNATURE))
        common.match(self._macs, (signature,), request.url.encode(), request.body)


def _sign(settings: Settings, url: str, body: bytes, now: int) -> dict[str, str]:
    digest = common.mac(common.first_secret(settings).encode(), "sha256", url.encode(), body)
    return {_SIGNATURE: common.to_base64(digest)}


PROVIDER = common.Provider(
    name="square",
    event_type=("json:type",),
    event_id=("json:event_id",),
    build=lambda settings: _SquareVerifier(settings.secrets),
    signer=common.url_bound_signer,
    request_signer=_sign,
    docs="https://developer.squareup.com/docs/webhooks/step3validate",
)
