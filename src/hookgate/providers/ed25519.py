"""Scheme "ed25519", for any other Ed25519 signer: ``header`` carries ``prefix`` + the hex
or base64 Ed25519 signature of ``signed_payload`` (``{body}``, or with a
``timestamp_header`` a template such as ``{timestamp}{body}`` or ``{timestamp}.{body}``),
checked with the signer's public keys in ``public_keys``: the generic ``hmac`` scheme's
options, with a key pair instead of a shared secret."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ed25519

from hookgate.errors import VerificationFailed
from hookgate.providers import common, keys

if TYPE_CHECKING:
    from hookgate.providers.common import Settings


def _shape(settings: Settings) -> common.HmacShape:
    if not settings.header:
        raise ValueError('scheme "ed25519" needs the header that carries the signature')
    return common.HmacShape(
        header=settings.header,
        encoding=settings.encoding,
        prefix=settings.prefix,
        timestamp_header=settings.timestamp_header,
        signed_payload=settings.signed_payload,
    )


class _Ed25519Verifier:
    def __init__(self, shape: common.HmacShape, public_keys: Sequence[str], tolerance: float):
        self._before, self._after = shape.check()
        self._shape = shape
        self._keys = keys.ed25519_keys(public_keys)
        self._decode = common.from_hex if shape.encoding == "hex" else common.from_base64
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the signature of the signed payload, and its timestamp if it has one."""
        value = common.header(headers, self._shape.header)
        if not value.startswith(self._shape.prefix):
            raise VerificationFailed("malformed signature")
        signature = self._decode(value[len(self._shape.prefix) :])
        timestamp = None
        if self._shape.timestamp_header is not None:
            timestamp = common.header(headers, self._shape.timestamp_header)
            common.check_timestamp(timestamp, now, self._tolerance)
        message = _message(self._before, body, self._after, timestamp)
        keys.check_ed25519(self._keys, signature, message)


def _message(before: bytes, body: bytes, after: bytes, timestamp: str | None) -> bytes:
    if timestamp is not None:
        before = before.replace(b"{timestamp}", timestamp.encode())
        after = after.replace(b"{timestamp}", timestamp.encode())
    return before + body + after


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    shape = _shape(settings)
    key = keys.signing_key(settings.public_keys)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("expected an Ed25519 private key to sign with")
    before, after = shape.check()
    stamp = str(now) if shape.timestamp_header is not None else None
    signature = key.sign(_message(before, body, after, stamp))
    encoded = signature.hex() if shape.encoding == "hex" else common.to_base64(signature)
    headers = {shape.header: shape.prefix + encoded}
    if shape.timestamp_header is not None:
        headers[shape.timestamp_header] = str(now)
    return headers


PROVIDER = common.Provider(
    name="ed25519",
    event_type=(),
    event_id=(),
    build=lambda settings: _Ed25519Verifier(
        _shape(settings), settings.public_keys, settings.tolerance
    ),
    signer=_sign,
    needs_secret=False,
    verify_keys=("public_keys", "header"),
)
