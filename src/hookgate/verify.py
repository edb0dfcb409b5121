"""Inbound signature verification: one small verifier per provider scheme.

Every scheme works on the raw body bytes exactly as received (a re-serialised JSON
body would not match the provider's signature), compares with ``hmac.compare_digest``
and accepts any of the configured secrets, so a rotation can overlap old and new.
``build_verifier`` derives every key once; ``verify`` then only hashes and compares.
Anything malformed in a request raises ``VerificationFailed``, never another error,
so the ingress can answer 401 without special cases.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from hookgate.config import Scheme, VerifyConfig
from hookgate.errors import VerificationFailed

DEFAULT_EVENT_TYPE: dict[str, tuple[str, ...]] = {
    "github": ("header:X-GitHub-Event",),
    "stripe": ("json:type",),
    "shopify": ("header:X-Shopify-Topic",),
    "slack": ("json:event.type", "json:type"),
    "standard": ("json:type",),
    "gitlab": ("header:X-Gitlab-Event",),
}
"""Where each scheme's provider puts the event type: candidates tried in order."""

DEFAULT_EVENT_ID: dict[str, tuple[str, ...]] = {
    "github": ("header:X-GitHub-Delivery",),
    "stripe": ("json:id",),
    "shopify": ("header:X-Shopify-Webhook-Id",),
    "slack": ("json:event_id",),
    "standard": ("header:webhook-id", "header:svix-id"),
    "gitlab": ("header:X-Gitlab-Event-UUID",),
}
"""Where each scheme's provider puts its event id: candidates tried in order."""

# Unix seconds have 10 digits until the year 2286; a longer "timestamp" is garbage,
# and bounding it keeps int() cheap on hostile input.
_MAX_TIMESTAMP_DIGITS = 12


