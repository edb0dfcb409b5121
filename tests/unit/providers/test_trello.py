"""Trello, checked against the algorithm of its documentation: ``X-Trello-Webhook`` is
the base64 HMAC-SHA1 of the raw body followed by the webhook's callback URL, keyed
with the application's secret. The page's sample is code, not a signed request, so
the signatures are computed here, independently of hookgate.

https://developer.atlassian.com/cloud/trello/guides/rest-api/webhooks/#webhook-signatures
"""

from __future__ import annotations

import base64
import hmac

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects

SECRET = "trello-application-secret"
URL = "https://hooks.example.com/hooks/trello"
BODY = (
    b'{"model": {"id": "4d5ea62fd76aa1136000000c"}, "action": {"id":'
    b' "51f9424bcd6e040f3c002412", "type": "updateCard", "date": "2013-07-31T16:58:51.949Z"}}'
)


def signed(body: bytes = BODY, secret: str = SECRET, url: str = URL) -> CIMultiDict[str]:
    mac = hmac.digest(secret.encode(), body + url.encode(), "sha1")
    return headers(X_Trello_Webhook=base64.b64encode(mac).decode())


def test_trello_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    make("trello", "old", SECRET, url=URL).verify(signed(), BODY, now)
    assert extracted("trello", signed(), BODY) == ("updateCard", "51f9424bcd6e040f3c002412")


@pytest.mark.parametrize(
    "hdrs_body",
    [
        (signed(), BODY.replace(b"updateCard", b"deleteCard")),
        (signed(secret="another"), BODY),
        (signed(url="https://hooks.example.com/hooks/other"), BODY),
    ],
    ids=["tampered", "wrong-secret", "other-callback-url"],
)
def test_trello_rejects(hdrs_body: tuple[CIMultiDict[str], bytes]) -> None:
    hdrs, body = hdrs_body
    rejects(make("trello", SECRET, url=URL), hdrs, body, "no signature matched")


def test_trello_needs_the_callback_url() -> None:
    with pytest.raises(ValueError, match="url"):
        make("trello", SECRET)
