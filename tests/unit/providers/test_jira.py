"""Jira, checked against the algorithm its documentation specifies.

https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: hex HMAC-SHA256 of the raw
body in ``X-Hub-Signature`` after 'sha256='.
"""

from __future__ import annotations

import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "jira-webhook-secret-0123456789"
BODY = (
    b'{"timestamp": 1700000000000, "webhookEvent": "jira:issue_created", "issue": {"key": "HG-1"}}'
)


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha256")
    return headers(X_Hub_Signature="sha256=" + mac.hex(), X_Atlassian_Webhook_Identifier="10101")


def test_jira_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("jira", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("jira", signed(), BODY) == ("jira:issue_created", "10101")


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_jira_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("jira", SECRET), signed(secret=secret), body, reason)


def test_jira_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["X-Hub-Signature"]
    hdrs["X-Hub-Signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("jira", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["X-Hub-Signature"]
    rejects(make("jira", SECRET), hdrs, BODY, "missing header")
