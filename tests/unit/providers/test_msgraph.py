"""Microsoft Graph change notifications: clientState and the validation request
(https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks)."""

from __future__ import annotations

import orjson
import pytest

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, make, settings
from .handshakes import greet

STATE = "secretClientValue"  # the documentation's example clientState
# The documentation's example notification.
BODY = orjson.dumps(
    {
        "value": [
            {
                "id": "lsgTZMr9KwAAA",
                "subscriptionId": "{subscription_guid}",
                "subscriptionExpirationDateTime": "2016-03-19T22:11:09.952Z",
                "clientState": STATE,
                "changeType": "created",
                "resource": "users/{user_guid}@{tenant_guid}/messages/{long_id_string}",
                "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
                "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": "{long_id}"},
            }
        ]
    }
)
# The validation token of the documentation's example request.
TOKEN = (
    "Validation: Testing client application reachability for subscription "
    "Request-Id: 25b31a20-1f5b-4b96-8a38-3a4f05ba2a03"
)


def test_graph_accepts_the_documented_notification() -> None:
    make("msgraph", STATE).verify(headers(), BODY, 0)
    assert extracted("msgraph", headers(), BODY) == (None, None)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (BODY.replace(STATE.encode(), b"guessedValue"), "no credentials matched"),
        (BODY.replace(b'"clientState"', b'"clientstate"'), "missing clientState"),
        (b'{"value": []}', "no notification"),
        (b"[]", "malformed body"),
        (b"not json", "malformed body"),
    ],
)
def test_graph_refuses_a_forged_or_malformed_notification(body: bytes, reason: str) -> None:
    with pytest.raises(VerificationFailed, match=reason):
        make("msgraph", STATE).verify(headers(), body, 0)


def test_every_notification_of_a_batch_must_carry_the_state() -> None:
    document = orjson.loads(BODY)
    forged = {**document["value"][0], "clientState": "x"}
    body = orjson.dumps({"value": [document["value"][0], forged]})
    with pytest.raises(VerificationFailed):
        make("msgraph", STATE).verify(headers(), body, 0)


def test_the_validation_token_is_echoed_as_plain_text() -> None:
    answer = greet(
        "msgraph", settings("msgraph", STATE), method="POST", query={"validationToken": TOKEN}
    )
    assert answer is not None
    assert (answer.status, answer.body, answer.content_type) == (200, TOKEN.encode(), "text/plain")


@pytest.mark.parametrize("token", ["", "line\nbreak", "x" * 1025])
def test_a_malformed_validation_token_is_refused(token: str) -> None:
    with pytest.raises(providers.HandshakeRefused) as refused:
        greet(
            "msgraph", settings("msgraph", STATE), method="POST", query={"validationToken": token}
        )
    assert refused.value.status == 400


def test_a_notification_is_no_handshake() -> None:
    assert greet("msgraph", settings("msgraph", STATE), method="POST", body=BODY) is None
