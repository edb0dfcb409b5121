"""What every provider module shares: the types, and the checks that are the same everywhere.

Every verifier works on the raw body bytes exactly as received (a re-serialised JSON
body would not match the provider's signature), compares in constant time and
accepts any of the configured secrets, so a rotation can overlap old and new. Keys
are derived once, when the verifier is built; ``verify`` then only hashes and
compares. Anything malformed in a request raises ``VerificationFailed``, never
another error, so the ingress can answer 401 without special cases.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from hookgate.errors import VerificationFailed

_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")
_PRINTABLE = re.compile(r"[ -~]+")
# Unix seconds have 10 digits until the year 2286; a longer "timestamp" is garbage,
# and bounding it keeps int() cheap on hostile input.
_MAX_TIMESTAMP_DIGITS = 12


class Settings(Protocol):
    """What a provider reads of a source's ``[verify]`` table (``config.VerifyConfig``).

    A protocol, not the config type itself: config imports the providers to check
    scheme names, so the providers must not import config back.
    """

    @property
    def secrets(self) -> Sequence[str]: ...
    @property
    def tolerance(self) -> float: ...
    @property
    def header(self) -> str | None: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def encoding(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def timestamp_header(self) -> str | None: ...
    @property
    def signed_payload(self) -> str: ...
    @property
    def verify_token(self) -> str | None: ...
    @property
    def public_keys(self) -> Sequence[str]: ...
    @property
    def handshake_secret_file(self) -> str | None: ...


class Verifier(Protocol):
    """Checks one inbound request of a source."""

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Return if the request is authentic; else raise ``VerificationFailed``.

        ``headers`` must be case-insensitive (aiohttp's ``CIMultiDictProxy``);
        ``now`` is unix seconds.
        """
        ...


Builder = Callable[[Settings], Verifier]
Signer = Callable[[Settings, bytes, int], dict[str, str]]
Handshake = Callable[[Mapping[str, str], bytes], bytes | None]


class Request(msgspec.Struct, frozen=True):
    """One inbound request as a provider sees it.

    ``url`` is the URL the provider sent to (the source's ``public_url`` with the
    request's query string, else the URL as it arrived): what Twilio, Square,
    HubSpot, Trello and Contentful sign.
    """

    # A msgspec Struct, not a frozen dataclass: the ingress makes one per webhook, and
    # a frozen dataclass's __init__ cost 0.6 µs of it.

    method: str
    url: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """What the ingress answers to a handshake instead of storing it."""

    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 200


