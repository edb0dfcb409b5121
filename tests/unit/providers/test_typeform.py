"""Typeform, checked against the algorithm its documentation specifies.

https://www.typeform.com/developers/webhooks/secure-your-webhooks/
gives no signed example to copy, so the signature is computed here, independently of
hookgate, from that page's description: base64 HMAC-SHA256 of the raw
body in ``Typeform-Signature`` after 'sha256='.
"""

from __future__ import annotations

import base64
import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "typeform-webhook-secret-0123456789"
BODY = (
    b'{"event_id": "01HABCDEF", "event_type": "form_response", "form_respons'
    b'e": {"form_id": "lT4Z3j"}}'
)


def signed(body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body, "sha256")
    return headers(Typeform_Signature="sha256=" + base64.b64encode(mac).decode())


def test_typeform_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("typeform", "old-secret", SECRET).verify(signed(), BODY, now)
    assert extracted("typeform", signed(), BODY) == ("form_response", "01HABCDEF")


@pytest.mark.parametrize(
    ("body", "secret", "reason"),
    [
        (BODY + b" ", SECRET, "no signature matched"),
        (BODY.replace(b"{", b"{ "), SECRET, "no signature matched"),
        (BODY, "another-secret", "no signature matched"),
    ],
    ids=["appended", "changed", "wrong-secret"],
)
def test_typeform_rejects_a_tampered_request(body: bytes, secret: str, reason: str) -> None:
    rejects(make("typeform", SECRET), signed(secret=secret), body, reason)


def test_typeform_rejects_a_tampered_signature() -> None:
    hdrs = signed()
    value = hdrs["Typeform-Signature"]
    hdrs["Typeform-Signature"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make("typeform", SECRET), hdrs, BODY, "no signature matched")
    del hdrs["Typeform-Signature"]
    rejects(make("typeform", SECRET), hdrs, BODY, "missing header")
