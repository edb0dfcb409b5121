"""HubSpot signature v3, checked against its official SDK
(``hubspot.utils.signature.Signature``)."""

from __future__ import annotations

import pytest
from hubspot.utils.signature import Signature

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import check, extracted, request, settings

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"  # the documentation's example client secret
URL = "https://www.example.com/webhook_uri?portal=62515"
BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)


def hubspot_signed(now: int, url: str = URL, body: bytes = BODY) -> dict[str, str]:
    timestamp = str(now * 1000)
    signature = Signature.get_signature(SECRET, body.decode(), "v3", url, "POST", timestamp)
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp}


def test_hubspot_accepts_what_its_sdk_signs(now: int) -> None:
    hdrs = hubspot_signed(now)
    check("hubspot", settings("hubspot", SECRET), request(hdrs, BODY, url=URL), now)
    # The body is an array of events: no single type or id.
    assert extracted("hubspot", hdrs, BODY) == (None, None)


def test_hubspot_sdk_accepts_what_hookgate_send_signs(now: int) -> None:
    signed = providers.get("hubspot").sign_request(settings("hubspot", SECRET), URL, BODY, now)
    assert Signature.is_valid(
        signed["X-HubSpot-Signature-v3"],
        SECRET,
        BODY.decode(),
        URL,
        "POST",
        "v3",
        signed["X-HubSpot-Request-Timestamp"],
    )


def test_hubspot_signs_the_uri_with_the_listed_encodings_decoded(now: int) -> None:
    # HubSpot decodes %3A, %2F, %40, ... before signing; the request arrives encoded.
    arrived = "https://www.example.com/webhook_uri?email=a%40b.com&next=%2Fhome"
    signed_url = "https://www.example.com/webhook_uri?email=a@b.com&next=/home"
    hdrs = hubspot_signed(now, signed_url)
    check("hubspot", settings("hubspot", SECRET), request(hdrs, BODY, url=arrived), now)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": BODY.replace(b"12345", b"12346")}, "no signature matched"),
        ({"url": URL + "&x=1"}, "no signature matched"),
        ({"method": "PUT"}, "no signature matched"),
        ({"skew": -301}, "stale timestamp"),
        ({"skew": 301}, "future timestamp"),
    ],
)
def test_hubspot_refuses_tampering_and_replays(
    change: dict[str, object], reason: str, now: int
) -> None:
    hdrs = hubspot_signed(now)
    body = change.get("body", BODY)
    url = change.get("url", URL)
    method = change.get("method", "POST")
    assert isinstance(body, bytes) and isinstance(url, str) and isinstance(method, str)
    skew = change.get("skew", 0)
    assert isinstance(skew, int)
    req = request(hdrs, body, url=url, method=method)
    with pytest.raises(VerificationFailed, match=reason):
        check("hubspot", settings("hubspot", SECRET), req, now - skew)


@pytest.mark.parametrize("timestamp", ["", "12a", "1" * 16, "-1"])
def test_hubspot_refuses_a_malformed_timestamp(timestamp: str, now: int) -> None:
    hdrs = {**hubspot_signed(now), "X-HubSpot-Request-Timestamp": timestamp}
    with pytest.raises(VerificationFailed, match="malformed timestamp"):
        check("hubspot", settings("hubspot", SECRET), request(hdrs, BODY, url=URL), now)
