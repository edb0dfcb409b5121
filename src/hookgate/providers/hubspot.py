"""HubSpot (signature v3): ``X-HubSpot-Signature-v3: <base64 HMAC-SHA256 of method +
URI + body + timestamp>`` keyed with the app's client secret, with the timestamp (unix
milliseconds) from ``X-HubSpot-Request-Timestamp``.

The URI is the full URL HubSpot requested, query string included, with the
percent-encodings HubSpot lists decoded (``%3A`` ``%2F`` ``%3F`` ``%40`` ``%21``
``%24`` ``%27`` ``%28`` ``%29`` ``%2A`` ``%2C`` ``%3B``): behind a reverse proxy or
TLS terminator, set the source's ``public_url``. HubSpot refuses timestamps older than
five minutes; so does the default ``tolerance``, both ways.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Request, Settings

_SIGNATURE = "X-HubSpot-Signature-v3"
_TIMESTAMP = "X-HubSpot-Request-Timestamp"
_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ENCODED = re.compile("|".join(_DECODED), re.IGNORECASE)
_MAX_MILLISECONDS_DIGITS = 15


class _HubSpotVerifier(common.UrlBound):
    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self._macs = common.keyed((s.encode() for s in secrets), "sha256")
        self._tolerance = tolerance

    def verify_request(self, request: Request, now: float) -> None:
        """Check the HMAC of method, URI, body and timestamp, and the timestamp."""
        signature = common.from_base64(common.header(request.headers, _SIGNATURE))
        timestamp = common.header(request.headers, _TIMESTAMP)
        if not (timestamp.isdigit() and len(timestamp) <= _MAX_MILLISECONDS_DIGITS):
            raise VerificationFailed("malformed timestamp")
        common.check_timestamp(str(int(timestamp) // 1000), now, self._tolerance)
        common.match(
            self._macs,
            (signature,),
            request.method.encode(),
            signed_uri(request.url).encode(),
            request.body,
            timestamp.encode(),
        )


def signed_uri(url: str) -> str:
    """``url`` with the percent-encodings HubSpot lists decoded."""
    return _ENCODED.sub(lambda m: _DECODED[m[0].upper()], url)


def _sign(settings: Settings, url: str, body: bytes, now: int) -> dict[str, str]:
    timestamp = str(now * 1000)
    digest = common.mac(
        common.first_secret(settings).encode(),
        "sha256",
        b"POST",
        signed_uri(url).encode(),
        body,
        timestamp.encode(),
    )
    return {_SIGNATURE: common.to_base64(digest), _TIMESTAMP: timestamp}


PROVIDER = common.Provider(
    name="hubspot",
    # The body is a JSON array of events (subscriptionType, eventId per item).
    event_type=(),
    event_id=(),
    build=lambda settings: _HubSpotVerifier(settings.secrets, settings.tolerance),
    signer=common.url_bound_signer,
    request_signer=_sign,
    docs="https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation",
)