class HandshakeRefused(Exception):
    """A handshake that does not check out: answered ``status`` with ``code``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


Greeter = Callable[[Request, float], Answer | None]
"""Answers a request that is this provider's handshake; None for any other request.
Raises ``HandshakeRefused`` (or ``VerificationFailed``) for a bad, forged or replayed
one."""


@dataclass(frozen=True, slots=True)
class Greeting:
    """A provider's handshake: which method it comes with, whether the request is
    signed like an ordinary webhook, and how it is answered.

    ``signed``: the ingress verifies the request's signature first and asks the
    greeter only when it is valid (Slack, Zoom, Discord). Unsigned handshakes (GET
    challenges, Microsoft Graph's and Asana's) carry their own proof, or none, and the
    greeter checks it before any signature check.
    """

    method: str
    signed: bool
    build: Callable[[Settings], Greeter]


class RequestVerifier(Protocol):
    """A verifier that needs more of the request than headers and body (the URL,
    the method): the ingress calls ``verify_request`` when a verifier has it."""

    def verify_request(self, request: Request, now: float) -> None:
        """Return if the request is authentic; else raise ``VerificationFailed``."""
        ...


@dataclass(frozen=True, slots=True)
class Provider:
    """One provider: how its requests are verified, where its event type and id are,
    how ``hookgate send`` signs like it, and the handshake it expects answered."""

    name: str
    event_type: tuple[str, ...]
    """Where the event type is (``json:``/``header:`` expressions), tried in order."""
    event_id: tuple[str, ...]
    """Where the provider's event id is, tried in order; empty: no dedup by default."""
    build: Builder
    signer: Signer
    answer: Handshake | None = None
    needs_secret: bool = True
    ip_ranges: tuple[str, ...] = ()
    """The CIDRs the provider says its webhooks come from, where it publishes them."""
    docs: str = ""
    """The provider's page that specifies how its webhooks are signed."""
    verify_keys: tuple[str, ...] = ("secrets",)
    """The ``[verify]`` keys a source of this provider sets (docs/providers.md)."""
    greetings: tuple[Greeting, ...] = ()
    """Handshakes answered instead of stored, beside ``answer`` (GET challenges...)."""
    request_signer: Callable[[Settings, str, bytes, int], dict[str, str]] | None = None
    """For providers that sign the URL (Twilio, Square, HubSpot, Trello, Contentful): the
    headers for a POST of ``body`` to that URL at ``now``; ``signer`` is then not used."""
    prepare: Callable[[Settings, bytes, int], bytes] | None = None
    """For ``hookgate send``: the body as the provider would send it, for providers
    that sign fields inside the body (Mailgun's token, Linear's timestamp)."""
    tolerance: float | None = None
    """The timestamp window the provider documents, applied by ``provider = NAME``
    when the source sets no ``tolerance``."""

    def verifier(self, settings: Settings) -> Verifier:
        """The verifier for a source's ``[verify]`` table, its keys derived now.

        Raises ``ValueError`` for a table that cannot verify anything (no secrets, a
        secret of the wrong form, an unusable ``signed_payload``); the message names
        the key but never shows a secret.
        """
        if self.needs_secret and not settings.secrets:
            raise ValueError(f'scheme "{self.name}" needs at least one secret')
        return self.build(settings)

    def sign(self, settings: Settings, body: bytes, now: int) -> dict[str, str]:
        """The headers with which this provider signs ``body`` at ``now`` (unix seconds).

        Signs with the first of ``settings.secrets``; what it signs, ``verifier(settings)``
        accepts. Call ``verifier`` first: it rejects the tables that cannot sign.
        """
        return self.signer(settings, body, now)

    def sign_request(self, settings: Settings, url: str, body: bytes, now: int) -> dict[str, str]:
        """The headers with which this provider signs a POST of ``body`` to ``url``."""
        if self.request_signer is not None:
            return self.request_signer(settings, url, body, now)
        return self.sign(settings, body, now)

    def prepared(self, settings: Settings, body: bytes, now: int) -> bytes:
        """``body`` as this provider would send it at ``now``, before ``sign``."""
        return body if self.prepare is None else self.prepare(settings, body, now)

    @property
    def has_handshake(self) -> bool:
        """Does this provider send handshakes that ``handshake`` may answer?"""
        return self.answer is not None or bool(self.greetings)

    def all_greetings(self) -> tuple[Greeting, ...]:
        """Every handshake of this provider, ``answer`` (a signed POST) included."""
        if self.answer is None:
            return self.greetings
        answer = self.answer

        def build(settings: Settings) -> Greeter:
            def greet(request: Request, now: float) -> Answer | None:
                body = answer(request.headers, request.body)
                return None if body is None else Answer(body)

            return greet

        return (Greeting("POST", True, build), *self.greetings)

    def check(self, settings: Settings) -> Callable[[Request, float], None]:
        """The check of a whole request, for a source's ``[verify]`` table.

        Uses the verifier's ``verify_request`` when it has one (schemes that sign the
        URL), else its ``verify``; ``ValueError`` as ``verifier``.
        """
        verifier = self.verifier(settings)
        verify_request = getattr(verifier, "verify_request", None)
        if verify_request is not None:
            return typing.cast(Callable[[Request, float], None], verify_request)
        return lambda request, now: verifier.verify(request.headers, request.body, now)

    def handshake(self, headers: Mapping[str, str], body: bytes) -> bytes | None:
        """For a verified request that is a handshake, the JSON body to answer 200 with
        (nothing is stored); None for an ordinary webhook."""
        return None if self.answer is None else self.answer(headers, body)


