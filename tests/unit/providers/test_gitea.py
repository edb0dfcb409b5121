"""Gitea, checked against the algorithm its documentation specifies.

https://docs.gitea.com/usage/webhooks
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: hex HMAC-SHA256 of the raw
body in ``X-Gitea-Signature``.
"""

from __future__ import annotations

import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "gitea-webhook-secret-0123456789"
BODY = b'{"ref": "refs/heads/main", "repository": {"full_name": "org/repo"}}'


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha256")
    return headers(
        X_Gitea_Signature="" + mac.hex(),
        X_Gitea_Event="push",
        X_Gitea_Delivery="f6266f16-1bf3-46a5-9ea4-602e06ead473",
    )


def test_gitea_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("gitea", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("gitea", signed(), BODY) == ("push", "f6266f16-1bf3-46a5-9ea4-602e06ead473")


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_gitea_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("gitea", SECRET), signed(secret=secret), body, reason)


def test_gitea_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["X-Gitea-Signature"]
    hdrs["X-Gitea-Signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("gitea", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["X-Gitea-Signature"]
    rejects(make("gitea", SECRET), hdrs, BODY, "missing header")
