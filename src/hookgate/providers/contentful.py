"""Contentful (webhook request verification): ``x-contentful-signature``, the hex
HMAC-SHA256 of a canonical request, keyed with the space's signing secret.

The canonical request is ``POST``, the request path, the signed headers and the body,
joined by newlines. The signed headers are those named in
``x-contentful-signed-headers`` (which names itself and ``x-contentful-timestamp``),
as ``name:value`` sorted by name and joined by ``;``. The timestamp is unix
milliseconds and must be within ``tolerance``. The path and query are those of the
URL Contentful posted to (the source's ``public_url`` behind a reverse proxy), escaped
as Contentful's own verifier (``@contentful/node-apps-toolkit``) does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Request, Settings

_SIGNATURE = "x-contentful-signature"
_SIGNED_HEADERS = "x-contentful-signed-headers"
_TIMESTAMP = "x-contentful-timestamp"
# What JavaScript's encodeURI and encodeURIComponent leave as they are.
_URI_SAFE = ";,/?:@&=+$-_.!~*'()#"
_COMPONENT_SAFE = "-_.!~*'()"


def canonical_path(url: str) -> bytes:
    """The path (and query) of ``url`` as Contentful signs it."""
    parts = urlsplit(url)
    # Decoded first: the URL as it arrived is already escaped, one set in the config
    # may not be, and Contentful escapes the path as it was configured.
    path = unquote(parts.path) or "/"
    if parts.query:
        path += "?" + quote(parts.query, safe=_COMPONENT_SAFE)
    return quote(path, safe=_URI_SAFE).encode()


def _signed_headers(headers: Mapping[str, str]) -> bytes:
    """``name:value`` of every signed header, sorted by name, joined by ``;``."""
    names = {name.strip().lower() for name in common.header(headers, _SIGNED_HEADERS).split(",")}
    names |= {_SIGNED_HEADERS, _TIMESTAMP}
    pairs = []
    for name in sorted(names):
        value = ",".join(sorted(names)) if name == _SIGNED_HEADERS else common.header(headers, name)
        pairs.append(f"{name}:{value.strip()}")
    return ";".join(pairs).encode()


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes
) -> tuple[bytes, ...]:
    """The parts of what Contentful signs, to be hashed in order."""
    path = canonical_path(url)
    return (method.encode(), b"\n", path, b"\n", _signed_headers(headers), b"\n", body)


class _ContentfulVerifier(common.UrlBound):
    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self._macs = common.keyed((s.encode() for s in secrets), "sha256")
        self._tolerance = tolerance

    def verify_request(self, request: Request, now: float) -> None:
        """Check the timestamp (milliseconds), then the HMAC of the canonical request."""
        headers = request.headers
        milliseconds = common.header(headers, _TIMESTAMP)
        if not milliseconds.isdigit():
            raise VerificationFailed("malformed timestamp")
        common.check_timestamp(milliseconds[:-3] or "0", now, self._tolerance)
        signature = common.from_hex(common.header(headers, _SIGNATURE))
        canonical = canonical_request(request.method, request.url, headers, request.body)
        common.match(self._macs, (signature,), *canonical)


def _sign(settings: Settings, url: str, body: bytes, now: int) -> dict[str, str]:
    headers = {
        "x-contentful-topic": "ContentManagement.Entry.publish",
        _TIMESTAMP: str(now * 1000),
        _SIGNED_HEADERS: f"x-contentful-topic,{_SIGNED_HEADERS},{_TIMESTAMP}",
    }
    key = common.first_secret(settings).encode()
    headers[_SIGNATURE] = common.mac(
        key, "sha256", *canonical_request("POST", url, headers, body)
    ).hex()
    return headers


PROVIDER = common.Provider(
    name="contentful",
    event_type=("header:X-Contentful-Topic",),
    event_id=(),
    build=lambda settings: _ContentfulVerifier(settings.secrets, settings.tolerance),
    signer=common.url_bound_signer,
    request_signer=_sign,
    docs="https://www.contentful.com/developers/docs/webhooks/request-verification/",
)
