"""Vercel, checked against the algorithm its documentation specifies.

https://vercel.com/docs/webhooks/webhooks-api#securing-webhooks
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: hex HMAC-SHA1 of the raw
body in ``x-vercel-signature``.
"""

from __future__ import annotations

import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "vercel-webhook-secret-0123456789"
BODY = b'{"id": "evt_2d0aCxh7ApcB7X", "type": "deployment.created", "payload": {}}'


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha1")
    return headers(x_vercel_signature="" + mac.hex())


def test_vercel_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("vercel", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("vercel", signed(), BODY) == ("deployment.created", "evt_2d0aCxh7ApcB7X")


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_vercel_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("vercel", SECRET), signed(secret=secret), body, reason)


def test_vercel_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["x-vercel-signature"]
    hdrs["x-vercel-signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("vercel", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["x-vercel-signature"]
    rejects(make("vercel", SECRET), hdrs, BODY, "missing header")
