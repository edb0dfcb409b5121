"""Scheme "hmac", for any other provider: ``header`` carries ``prefix`` + the hex or
base64 HMAC (``algorithm``) of ``signed_payload``, which is ``{body}`` or, with a
``timestamp_header``, a template such as ``{timestamp}.{body}``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings


def _shape(settings: Settings) -> common.HmacShape:
    if not settings.header:
        raise ValueError('scheme "hmac" needs the header that carries the signature')
    return common.HmacShape(
        header=settings.header,
        algorithm=settings.algorithm,
        encoding=settings.encoding,
        prefix=settings.prefix,
        timestamp_header=settings.timestamp_header,
        signed_payload=settings.signed_payload,
    )


def _verifier(settings: Settings) -> common.Verifier:
    return common.HmacVerifier(_shape(settings), settings.secrets, settings.tolerance)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    return _shape(settings).sign(common.first_secret(settings), body, now)


PROVIDER = common.Provider(
    name="hmac",
    event_type=(),
    event_id=(),
    build=_verifier,
    signer=_sign,
    verify_keys=("secrets", "header"),
)
