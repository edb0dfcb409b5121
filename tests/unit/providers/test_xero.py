"""Xero, checked against the algorithm of its documentation: ``x-xero-signature`` is
the base64 HMAC-SHA256 of the raw body, keyed with the webhook key; and its *intent to
receive* check, which must get 200 for a correctly signed payload and 401 otherwise.
The page gives no signed example, so the signatures are computed here, independently
of hookgate; the bodies follow the page's examples.

https://developer.xero.com/documentation/guides/webhooks/configuring-your-server/
"""

from __future__ import annotations

import base64
import hmac

import pytest
from multidict import CIMultiDict

from hookgate import providers

from .conftest import extracted, headers, make, rejects, settings
from .handshakes import greet

KEY = "OSd0eLlVIY9ZhViEqlDUh4+6n6M+Lo+eDaEJheJ6OCCgWwIz2D3JIAU6jPMipHRbgKTLz2uJ+xiACXGDBLrgdA=="
BODY = (
    b'{"events": [{"resourceUrl": "https://api.xero.com/api.xro/2.0/Contacts/717f2bfc",'
    b' "resourceId": "717f2bfc-c6d4-41fd-b238-3f2f0c0cf777", "eventDateUtc":'
    b' "2017-06-21T01:15:39.902", "eventType": "UPDATE", "eventCategory": "CONTACT",'
    b' "tenantId": "c2cc9b6e-9458-4c7d-93cc-f02b81b0594f", "tenantType": "ORGANISATION"}],'
    b' "lastEventSequence": 1, "firstEventSequence": 1, "entropy": "S0m3r4Nd0mt3xt"}'
)
INTENT_TO_RECEIVE = (
    b'{"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": "FMLHZNKCVK"}'
)


def signed(body: bytes = BODY, key: str = KEY) -> CIMultiDict[str]:
    mac = hmac.digest(key.encode(), body, "sha256")
    return headers(x_xero_signature=base64.b64encode(mac).decode())


def answer(body: bytes) -> providers.Answer | None:
    """What the ingress answers once the request's signature checked out."""
    return greet("xero", settings("xero", KEY), method="POST", headers=signed(body), body=body)


def test_xero_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("xero", "old-key", KEY).verify(signed(), BODY, now)
    assert extracted("xero", signed(), BODY) == ("CONTACT", None)
    assert answer(BODY) is None


@pytest.mark.parametrize(
    ("hdrs", "body"),
    [(signed(), BODY.replace(b"UPDATE", b"CREATE")), (signed(key="another-key"), BODY)],
    ids=["tampered", "wrong-key"],
)
def test_xero_rejects(hdrs: CIMultiDict[str], body: bytes) -> None:
    rejects(make("xero", KEY), hdrs, body, "no signature matched")


def test_intent_to_receive_is_answered_200_empty_when_signed(now: int) -> None:
    make("xero", KEY).verify(signed(INTENT_TO_RECEIVE), INTENT_TO_RECEIVE, now)
    (greeting,) = providers.get("xero").all_greetings()
    assert (greeting.method, greeting.signed) == ("POST", True)
    reply = answer(INTENT_TO_RECEIVE)
    assert reply is not None
    assert (reply.status, reply.body, reply.content_type) == (200, b"", "text/plain")


def test_intent_to_receive_with_a_wrong_signature_is_refused() -> None:
    # Xero sends these on purpose and expects 401, which a failed verification gets.
    forged = signed(INTENT_TO_RECEIVE, key="not-the-key")
    rejects(make("xero", KEY), forged, INTENT_TO_RECEIVE, "no signature matched")


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"events": null}', b"{}"])
def test_anything_else_is_no_intent_to_receive(body: bytes) -> None:
    assert answer(body) is None
