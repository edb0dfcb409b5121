"""Bitbucket, checked against the algorithm its documentation specifies.

https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: hex HMAC-SHA256 of the raw
body in ``X-Hub-Signature`` after 'sha256='.
"""

from __future__ import annotations

import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "bitbucket-webhook-secret-0123456789"
BODY = b'{"repository": {"full_name": "team/repo"}, "push": {"changes": []}}'


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha256")
    return headers(
        X_Hub_Signature="sha256=" + mac.hex(),
        X_Event_Key="repo:push",
        X_Request_UUID="5f0c1b3e-1d2a-4b5c-8d9e-0a1b2c3d4e5f",
    )


def test_bitbucket_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("bitbucket", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("bitbucket", signed(), BODY) == (
        "repo:push",
        "5f0c1b3e-1d2a-4b5c-8d9e-0a1b2c3d4e5f",
    )


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_bitbucket_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("bitbucket", SECRET), signed(secret=secret), body, reason)


def test_bitbucket_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["X-Hub-Signature"]
    hdrs["X-Hub-Signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("bitbucket", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["X-Hub-Signature"]
    rejects(make("bitbucket", SECRET), hdrs, BODY, "missing header")
