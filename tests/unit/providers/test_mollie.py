"""Mollie (next-gen webhooks), checked against the algorithm its documentation specifies.

https://docs.mollie.com/reference/webhooks-best-practices
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: hex HMAC-SHA256 of the raw
body in ``X-Mollie-Signature`` after 'sha256='.
"""

from __future__ import annotations

import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "mollie-webhook-secret-0123456789"
BODY = (
    b'{"resource": "event", "id": "event_GvJ8WHrp5isUdRub9CJyH", "type": "pa'
    b'yment-link.paid", "entityId": "pl_qng5gbbv8NAZ5gpM5ZYgx"}'
)


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha256")
    return headers(X_Mollie_Signature="sha256=" + mac.hex())


def test_mollie_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("mollie", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("mollie", signed(), BODY) == (
        "payment-link.paid",
        "event_GvJ8WHrp5isUdRub9CJyH",
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
def test_mollie_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("mollie", SECRET), signed(secret=secret), body, reason)


def test_mollie_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["X-Mollie-Signature"]
    hdrs["X-Mollie-Signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("mollie", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["X-Mollie-Signature"]
    rejects(make("mollie", SECRET), hdrs, BODY, "missing header")
