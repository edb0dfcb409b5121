"""Asana: ``X-Hook-Signature: <hex HMAC-SHA256 of the body>`` keyed with the secret that
Asana sends once, in the ``X-Hook-Secret`` header of the handshake that creating the
webhook triggers; the handshake is answered 200 with the same header echoed.

Asana shows that secret nowhere else, so it must be recorded when it arrives, and
recording a secret from an unsigned request is only safe under narrow rules:

- A handshake whose ``X-Hook-Secret`` equals one of ``secrets`` is echoed (Asana
  repeats the handshake when the webhook is re-created with a known secret).
- Otherwise it is *enrolled* only while the source has no secret at all and its
  ``handshake_secret_file`` does not exist: the secret is written there (created
  exclusively, mode 0600, never overwritten), echoed, and from then on checks every
  event (and is read as a secret at every load). The first handshake wins: a forged
  one sent before Asana's makes Asana's own handshake fail (403), so creating the
  webhook fails visibly; delete the file and create it again.
- Any other handshake is refused 403. The secret is never logged, stored with a
  message or shown in an answer other than the echo itself.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping, Sequence

from hookgate.errors import VerificationFailed
from hookgate.providers import common
from hookgate.providers.common import Answer, Greeter, HandshakeRefused, Request, Settings

_HEADER = "X-Hook-Secret"
_MAX_SECRET = 256


class _AsanaVerifier:
    """The HMAC check, with the secrets configured or, once enrolled, the file's."""

    def __init__(self, secrets: Sequence[str], enrolled_file: str | None) -> None:
        self._verifier: common.HmacVerifier | None = None
        if secrets:
            self._verifier = common.HmacVerifier(_SHAPE, secrets, 0)
        self._enrolled_file = enrolled_file

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check X-Hook-Signature; before enrollment, nothing verifies."""
        if self._verifier is None and self._enrolled_file is not None:
            secret = _read(self._enrolled_file)
            if secret is not None:
                self._verifier = common.HmacVerifier(_SHAPE, [secret], 0)
        if self._verifier is None:
            raise VerificationFailed("no secret enrolled yet")
        self._verifier.verify(headers, body, now)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().rstrip("\r\n") or None
    except FileNotFoundError:
        return None


def _enroll(path: str, secret: str) -> bool:
    """Write ``secret`` to ``path`` unless it exists; False when it did."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(secret + "\n")
    return True


def _same(path: str, secret: str) -> bool:
    """Is ``secret`` the one enrolled in ``path`` (Asana repeating its handshake)?"""
    enrolled = _read(path)
    return enrolled is not None and hmac.compare_digest(enrolled.encode(), secret.encode())


def _handshake(settings: Settings) -> Greeter:
    known = common.SecretMatcher(s.encode() for s in settings.secrets)
    enroll_to = None if settings.secrets else settings.handshake_secret_file

    def greet(request: Request, now: float) -> Answer | None:
        secret = request.headers.get(_HEADER)
        if secret is None:
            return None
        if not secret or len(secret) > _MAX_SECRET or not secret.isascii():
            raise HandshakeRefused(400, "invalid_handshake", f"{_HEADER} is malformed")
        echo = Answer(b"", content_type="application/octet-stream", headers=((_HEADER, secret),))
        try:
            known.check(secret.encode())
        except VerificationFailed:
            pass
        else:
            return echo
        if enroll_to is not None and (_enroll(enroll_to, secret) or _same(enroll_to, secret)):
            return echo
        raise HandshakeRefused(403, "handshake_refused", "this source already has a secret")

    return greet


def _verifier(settings: Settings) -> common.Verifier:
    if not settings.secrets and not settings.handshake_secret_file:
        raise ValueError(
            'scheme "asana" needs at least one secret, or handshake_secret_file to record it'
        )
    return _AsanaVerifier(settings.secrets, settings.handshake_secret_file)


_SHAPE = common.HmacShape(header="X-Hook-Signature")

PROVIDER = common.Provider(
    name="asana",
    event_type=(),
    event_id=(),
    build=_verifier,
    signer=lambda settings, body, now: _SHAPE.sign(common.first_secret(settings), body, now),
    needs_secret=False,
    verify_keys=("handshake_secret_file",),
    greetings=(common.Greeting("POST", signed=False, build=_handshake),),
    docs="https://developers.asana.com/docs/webhooks-guide",
)
