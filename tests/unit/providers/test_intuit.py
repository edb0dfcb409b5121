"""Intuit (QuickBooks Online), checked against the algorithm its documentation specifies.

https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks/managing-webhooks-notifications
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: base64 HMAC-SHA256 of the raw
body in ``intuit-signature``.
"""

from __future__ import annotations

import base64
import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "intuit-webhook-secret-0123456789"
BODY = (
    b'{"eventNotifications": [{"realmId": "1185883450", "dataChangeEvent": {'
    b'"entities": [{"name": "Customer", "id": "1", "operation": "Create"}]}}'
    b"]}"
)


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha256")
    return headers(intuit_signature="" + base64.b64encode(mac).decode())


def test_intuit_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("intuit", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("intuit", signed(), BODY) == ("Customer", None)


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_intuit_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("intuit", SECRET), signed(secret=secret), body, reason)


def test_intuit_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["intuit-signature"]
    hdrs["intuit-signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("intuit", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["intuit-signature"]
    rejects(make("intuit", SECRET), hdrs, BODY, "missing header")