class Verifier(Protocol):
    """Checks one inbound request of a source."""

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Return if the request is authentic; else raise ``VerificationFailed``.

        ``headers`` must be case-insensitive (aiohttp's ``CIMultiDictProxy``);
        ``now`` is unix seconds.
        """
        ...


def build_verifier(config: VerifyConfig) -> Verifier:
    """The verifier for a source's ``verify`` table.

    Raises ``ValueError`` for a table that cannot verify anything (no secrets, a
    secret of the wrong form, an unusable ``signed_payload``); the message names the
    key but never shows a secret.
    """
    if config.scheme != "none" and not config.secrets:
        raise ValueError(f'scheme "{config.scheme}" needs at least one secret')
    return _BUILDERS[config.scheme](config)


# -- helpers shared by the schemes ------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise VerificationFailed("missing header")
    # Every header these schemes read is ASCII by spec; rejecting the rest early means
    # the code below can encode without a failure path.
    if not value.isascii():
        raise VerificationFailed("malformed header")
    return value


def _check_timestamp(value: str, now: float, tolerance: float) -> None:
    # isdigit() on an ASCII string is exactly [0-9]: no sign, space, "_" or exponent,
    # which int() or float() would otherwise accept.
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
        raise VerificationFailed("malformed timestamp")
    timestamp = int(value)
    if timestamp < now - tolerance:
        raise VerificationFailed("stale timestamp")
    if timestamp > now + tolerance:
        raise VerificationFailed("future timestamp")


def _from_hex(text: str) -> bytes:
    try:
        # Unlike bytes.fromhex, a2b_hex takes no whitespace; both cases of a-f are fine.
        return binascii.a2b_hex(text)
    except ValueError:  # binascii.Error, and non-ASCII input
        raise VerificationFailed("malformed signature") from None


def _from_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, and non-ASCII input
        raise VerificationFailed("malformed signature") from None


def _keyed(keys: Iterable[bytes], algorithm: str) -> tuple[hmac.HMAC, ...]:
    # An HMAC object already fed its key: copying it skips re-deriving the key pads
    # on every request.
    return tuple(hmac.new(key, digestmod=algorithm) for key in keys)


def _match(macs: Sequence[hmac.HMAC], signatures: Sequence[bytes], *parts: bytes) -> None:
    """Pass if the MAC of ``parts`` under any key equals any of ``signatures``."""
    for keyed in macs:
        mac = keyed.copy()
        for part in parts:
            mac.update(part)
        expected = mac.digest()
        for signature in signatures:
            if hmac.compare_digest(expected, signature):
                return
    raise VerificationFailed("no signature matched")


def _hashed_secrets(secrets: Iterable[bytes]) -> tuple[bytes, ...]:
    # Comparing SHA-256 digests, not the values, keeps the comparison constant time
    # even when lengths differ, so the time taken does not leak a secret's length.
    return tuple(hashlib.sha256(secret).digest() for secret in secrets)


def _match_secret(hashed: Sequence[bytes], given: bytes) -> None:
    digest = hashlib.sha256(given).digest()
    if not any(hmac.compare_digest(digest, h) for h in hashed):
        raise VerificationFailed("no credentials matched")


# -- the schemes --------------------------------------------------------------------


class _AcceptAll:
    """Scheme "none": the source is protected by other means (allow_ips, a VPN)."""

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Accept every request."""


class _HmacVerifier:
    """An HMAC of the body (optionally with a timestamp) in one header.

    The generic "hmac" scheme, and the fixed shape of GitHub, Shopify and Slack.
    """

    def __init__(
        self,
        *,
        secrets: Sequence[str],
        header: str,
        algorithm: str,
        encoding: str,
        prefix: str,
        timestamp_header: str | None,
        signed_payload: str,
        tolerance: float,
    ) -> None:
        parts = signed_payload.split("{body}")
        if len(parts) != 2:
            raise ValueError('signed_payload must contain "{body}" exactly once')
        has_timestamp = "{timestamp}" in signed_payload
        if timestamp_header is None and has_timestamp:
            raise ValueError('signed_payload uses "{timestamp}" but timestamp_header is not set')
        if timestamp_header is not None and not has_timestamp:
            # An unsigned timestamp could be rewritten by anyone: no replay protection.
            raise ValueError('timestamp_header is set but signed_payload lacks "{timestamp}"')
        self._macs = _keyed((s.encode() for s in secrets), algorithm)
        self._header = header
        self._decode = _from_hex if encoding == "hex" else _from_base64
        self._prefix = prefix
        self._timestamp_header = timestamp_header
        self._before, self._after = (part.encode() for part in parts)
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the signature header, and the timestamp when the scheme has one."""
        value = _header(headers, self._header)
        if not value.startswith(self._prefix):
            raise VerificationFailed("malformed signature")
        signature = self._decode(value[len(self._prefix) :])
        before, after = self._before, self._after
        if self._timestamp_header is not None:
            timestamp = _header(headers, self._timestamp_header)
            _check_timestamp(timestamp, now, self._tolerance)
            stamp = timestamp.encode()
            before = before.replace(b"{timestamp}", stamp)
            after = after.replace(b"{timestamp}", stamp)
        _match(self._macs, (signature,), before, body, after)


def _generic_hmac(config: VerifyConfig) -> Verifier:
    if not config.header:
        raise ValueError('scheme "hmac" needs the header that carries the signature')
    return _HmacVerifier(
        secrets=config.secrets,
        header=config.header,
        algorithm=config.algorithm,
        encoding=config.encoding,
        prefix=config.prefix,
        timestamp_header=config.timestamp_header,
        signed_payload=config.signed_payload,
        tolerance=config.tolerance,
    )


def _github(config: VerifyConfig) -> Verifier:
    """X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>."""
    return _HmacVerifier(
        secrets=config.secrets,
        header="X-Hub-Signature-256",
        algorithm="sha256",
        encoding="hex",
        prefix="sha256=",
        timestamp_header=None,
        signed_payload="{body}",
        tolerance=config.tolerance,
    )


def _shopify(config: VerifyConfig) -> Verifier:
    """X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>."""
    return _HmacVerifier(
        secrets=config.secrets,
        header="X-Shopify-Hmac-Sha256",
        algorithm="sha256",
        encoding="base64",
        prefix="",
        timestamp_header=None,
        signed_payload="{body}",
        tolerance=config.tolerance,
    )


def _slack(config: VerifyConfig) -> Verifier:
    """X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>."""
    return _HmacVerifier(
        secrets=config.secrets,
        header="X-Slack-Signature",
        algorithm="sha256",
        encoding="hex",
        prefix="v0=",
        timestamp_header="X-Slack-Request-Timestamp",
        signed_payload="v0:{timestamp}:{body}",
        tolerance=config.tolerance,
    )


class _StandardVerifier:
    """Standard Webhooks (and Svix, which names the same headers svix-*)."""

    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self._macs = _keyed((_standard_key(s) for s in secrets), "sha256")
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check webhook-signature's v1 entries over "<id>.<timestamp>.<body>"."""
        prefix = "webhook-" if "webhook-id" in headers else "svix-"
        msg_id = _header(headers, prefix + "id")
        timestamp = _header(headers, prefix + "timestamp")
        signature_list = _header(headers, prefix + "signature")
        _check_timestamp(timestamp, now, self._tolerance)
        signatures = []
        # Space-separated "<version>,<base64>" items; other versions (v1a, future
        # ones) are not ours to check and are skipped.
        for item in signature_list.split():
            version, _, signature = item.partition(",")
            if version == "v1":
                signatures.append(_from_base64(signature))
        _match(self._macs, signatures, f"{msg_id}.{timestamp}.".encode(), body)


def _standard_key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        # Tolerate missing padding, as the official libraries do.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        raise ValueError('expected a "whsec_<base64>" secret') from None
    if not key:
        raise ValueError('expected a "whsec_<base64>" secret, got an empty key')
    return key


def _standard(config: VerifyConfig) -> Verifier:
    return _StandardVerifier(config.secrets, config.tolerance)


class _StripeVerifier:
    """Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...] over "<t>.<body>"."""

    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        # Stripe keys the HMAC with the whole "whsec_..." string, not a decoded key.
        self._macs = _keyed((s.encode() for s in secrets), "sha256")
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check every v1 signature; v0 and unknown schemes are ignored."""
        timestamp: str | None = None
        signatures = []
        for item in _header(headers, "Stripe-Signature").split(","):
            key, equals, value = item.partition("=")
            if not equals or (key == "t" and timestamp is not None):
                raise VerificationFailed("malformed header")
            if key == "t":
                timestamp = value
            elif key == "v1":
                signatures.append(_from_hex(value))
        if timestamp is None:
            raise VerificationFailed("malformed header")
        # Stripe's own library only rejects old timestamps; a far-future one is as
        # much a replay risk, so both directions are bounded here.
        _check_timestamp(timestamp, now, self._tolerance)
        _match(self._macs, signatures, timestamp.encode() + b".", body)


def _stripe(config: VerifyConfig) -> Verifier:
    return _StripeVerifier(config.secrets, config.tolerance)


class _GitlabVerifier:
    """X-Gitlab-Token: the secret itself, sent as is."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not all(s.isascii() for s in secrets):
            # It travels in an HTTP header, where non-ASCII is never accepted here.
            raise ValueError("a GitLab secret token must be ASCII")
        self._hashed = _hashed_secrets(s.encode() for s in secrets)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Compare the token with every secret, in constant time."""
        _match_secret(self._hashed, _header(headers, "X-Gitlab-Token").encode())


def _gitlab(config: VerifyConfig) -> Verifier:
    return _GitlabVerifier(config.secrets)


class _BasicVerifier:
    """Authorization: Basic base64(user:password), each secret being "user:password"."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not all(":" in s for s in secrets):
            raise ValueError('scheme "basic" expects each secret as "user:password"')
        # RFC 7617: the credentials are UTF-8 before base64.
        self._hashed = _hashed_secrets(s.encode() for s in secrets)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Compare the decoded "user:password" with every secret, in constant time."""
        scheme, _, credentials = _header(headers, "Authorization").partition(" ")
        if scheme.lower() != "basic":  # the auth scheme name is case-insensitive
            raise VerificationFailed("malformed header")
        _match_secret(self._hashed, _from_base64(credentials.strip()))


def _basic(config: VerifyConfig) -> Verifier:
    return _BasicVerifier(config.secrets)


_BUILDERS: dict[Scheme, Callable[[VerifyConfig], Verifier]] = {
    "none": lambda config: _AcceptAll(),
    "hmac": _generic_hmac,
    "standard": _standard,
    "github": _github,
    "stripe": _stripe,
    "shopify": _shopify,
    "slack": _slack,
    "gitlab": _gitlab,
    "basic": _basic,
}
