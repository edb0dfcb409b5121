"""Mailgun: the signature is in the body. A JSON webhook carries ``{"signature":
{"timestamp", "token", "signature"}, "event-data": {...}}``; a form-encoded one (legacy
webhooks, routes) the fields ``timestamp``, ``token`` and ``signature``. The signature
is the hex HMAC-SHA256 of timestamp followed by token, keyed with the HTTP webhook
signing key, and the timestamp must be within ``tolerance``.

Mailgun also advises refusing a token seen before; the event id (``event-data.id``,
hookgate's default ``event_id``) deduplicates repeats within ``dedup_window``.
"""

from __future__ import annotations

import secrets as random_tokens
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings


class _MailgunVerifier:
    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self._macs = common.keyed((s.encode() for s in secrets), "sha256")
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the signature fields of the body, and the timestamp."""
        fields = _signature_fields(body)
        timestamp, token, signature = (fields.get(k) for k in ("timestamp", "token", "signature"))
        if not (isinstance(timestamp, str) and isinstance(token, str)):
            raise VerificationFailed("missing signature fields")
        if not isinstance(signature, str):
            raise VerificationFailed("missing signature fields")
        common.check_timestamp(timestamp, now, self._tolerance)
        common.match(self._macs, (common.from_hex(signature),), timestamp.encode(), token.encode())


def _signature_fields(body: bytes) -> Mapping[str, Any]:
    if body.lstrip().startswith(b"{"):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise VerificationFailed("malformed body") from None
        fields = document.get("signature") if isinstance(document, dict) else None
        return fields if isinstance(fields, dict) else {}
    try:
        return dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise VerificationFailed("malformed body") from None


def _prepare(settings: Settings, body: bytes, now: int) -> bytes:
    """A JSON test body given a fresh signature object."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError('a Mailgun test body is JSON: {"event-data": {...}}') from None
    if not isinstance(document, dict):
        raise ValueError('a Mailgun test body is JSON: {"event-data": {...}}')
    token = random_tokens.token_hex(25)
    digest = common.mac(common.first_secret(settings).encode(), "sha256", f"{now}{token}".encode())
    signature = {"timestamp": str(now), "token": token, "signature": digest.hex()}
    return orjson.dumps({**document, "signature": signature})


PROVIDER = common.Provider(
    name="mailgun",
    event_type=("json:event-data.event",),
    event_id=("json:event-data.id",),
    build=lambda settings: _MailgunVerifier(settings.secrets, settings.tolerance),
    signer=lambda settings, body, now: {},
    prepare=_prepare,
    docs="https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks",
)
