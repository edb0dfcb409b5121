"""Square (URL + body), checked against its official SDK's
``square.utils.webhooks_helper.verify_signature``."""

from __future__ import annotations

import pytest
from square.utils.webhooks_helper import verify_signature

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import check, extracted, request, settings

KEY = "asdf1234"
URL = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"
BODY = (
    b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification",'
    b'"event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z",'
    b'"data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}'
)


def square_signature(url: str = URL, body: bytes = BODY, key: str = KEY) -> str:
    """What Square sends: written from its docs, confirmed by its SDK below."""
    return providers.get("square").sign_request(settings("square", key), url, body, 0)[
        "x-square-hmacsha256-signature"
    ]


def test_square_sdk_accepts_what_hookgate_signs() -> None:
    assert verify_signature(
        request_body=BODY.decode(),
        signature_header=square_signature(),
        signature_key=KEY,
        notification_url=URL,
    )


def test_square_accepts_the_request_and_extracts_type_and_id() -> None:
    hdrs = {"x-square-hmacsha256-signature": square_signature()}
    check("square", settings("square", KEY), request(hdrs, BODY, url=URL), 0)
    assert extracted("square", hdrs, BODY) == (
        "webhooks.test_notification",
        "ac3ac95b-f97d-458c-a6e6-18981597e05f",
    )


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (URL, BODY.replace(b"MLEFBHHSJGVHD", b"MLEFBHHSJGVHE")),
        (URL + "/", BODY),
        (URL.replace("https:", "http:"), BODY),
    ],
    ids=["body", "path", "scheme"],
)
def test_square_refuses_a_tampered_body_or_another_url(url: str, body: bytes) -> None:
    hdrs = {"x-square-hmacsha256-signature": square_signature()}
    with pytest.raises(VerificationFailed, match="no signature matched"):
        check("square", settings("square", KEY), request(hdrs, body, url=url), 0)
    assert not verify_signature(
        request_body=body.decode(),
        signature_header=hdrs["x-square-hmacsha256-signature"],
        signature_key=KEY,
        notification_url=url,
    )
