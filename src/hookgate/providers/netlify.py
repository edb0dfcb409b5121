"""Netlify (outgoing deploy webhooks with a JWS secret): ``X-Webhook-Signature`` is a
JWS (HS256) whose claims are ``iss: "netlify"`` and ``sha256``, the hex SHA-256 of
the body, signed with the secret set on the notification.

Decoded with PyJWT, which pins the algorithm (no ``none``, no key confusion) and
checks the issuer and any ``exp``/``nbf``; the body's digest is compared here.
RFC 7518 requires an HS256 key of at least 32 bytes, and so does hookgate.
Netlify's token carries no time of its own and the deploy id repeats across a
deploy's events, so there is neither a replay window nor a default event id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import jwt

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_HEADER = "X-Webhook-Signature"
_ISSUER = "netlify"
_MIN_KEY_BYTES = 32


class _NetlifyVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        if any(len(s.encode()) < _MIN_KEY_BYTES for s in secrets):
            raise ValueError("a Netlify JWS secret must be at least 32 bytes (RFC 7518, HS256)")
        self._keys = tuple(s.encode() for s in secrets)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Decode the token with each secret; its sha256 claim must be the body's."""
        token = common.header(headers, _HEADER)
        for key in self._keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["HS256"],
                    issuer=_ISSUER,
                    options={"require": ["iss", "sha256"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError:
                raise VerificationFailed("malformed signature") from None
            digest = claims["sha256"]
            expected = hashlib.sha256(body).hexdigest()
            if not (isinstance(digest, str) and hmac.compare_digest(digest, expected)):
                raise VerificationFailed("body does not match the signature")
            return
        raise VerificationFailed("no signature matched")


def _verifier(settings: Settings) -> common.Verifier:
    return _NetlifyVerifier(settings.secrets)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    claims = {"iss": _ISSUER, "sha256": hashlib.sha256(body).hexdigest()}
    return {_HEADER: jwt.encode(claims, common.first_secret(settings), algorithm="HS256")}


PROVIDER = common.Provider(
    name="netlify",
    # A deploy's state: building, ready, error, ...
    event_type=("json:state",),
    event_id=(),
    build=_verifier,
    signer=_sign,
    docs="https://docs.netlify.com/site-deploys/deploy-notifications/#payload-signature",
)