class UrlBound:
    """Base of the verifiers of schemes that sign the URL: they need the whole request."""

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Headers and body alone cannot be verified (see ``verify_request``)."""
        raise VerificationFailed("this scheme signs the URL")


def url_bound_signer(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    """The ``signer`` of schemes that sign the URL, which use ``request_signer``."""
    raise ValueError("this scheme signs the URL: sign with sign_request")


def text_answer(value: str) -> Answer:
    """A challenge echoed as plain text, never sniffed as HTML by a browser."""
    return Answer(
        value.encode(),
        content_type="text/plain",
        headers=(("X-Content-Type-Options", "nosniff"),),
    )


def challenge(value: str | None, *, max_length: int = 256, printable: bool = False) -> str:
    """A handshake's challenge, checked before it is echoed: present, at most
    ``max_length`` characters, and URL-safe token characters (or, with ``printable``,
    any printable ASCII); else ``HandshakeRefused`` 400."""
    if not value:
        raise HandshakeRefused(400, "invalid_handshake", "the challenge is missing")
    allowed = _PRINTABLE if printable else _TOKEN
    if len(value) > max_length or allowed.fullmatch(value) is None:
        raise HandshakeRefused(400, "invalid_handshake", "the challenge is malformed")
    return value


def first_secret(settings: Settings) -> str:
    """The secret a signer signs with."""
    return settings.secrets[0] if settings.secrets else ""


# -- request parsing ------------------------------------------------------------------


def header(headers: Mapping[str, str], name: str) -> str:
    """The value of header ``name``; missing or non-ASCII fails verification."""
    value = headers.get(name)
    if value is None:
        raise VerificationFailed("missing header")
    # Every header these schemes read is ASCII by spec; rejecting the rest early means
    # the code below can encode without a failure path.
    if not value.isascii():
        raise VerificationFailed("malformed header")
    return value


def check_timestamp(value: str, now: float, tolerance: float) -> None:
    """Pass if ``value`` is unix seconds within ``tolerance`` of ``now``, either way."""
    # isdigit() on an ASCII string is exactly [0-9]: no sign, space, "_" or exponent,
    # which int() or float() would otherwise accept.
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
        raise VerificationFailed("malformed timestamp")
    timestamp = int(value)
    if timestamp < now - tolerance:
        raise VerificationFailed("stale timestamp")
    if timestamp > now + tolerance:
        raise VerificationFailed("future timestamp")


def from_hex(text: str) -> bytes:
    """Decode a hex signature (either case); anything else fails verification."""
    try:
        # Unlike bytes.fromhex, a2b_hex takes no whitespace; both cases of a-f are fine.
        return binascii.a2b_hex(text)
    except ValueError:  # binascii.Error, and non-ASCII input
        raise VerificationFailed("malformed signature") from None


def from_base64(text: str) -> bytes:
    """Decode a padded base64 signature; anything else fails verification."""
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, and non-ASCII input
        raise VerificationFailed("malformed signature") from None


def to_base64(data: bytes) -> str:
    """Padded standard base64, as most signature headers carry it."""
    return base64.b64encode(data).decode()


# -- keyed MACs and shared secrets ------------------------------------------------------


def keyed(keys: Iterable[bytes], algorithm: str) -> tuple[hmac.HMAC, ...]:
    """An HMAC object per key, already fed its key."""
    # Copying one skips re-deriving the key pads on every request.
    return tuple(hmac.new(key, digestmod=algorithm) for key in keys)


def match(macs: Sequence[hmac.HMAC], signatures: Sequence[bytes], *parts: bytes) -> None:
    """Pass if the MAC of ``parts`` under any key equals any of ``signatures``."""
    for mac_key in macs:
        running = mac_key.copy()
        for part in parts:
            if part:  # "{body}" alone: before and after it are empty
                running.update(part)
        expected = running.digest()
        for signature in signatures:
            if hmac.compare_digest(expected, signature):
                return
    raise VerificationFailed("no signature matched")


def mac(key: bytes, algorithm: str, *parts: bytes) -> bytes:
    """The HMAC of ``parts`` under ``key``: what a signer sends."""
    digest = hmac.new(key, digestmod=algorithm)
    for part in parts:
        digest.update(part)
    return digest.digest()


class SecretMatcher:
    """Compares a credential sent as is (a token, a password) with every secret."""

    def __init__(self, secrets: Iterable[bytes]) -> None:
        # Comparing SHA-256 digests, not the values, keeps the comparison constant time
        # even when lengths differ, so the time taken does not leak a secret's length.
        self._hashed = tuple(hashlib.sha256(secret).digest() for secret in secrets)

    def check(self, given: bytes) -> None:
        """Pass if ``given`` is one of the secrets, in constant time."""
        digest = hashlib.sha256(given).digest()
        if not any(hmac.compare_digest(digest, h) for h in self._hashed):
            raise VerificationFailed("no credentials matched")


# -- one HMAC in one header: the generic scheme and its presets -------------------------


@dataclass(frozen=True, slots=True)
class HmacShape:
    """Where and how a provider puts an HMAC of the body (and maybe a timestamp) in a
    header: the generic ``hmac`` scheme's options, and the fixed shape of GitHub,
    Shopify and Slack."""

    header: str
    algorithm: str = "sha256"
    encoding: str = "hex"
    """``hex`` or ``base64``."""
    prefix: str = ""
    timestamp_header: str | None = None
    signed_payload: str = "{body}"

    def check(self) -> tuple[bytes, bytes]:
        """What is signed before and after the body; ``ValueError`` for a template
        that cannot work."""
        parts = self.signed_payload.split("{body}")
        if len(parts) != 2:
            raise ValueError('signed_payload must contain "{body}" exactly once')
        has_timestamp = "{timestamp}" in self.signed_payload
        if self.timestamp_header is None and has_timestamp:
            raise ValueError('signed_payload uses "{timestamp}" but timestamp_header is not set')
        if self.timestamp_header is not None and not has_timestamp:
            # An unsigned timestamp could be rewritten by anyone: no replay protection.
            raise ValueError('timestamp_header is set but signed_payload lacks "{timestamp}"')
        return parts[0].encode(), parts[1].encode()

    def sign(self, secret: str, body: bytes, now: int) -> dict[str, str]:
        """The signature header (and timestamp header) for ``body`` at ``now``."""
        before, after = self.check()
        stamp = str(now).encode()
        if self.timestamp_header is not None:
            before = before.replace(b"{timestamp}", stamp)
            after = after.replace(b"{timestamp}", stamp)
        digest = mac(secret.encode(), self.algorithm, before, body, after)
        encoded = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()
        headers = {self.header: self.prefix + encoded}
        if self.timestamp_header is not None:
            headers[self.timestamp_header] = str(now)
        return headers


class HmacVerifier:
    """Checks an ``HmacShape`` signature, and its timestamp when the shape has one."""

    def __init__(self, shape: HmacShape, secrets: Sequence[str], tolerance: float) -> None:
        self._before, self._after = shape.check()
        self._macs = keyed((s.encode() for s in secrets), shape.algorithm)
        self._header = shape.header
        self._decode = from_hex if shape.encoding == "hex" else from_base64
        self._prefix = shape.prefix
        self._timestamp_header = shape.timestamp_header
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the signature header, and the timestamp when the scheme has one."""
        value = header(headers, self._header)
        if not value.startswith(self._prefix):
            raise VerificationFailed("malformed signature")
        signature = self._decode(value[len(self._prefix) :])
        before, after = self._before, self._after
        if self._timestamp_header is not None:
            timestamp = header(headers, self._timestamp_header)
            check_timestamp(timestamp, now, self._tolerance)
            stamp = timestamp.encode()
            before = before.replace(b"{timestamp}", stamp)
            after = after.replace(b"{timestamp}", stamp)
        match(self._macs, (signature,), before, body, after)


def hmac_preset(
    name: str,
    shape: HmacShape,
    *,
    event_type: tuple[str, ...],
    event_id: tuple[str, ...],
    answer: Handshake | None = None,
    greetings: tuple[Greeting, ...] = (),
    docs: str = "",
    ip_ranges: tuple[str, ...] = (),
    tolerance: float | None = None,
    verify_keys: tuple[str, ...] = ("secrets",),
) -> Provider:
    """A provider whose requests carry an HMAC of a fixed ``shape``."""
    return Provider(
        name=name,
        event_type=event_type,
        event_id=event_id,
        build=lambda settings: HmacVerifier(shape, settings.secrets, settings.tolerance),
        signer=lambda settings, body, now: shape.sign(first_secret(settings), body, now),
        answer=answer,
        greetings=greetings,
        docs=docs,
        ip_ranges=ip_ranges,
        tolerance=tolerance,
        verify_keys=verify_keys,
    )
