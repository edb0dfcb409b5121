"""Twilio: ``X-Twilio-Signature: <base64 HMAC-SHA1 of the URL followed by each form
parameter's name and value, sorted by name>``, keyed with the account's auth token
(or HMAC-SHA256 with a SharedKey secret, when ``X-Twilio-Webhooks-Signature-Settings``
says ``algorithm=HMAC_SHA256``). A JSON body is not in the signature: the URL carries
``bodySHA256=<hex SHA-256 of the body>``, which must match.

The URL is the one Twilio requested, as configured in the Twilio console: behind a
reverse proxy or TLS terminator, set the source's ``public_url``. As Twilio's own
library does, the URL is tried with and without its default port.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Request, Settings

_SIGNATURE = "X-Twilio-Signature"
_SETTINGS = "X-Twilio-Webhooks-Signature-Settings"
_DEFAULT_PORTS = {"https": 443, "http": 80}
_FORM = "application/x-www-form-urlencoded"


class _TwilioVerifier(common.UrlBound):
    def __init__(self, secrets: Sequence[str]) -> None:
        self._macs = {
            "sha1": common.keyed((s.encode() for s in secrets), "sha1"),
            "sha256": common.keyed((s.encode() for s in secrets), "sha256"),
        }

    def verify_request(self, request: Request, now: float) -> None:
        """Check the signature of the URL and form parameters (or of the URL and the
        body's hash)."""
        signature = common.from_base64(common.header(request.headers, _SIGNATURE))
        macs = self._macs[_algorithm(request.headers)]
        parameters = _signed_parameters(request)
        for url in _url_forms(request.url):
            try:
                common.match(macs, (signature,), url.encode(), parameters)
            except VerificationFailed:
                continue
            return
        raise VerificationFailed("no signature matched")


def _algorithm(headers: Mapping[str, str]) -> str:
    for item in headers.get(_SETTINGS, "").split(","):
        name, _, value = item.partition("=")
        if name.strip() == "algorithm" and value.strip():
            algorithm = value.strip().upper()
            if algorithm not in ("HMAC_SHA1", "HMAC_SHA256"):
                raise VerificationFailed("unknown algorithm")
            return "sha256" if algorithm == "HMAC_SHA256" else "sha1"
    return "sha1"


def _signed_parameters(request: Request) -> bytes:
    """What follows the URL in the signed string: the sorted form parameters, or
    nothing when the URL carries the body's hash (checked here)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
    if "bodySHA256" in query:
        expected = hashlib.sha256(request.body).hexdigest()
        if not hmac.compare_digest(expected, query["bodySHA256"][0].lower()):
            raise VerificationFailed("body hash mismatch")
        return b""
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if request.body and content_type != _FORM:
        # Twilio signs a body either as form parameters or by its hash in the URL: any
        # other body would not be covered by the signature.
        raise VerificationFailed("body not covered by the signature")
    return form_string(request.body)


def form_string(body: bytes) -> bytes:
    """Each form parameter's name and value concatenated, sorted by name then value
    (duplicates once), as Twilio signs them."""
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)
        )
    except (UnicodeDecodeError, ValueError):
        raise VerificationFailed("malformed form body") from None
    values: dict[str, set[str]] = {}
    for name, value in pairs:
        values.setdefault(name, set()).add(value)
    return "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    ).encode()


def _url_forms(url: str) -> tuple[str, str]:
    """``url`` without its port and with one (the scheme's default when it has none):
    Twilio's own library tries both, as Twilio signs either."""
    parts = urllib.parse.urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    prefix = userinfo + "@" if userinfo else ""
    host = hostport if parts.port is None else hostport.rpartition(":")[0]
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
    bare = parts._replace(netloc=prefix + host).geturl()
    with_port = parts._replace(netloc=f"{prefix}{host}:{port}").geturl()
    return (bare, with_port)


def _sign(settings: Settings, url: str, body: bytes, now: int) -> dict[str, str]:
    if "bodySHA256" in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query):
        parameters = b""
    else:
        try:
            parameters = form_string(body)
        except VerificationFailed:
            raise ValueError(
                "Twilio signs a form body (application/x-www-form-urlencoded), or a URL "
                "with ?bodySHA256=<hex SHA-256 of the body>"
            ) from None
    digest = common.mac(common.first_secret(settings).encode(), "sha1", url.encode(), parameters)
    return {_SIGNATURE: common.to_base64(digest)}


PROVIDER = common.Provider(
    name="twilio",
    event_type=(),
    # Unique per webhook and the same on Twilio's retries of it.
    event_id=("header:I-Twilio-Idempotency-Token",),
    build=lambda settings: _TwilioVerifier(settings.secrets),
    signer=common.url_bound_signer,
    request_signer=_sign,
    docs="https://www.twilio.com/docs/usage/security#validating-requests",
)
