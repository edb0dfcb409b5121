"""Segment, checked against the algorithm its documentation specifies.

https://segment.com/docs/connections/destinations/catalog/webhooks/
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: hex HMAC-SHA1 of the raw
body in ``X-Signature``.
"""

from __future__ import annotations

import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "segment-webhook-secret-0123456789"
BODY = b'{"type": "track", "event": "Order Completed", "messageId": "ajs-next-1700000000000-abc"}'


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha1")
    return headers(X_Signature="" + mac.hex())


def test_segment_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("segment", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("segment", signed(), BODY) == ("Order Completed", "ajs-next-1700000000000-abc")


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_segment_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("segment", SECRET), signed(secret=secret), body, reason)


def test_segment_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["X-Signature"]
    hdrs["X-Signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("segment", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["X-Signature"]
    rejects(make("segment", SECRET), hdrs, BODY, "missing header")
