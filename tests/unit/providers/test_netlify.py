"""Netlify, checked against the JWS its documentation specifies: ``X-Webhook-Signature``
is an HS256 JWS with the claims ``iss: "netlify"`` and ``sha256`` (the hex SHA-256 of
the body). The tokens are built here by hand (base64url, HMAC), independently of the
PyJWT that hookgate decodes them with.

https://docs.netlify.com/site-deploys/deploy-notifications/#payload-signature
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "netlify-jws-secret-0123456789-abcdef"
BODY = b'{"id": "5ebc34bf4fea0b01f02efa3a", "state": "ready", "name": "www-example"}'


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(
    claims: dict[str, Any], secret: str = SECRET, header: dict[str, Any] | None = None
) -> str:
    head = b64url(orjson.dumps(header or {"alg": "HS256", "typ": "JWT"}))
    payload = b64url(orjson.dumps(claims))
    signature = hmac.digest(secret.encode(), f"{head}.{payload}".encode(), "sha256")
    return f"{head}.{payload}.{b64url(signature)}"


def claims(body: bytes = BODY, **extra: Any) -> dict[str, Any]:
    return {"iss": "netlify", "sha256": hashlib.sha256(body).hexdigest(), **extra}


def signed(value: str) -> CIMultiDict[str]:
    return headers(X_Webhook_Signature=value)


def test_netlify_accepts_its_jws_and_finds_its_event(now: int) -> None:
    make("netlify", "an-older-secret-of-32-bytes-or-more", SECRET).verify(
        signed(token(claims())), BODY, now
    )
    # The deploy id repeats across a deploy's notifications: no event id.
    assert extracted("netlify", signed(token(claims())), BODY) == ("ready", None)


@pytest.mark.parametrize(
    ("value", "body", "reason"),
    [
        (token(claims()), BODY.replace(b"ready", b"error"), "body does not match the signature"),
        (
            token(claims(), secret="another-secret-of-thirty-two-bytes!"),
            BODY,
            "no signature matched",
        ),
        (token(claims(), header={"alg": "HS512"}), BODY, "malformed signature"),
        (token(claims(iss="someone")), BODY, "malformed signature"),
        (token({"iss": "netlify"}), BODY, "malformed signature"),
        (token(claims(exp=1)), BODY, "malformed signature"),
        (
            b64url(b'{"alg":"none"}') + "." + b64url(orjson.dumps(claims())) + ".",
            BODY,
            "malformed signature",
        ),
        ("not a token", BODY, "malformed signature"),
    ],
    ids=[
        "tampered",
        "wrong-secret",
        "hs512",
        "issuer",
        "no-digest",
        "expired",
        "alg-none",
        "garbage",
    ],
)
def test_netlify_rejects(value: str, body: bytes, reason: str) -> None:
    rejects(make("netlify", SECRET), signed(value), body, reason)


def test_netlify_rejects_a_tampered_token() -> None:
    value = token(claims())
    head, _, signature = value.split(".")
    forged = b64url(orjson.dumps(claims(b"{}")))
    rejects(
        make("netlify", SECRET),
        signed(f"{head}.{forged}.{signature}"),
        b"{}",
        "no signature matched",
    )


def test_netlify_needs_a_secret_of_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        make("netlify", "short")
