"""Adyen, checked against its official library (``Adyen.util``).

https://docs.adyen.com/development-resources/webhooks/verify-hmac-signatures/
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from Adyen import util
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import extracted, make, rejects
from .conftest import settings as table

# The sample HMAC key of Adyen's own examples.
KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
OTHER_KEY = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF"
ITEM: dict[str, Any] = {
    "amount": {"currency": "EUR", "value": 1130},
    "eventCode": "AUTHORISATION",
    "eventDate": "2024-01-01T01:00:00+01:00",
    "merchantAccountCode": "YOUR_MERCHANT_ACCOUNT",
    "merchantReference": "YOUR_MERCHANT_REFERENCE",
    "paymentMethod": "ideal",
    "pspReference": "YOUR_PSP_REFERENCE",
    "success": "true",
}


def signed_item(item: dict[str, Any] = ITEM, key: str = KEY) -> dict[str, Any]:
    item = copy.deepcopy(item)
    signature = util.generate_notification_sig(item, key).decode()
    item["additionalData"] = {"hmacSignature": signature}
    return item


def notification(*items: dict[str, Any]) -> dict[str, Any]:
    return {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}


def test_adyen_accepts_what_its_library_accepts(now: int) -> None:
    document = notification(signed_item())
    assert util.is_valid_hmac_notification(document, KEY)
    body = orjson.dumps(document)
    make("adyen", OTHER_KEY, KEY).verify(CIMultiDict(), body, now)
    assert extracted("adyen", CIMultiDict(), body) == ("AUTHORISATION", None)


def test_adyen_key_is_hex_of_either_case(now: int) -> None:
    body = orjson.dumps(notification(signed_item()))
    make("adyen", KEY.lower()).verify(CIMultiDict(), body, now)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", {"currency": "EUR", "value": 99999}),
        ("success", "false"),
        ("eventCode", "REFUND"),
    ],
)
def test_adyen_rejects_a_changed_signed_field(field: str, value: Any) -> None:
    item = signed_item()
    item[field] = value
    assert not util.is_valid_hmac_notification(notification(item), KEY)
    body = orjson.dumps(notification(item))
    rejects(make("adyen", KEY), CIMultiDict(), body, "no signature matched")


def test_adyen_rejects_another_key_and_a_tampered_signature() -> None:
    body = orjson.dumps(notification(signed_item(key=OTHER_KEY)))
    rejects(make("adyen", KEY), CIMultiDict(), body, "no signature matched")
    item = signed_item()
    item["additionalData"]["hmacSignature"] = "A" + item["additionalData"]["hmacSignature"][1:]
    rejects(
        make("adyen", KEY), CIMultiDict(), orjson.dumps(notification(item)), "no signature matched"
    )


def test_adyen_checks_every_item_where_its_library_checks_only_the_first() -> None:
    forged = dict(ITEM, pspReference="FORGED", additionalData={"hmacSignature": "AAAA"})
    document = notification(signed_item(), forged)
    assert util.is_valid_hmac_notification(document, KEY)
    rejects(make("adyen", KEY), CIMultiDict(), orjson.dumps(document), "no signature matched")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "malformed body"),
        (b"[]", "malformed body"),
        (b'{"notificationItems": []}', "malformed body"),
        (b'{"notificationItems": [{"other": {}}]}', "malformed body"),
        (orjson.dumps(notification(ITEM)), "missing signature"),
        (orjson.dumps(notification(dict(ITEM, amount=[1]))), "missing signature"),
        (
            orjson.dumps(notification(dict(signed_item(), success=["true"]))),
            "malformed body",
        ),
    ],
)
def test_adyen_rejects_malformed_bodies(body: bytes, reason: str) -> None:
    rejects(make("adyen", KEY), CIMultiDict(), body, reason)


def test_adyen_refuses_a_key_that_is_not_hex() -> None:
    with pytest.raises(ValueError, match="hex"):
        make("adyen", "not-hex-at-all")


def test_adyen_send_signs_every_item_as_adyens_library_does(now: int) -> None:
    adyen = providers.get("adyen")
    second = {**ITEM, "pspReference": "ANOTHER_PSP_REFERENCE", "additionalData": {"x": "y"}}
    body = orjson.dumps(notification(ITEM, second))
    options = table("adyen", KEY)
    prepared = adyen.prepared(options, body, now)
    assert adyen.sign(options, prepared, now) == {}  # the signatures are in the body
    document = orjson.loads(prepared)
    for wrapper in document["notificationItems"]:
        item = wrapper["NotificationRequestItem"]
        # The library checks the first item of a notification: each in turn.
        assert util.is_valid_hmac_notification(notification(item), KEY)
    assert document["notificationItems"][1]["NotificationRequestItem"]["additionalData"]["x"] == "y"
    make("adyen", KEY).verify(CIMultiDict(), prepared, now)


def test_adyen_send_wraps_a_plain_object_as_the_only_item(now: int) -> None:
    prepared = providers.get("adyen").prepared(table("adyen", KEY), orjson.dumps(ITEM), now)
    (wrapper,) = orjson.loads(prepared)["notificationItems"]
    assert util.is_valid_hmac_notification(notification(wrapper["NotificationRequestItem"]), KEY)


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"notificationItems": "x"}'])
def test_adyen_send_refuses_a_body_it_cannot_sign(body: bytes, now: int) -> None:
    with pytest.raises(ValueError, match="JSON"):
        providers.get("adyen").prepared(table("adyen", KEY), body, now)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
item_fields = st.fixed_dictionaries(
    {},
    optional={
        "pspReference": json_values,
        "amount": json_values,
        "success": json_values,
        "eventCode": json_values,
        "additionalData": st.one_of(json_values, st.just({"hmacSignature": "AAAA"})),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(item_fields.map(lambda item: notification(item)), json_values))
def test_adyen_never_passes_or_breaks_on_forged_bodies(document: Any) -> None:
    body = orjson.dumps(document)
    with pytest.raises(VerificationFailed):
        make("adyen", KEY).verify(CIMultiDict(), body, 0)
