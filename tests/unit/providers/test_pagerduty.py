"""PagerDuty v3 webhooks, checked against the algorithm of its documentation: each
``v1=`` entry of ``X-PagerDuty-Signature`` is the hex HMAC-SHA256 of the raw body,
one entry per active secret during a rotation. The page gives no signed example, so
the signatures are computed here, independently of hookgate.

https://developer.pagerduty.com/docs/28e906a0bb2e8-verifying-signatures
"""

from __future__ import annotations

import hmac

import pytest

from .conftest import extracted, headers, make, rejects

SECRET = "pd-webhook-secret"
BODY = (
    b'{"event": {"id": "01BZZ7S2ZL8L7S8A8XHV3O3ZAP", "event_type": "incident.triggered",'
    b' "resource_type": "incident", "occurred_at": "2020-10-02T18:45:22.169Z",'
    b' "data": {"id": "PGR0VU2", "type": "incident"}}}'
)


def v1(body: bytes = BODY, secret: str = SECRET) -> str:
    return "v1=" + hmac.digest(secret.encode(), body, "sha256").hex()


def test_pagerduty_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    hdrs = headers(X_PagerDuty_Signature=v1())
    make("pagerduty", SECRET).verify(hdrs, BODY, now)
    assert extracted("pagerduty", hdrs, BODY) == (
        "incident.triggered",
        "01BZZ7S2ZL8L7S8A8XHV3O3ZAP",
    )


def test_pagerduty_accepts_any_entry_of_a_rotation(now: int) -> None:
    both = headers(X_PagerDuty_Signature=f"{v1(secret='new-secret')},{v1()}")
    make("pagerduty", SECRET).verify(both, BODY, now)
    make("pagerduty", "new-secret").verify(both, BODY, now)
    spaced = headers(X_PagerDuty_Signature=f"v2=abc, {v1()}")
    make("pagerduty", SECRET).verify(spaced, BODY, now)


@pytest.mark.parametrize(
    ("body", "signature", "reason"),
    [
        (BODY.replace(b"triggered", b"resolved"), v1(), "no signature matched"),
        (BODY, v1(secret="another"), "no signature matched"),
        (BODY, v1().replace("v1=", "v0="), "no signature matched"),
        (BODY, "v1=zz", "malformed signature"),
    ],
    ids=["tampered", "wrong-secret", "other-version", "not-hex"],
)
def test_pagerduty_rejects(body: bytes, signature: str, reason: str) -> None:
    rejects(make("pagerduty", SECRET), headers(X_PagerDuty_Signature=signature), body, reason)
