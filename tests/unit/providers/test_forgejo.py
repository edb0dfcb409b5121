"""Forgejo, checked against the algorithm its documentation specifies.

https://forgejo.org/docs/latest/user/webhooks/
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: hex HMAC-SHA256 of the raw
body in ``X-Forgejo-Signature``.
"""

from __future__ import annotations

import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "forgejo-webhook-secret-0123456789"
BODY = b'{"ref": "refs/heads/main", "repository": {"full_name": "org/repo"}}'


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha256")
    return headers(
        X_Forgejo_Signature="" + mac.hex(),
        X_Forgejo_Event="push",
        X_Forgejo_Delivery="9a1b2c3d-0000-4000-8000-000000000001",
    )


def test_forgejo_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("forgejo", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("forgejo", signed(), BODY) == ("push", "9a1b2c3d-0000-4000-8000-000000000001")


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_forgejo_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("forgejo", SECRET), signed(secret=secret), body, reason)


def test_forgejo_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["X-Forgejo-Signature"]
    hdrs["X-Forgejo-Signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("forgejo", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["X-Forgejo-Signature"]
    rejects(make("forgejo", SECRET), hdrs, BODY, "missing header")
