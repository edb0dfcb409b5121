"""Public keys for the schemes that sign with a key pair (SendGrid's ECDSA P-256,
Ed25519 for Discord and others, PayPal's RSA certificate), read with ``cryptography``.

A ``[verify]`` table lists them in ``public_keys``, as the provider shows them: hex or
base64 of the raw or DER key, or PEM (a public key or a certificate). A private key
(PEM, PKCS#8) is accepted where a public key is expected, standing for its public
half: that is how ``hookgate send`` signs and the same table verifies. Every error is
a ``ValueError`` that names the key by its position, never its value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)

from hookgate.errors import VerificationFailed

_ED25519_RAW = 32


def _decode(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not hex, base64 or PEM") from None


def _public(key: PublicKeyTypes | PrivateKeyTypes) -> PublicKeyTypes:
    if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.public_key()
    return key  # type: ignore[return-value]  # a public key already


def _load(texts: Sequence[str], fits: Callable[[object], bool], expected: str) -> list[Any]:
    """The public keys in ``texts``, each of which must ``fits``."""
    loaded = []
    for i, text in enumerate(texts):
        try:
            key = _public(_read(text))
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"public_keys[{i}]: expected {expected} ({exc})") from None
        if not fits(key):
            raise ValueError(f"public_keys[{i}]: expected {expected}")
        loaded.append(key)
    if not loaded:
        raise ValueError(f"needs at least one public key ({expected}) in public_keys")
    return loaded


def _read(text: str) -> PublicKeyTypes | PrivateKeyTypes:
    """The key in ``text``: PEM (a public key, a private key or a certificate), else
    hex or base64 of a raw Ed25519 key or of a DER public key."""
    stripped = text.strip()
    if not stripped.startswith("-----BEGIN"):
        raw = _decode(stripped)
        if len(raw) == _ED25519_RAW:
            return ed25519.Ed25519PublicKey.from_public_bytes(raw)
        return serialization.load_der_public_key(raw)
    first_line = stripped.split("\n", 1)[0]
    data = stripped.encode()
    if "CERTIFICATE" in first_line:
        return x509.load_pem_x509_certificate(data).public_key()
    if "PRIVATE KEY" in first_line:
        return serialization.load_pem_private_key(data, password=None)
    return serialization.load_pem_public_key(data)


def signing_key(settings_keys: Sequence[str]) -> PrivateKeyTypes:
    """The private key ``hookgate send`` signs with: the first of ``public_keys``,
    which must then be a PEM private key."""
    if not settings_keys:
        raise ValueError("needs a PEM private key in public_keys to sign with")
    return private_key(settings_keys[0])


def ed25519_keys(texts: Sequence[str]) -> tuple[ed25519.Ed25519PublicKey, ...]:
    """Ed25519 public keys: 32 raw bytes in hex or base64, DER, or PEM."""
    keys = _load(texts, lambda k: isinstance(k, ed25519.Ed25519PublicKey), "an Ed25519 public key")
    return tuple(keys)


def p256_keys(texts: Sequence[str]) -> tuple[ec.EllipticCurvePublicKey, ...]:
    """ECDSA P-256 public keys: base64 DER (as SendGrid shows it) or PEM."""

    def fits(key: object) -> bool:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)

    return tuple(_load(texts, fits, "an ECDSA P-256 public key"))


def rsa_keys(texts: Sequence[str]) -> tuple[rsa.RSAPublicKey, ...]:
    """RSA public keys: a PEM certificate (as PayPal serves it) or public key."""
    expected = "an RSA certificate or public key (PEM)"
    return tuple(_load(texts, lambda k: isinstance(k, rsa.RSAPublicKey), expected))


def private_key(text: str) -> PrivateKeyTypes:
    """The PEM private key ``hookgate send`` signs with."""
    try:
        return serialization.load_pem_private_key(text.strip().encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("expected a PEM private key (PKCS#8) to sign with") from None


def check_ed25519(
    keys: Sequence[ed25519.Ed25519PublicKey], signature: bytes, message: bytes
) -> None:
    """Pass if any key verifies ``signature`` of ``message``."""
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return
    raise VerificationFailed("no signature matched")


def check_ecdsa(
    keys: Sequence[ec.EllipticCurvePublicKey], signature: bytes, message: bytes
) -> None:
    """Pass if any key verifies the DER ECDSA-SHA256 ``signature`` of ``message``."""
    for key in keys:
        try:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return
    raise VerificationFailed("no signature matched")


def check_rsa(keys: Sequence[rsa.RSAPublicKey], signature: bytes, message: bytes) -> None:
    """Pass if any key verifies the PKCS#1 v1.5 SHA-256 ``signature`` of ``message``."""
    for key in keys:
        try:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return
    raise VerificationFailed("no signature matched")
