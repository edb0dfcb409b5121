"""Sentry, checked against the algorithm its documentation specifies.

https://docs.sentry.io/organization/integrations/integration-platform/webhooks/
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: hex HMAC-SHA256 of the raw
body in ``Sentry-Hook-Signature``.
"""

from __future__ import annotations

import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "sentry-webhook-secret-0123456789"
BODY = b'{"action": "created", "data": {"issue": {"id": "1170820242"}}}'


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha256")
    return headers(
        Sentry_Hook_Signature="" + mac.hex(),
        Sentry_Hook_Resource="issue",
        Request_ID="d5ba4c1a-0000-4000-8000-3f1c4e7c1a2b",
    )


def test_sentry_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("sentry", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("sentry", signed(), BODY) == ("issue", "d5ba4c1a-0000-4000-8000-3f1c4e7c1a2b")


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_sentry_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("sentry", SECRET), signed(secret=secret), body, reason)


def test_sentry_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["Sentry-Hook-Signature"]
    hdrs["Sentry-Hook-Signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("sentry", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["Sentry-Hook-Signature"]
    rejects(make("sentry", SECRET), hdrs, BODY, "missing header")
