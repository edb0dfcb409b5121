"""Postmark: no signature. Its webhooks carry only the HTTP Basic credentials written
into the webhook URL, and come from the addresses Postmark publishes.

https://postmarkapp.com/developer/webhooks/webhooks-overview#protecting-your-webhook
"""

from __future__ import annotations

import base64
import ipaddress

import pytest

from hookgate import providers

from .conftest import extracted, headers, make, rejects

CREDENTIALS = "postmark:hook-password"
# The Delivery webhook example of Postmark's documentation (abridged).
BODY = (
    b'{"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",'
    b' "MessageID": "00000000-0000-0000-0000-000000000000", "Recipient": "john@example.com"}'
)


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_postmark_accepts_its_credentials_and_finds_its_event(now: int) -> None:
    hdrs = headers(Authorization=basic(CREDENTIALS))
    make("postmark", "old:pw", CREDENTIALS).verify(hdrs, BODY, now)
    # MessageID names the e-mail, shared by its Delivery, Open, Click...: no event id.
    assert extracted("postmark", hdrs, BODY) == ("Delivery", None)


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (basic("postmark:wrong"), "no credentials matched"),
        (basic("someone:hook-password"), "no credentials matched"),
        ("Bearer x", "malformed header"),
    ],
)
def test_postmark_rejects_other_credentials(authorization: str, reason: str) -> None:
    rejects(make("postmark", CREDENTIALS), headers(Authorization=authorization), BODY, reason)


def test_postmark_does_not_protect_the_body(now: int) -> None:
    # What this scheme cannot do, stated as a test: the body is not signed.
    hdrs = headers(Authorization=basic(CREDENTIALS))
    make("postmark", CREDENTIALS).verify(hdrs, BODY.replace(b"Delivery", b"Bounce"), now)


def test_postmark_publishes_its_sender_addresses() -> None:
    ranges = providers.get("postmark").ip_ranges
    assert ranges
    for cidr in ranges:
        assert ipaddress.ip_network(cidr).is_global
