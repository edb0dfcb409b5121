"""Trello, checked against the algorithm of its documentation: ``X-Trello-Webhook`` is
the base64 HMAC-SHA1 of the raw body followed by the webhook's callback URL, keyed
with the application's secret. The page's sample is code, not a signed request, so
the signatures are computed here, independently of hookgate.

https://developer.atlassian.com/cloud/trello/guides/rest-api/webhooks/#webhook-signatures
"""

from __future__ import annotations

import base64
import hmac
import time

import pytest
from multidict import CIMultiDict

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import check, extracted, headers, make, request, settings
from .handshakes import greet

SECRET = "trello-application-secret"
URL = "https://hooks.example.com/hooks/trello"
BODY = (
    b'{"model": {"id": "4d5ea62fd76aa1136000000c"}, "action": {"id":'
    b' "51f9424bcd6e040f3c002412", "type": "updateCard", "date": "2013-07-31T16:58:51.949Z"}}'
)


def signed(body: bytes = BODY, secret: str = SECRET, url: str = URL) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body + url.encode(), "sha1")
    return headers(X_Trello_Webhook=base64.b64encode(mac).decode())


def passes(hdrs: CIMultiDict[str], body: bytes, url: str = URL, *secrets: str) -> None:
    options = settings("trello", *(secrets or (SECRET,)))
    check("trello", options, request(hdrs, body, url=url), time.time())


def test_trello_accepts_a_signed_request_and_finds_its_event() -> None:
    passes(signed(), BODY, URL, "old", SECRET)
    assert extracted("trello", signed(), BODY) == ("updateCard", "51f9424bcd6e040f3c002412")


def test_trello_signs_the_callback_url_with_its_query_as_sent() -> None:
    url = URL + "?board=5%2F1&x=1"
    passes(signed(url=url), BODY, url)


@pytest.mark.parametrize(
    ("hdrs", "body", "url"),
    [
        (signed(), BODY.replace(b"updateCard", b"deleteCard"), URL),
        (signed(secret="another"), BODY, URL),
        (signed(url="https://hooks.example.com/hooks/other"), BODY, URL),
        (signed(), BODY, "https://hooks.example.com/hooks/other"),
    ],
    ids=["tampered", "wrong-secret", "other-callback-url", "posted-elsewhere"],
)
def test_trello_rejects(hdrs: CIMultiDict[str], body: bytes, url: str) -> None:
    with pytest.raises(VerificationFailed, match="no signature matched"):
        passes(hdrs, body, url)


def test_trello_cannot_be_verified_without_the_url() -> None:
    with pytest.raises(VerificationFailed, match="signs the URL"):
        make("trello", SECRET).verify(signed(), BODY, time.time())


def test_trellos_head_on_creating_a_webhook_is_answered_200_unsigned() -> None:
    (greeting,) = providers.get("trello").all_greetings()
    assert (greeting.method, greeting.signed) == ("HEAD", False)
    answer = greet("trello", settings("trello", SECRET), method="HEAD")
    assert answer is not None
    assert (answer.status, answer.body) == (200, b"")
    assert greet("trello", settings("trello", SECRET), method="POST", body=BODY) is None
