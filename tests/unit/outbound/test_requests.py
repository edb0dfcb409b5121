"""What a destination receives: single requests and batch envelopes (pure construction)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookgate import __version__
from hookgate.config import DeliveryPolicy, DestinationConfig, Duration, SignMode
from hookgate.outbound import requests as outbound
from hookgate.store import DueDelivery

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OWN = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-Webhook-Signature",
    "Hookgate-Source",
    "Hookgate-Event-Type",
    "Hookgate-Attempt",
    "Hookgate-Batch-Size",
]


@pytest.fixture
def now() -> int:
    """The current time, read when each test runs, never at import.

    ``verify_standard`` is the official library, which checks ``webhook-timestamp``
    against the real clock: a value taken at import goes stale after 5 minutes.
    """
    return int(time.time())


IDENTITY = "0123456789abcdef0123456789abcdef"


def make_builder(destination: DestinationConfig) -> outbound.RequestBuilder:
    return outbound.RequestBuilder(destination, IDENTITY)


def destination(
    *,
    sign: SignMode = "standard",
    secret: str | None = SECRET,
    forward_headers: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> DestinationConfig:
    return DestinationConfig(
        name="orders",
        url="http://127.0.0.1:1/hook",
        sources=["stripe"],
        events=None,
        forward_headers=forward_headers or [],
        headers=headers or {},
        sign=sign,
        secret=secret,
        ordered=False,
        batch_max=10,
        batch_wait=Duration(0.05),
        policy=DeliveryPolicy(),
    )


def delivery(
    number: int,
    body: bytes = b'{"type":"charge.succeeded","n":1}',
    *,
    inbound: dict[str, str] | None = None,
    event_type: str | None = "charge.succeeded",
    source: str = "stripe",
    attempts: int = 0,
    received_at: float = 1_700_000_000.25,
) -> DueDelivery:
    return DueDelivery(
        id=number,
        message_id=f"msg_{number:016x}",
        destination="orders",
        attempts=attempts,
        next_attempt_at=received_at,
        received_at=received_at,
        source=source,
        event_type=event_type,
        headers=orjson.dumps(
            inbound if inbound is not None else {"content-type": "application/json"}
        ),
        body=body,
    )


def on_the_wire(pairs: list[tuple[str, str]]) -> CIMultiDict[str]:
    """The headers as the client sends them: each pair is a header line, so a name
    given twice (in any case) would show twice in ``getall``."""
    return CIMultiDict(pairs)


def verify_standard(body: bytes, headers: dict[str, str]) -> Any:
    return Webhook(SECRET).verify(body, headers)


# -- one delivery -------------------------------------------------------------------


def test_single_request_headers_and_body(now: int) -> None:
    builder = make_builder(
        destination(
            forward_headers=["Stripe-Signature", "X-Missing"],
            headers={"X-Env": "prod"},
        )
    )
    body = b'{"type": "charge.succeeded",  "id": "evt_1"}'
    item = delivery(
        7,
        body,
        inbound={"content-type": "application/json; charset=utf-8", "stripe-signature": "t=1,v1=a"},
        attempts=2,
    )
    request = builder.single(item, now)
    assert request.body == body  # byte for byte
    assert request.webhook_id == item.message_id
    assert request.deliveries == (item,)
    headers = request.headers
    assert {k: v for k, v in headers.items() if k != "webhook-signature"} == {
        "User-Agent": f"hookgate/{__version__}",
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": "t=1,v1=a",
        "X-Env": "prod",
        "webhook-id": item.message_id,
        "webhook-timestamp": str(now),
        "Hookgate-Source": "stripe",
        "Hookgate-Event-Type": "charge.succeeded",
        "Hookgate-Attempt": "3",
        "Via": "1.1 hookgate-0123456789abcdef",
    }
    assert verify_standard(body, headers) == {"type": "charge.succeeded", "id": "evt_1"}


def test_single_request_without_event_type_or_content_type(now: int) -> None:
    builder = make_builder(destination(sign="none", secret=None))
    request = builder.single(delivery(1, b"plain", inbound={}, event_type=None), now)
    assert "Hookgate-Event-Type" not in request.headers
    assert "Content-Type" not in request.headers
    assert "webhook-signature" not in request.headers
    assert "X-Webhook-Signature" not in request.headers
    assert request.headers["Hookgate-Attempt"] == "1"


def test_single_request_hmac_sha256_signature(now: int) -> None:
    builder = make_builder(destination(sign="hmac-sha256", secret="s3cret"))
    body = b"not json \x00"
    request = builder.single(delivery(1, body), now)
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert request.headers["X-Webhook-Signature"] == expected
    assert "webhook-signature" not in request.headers


@pytest.mark.parametrize("name", [*OWN, *(n.upper() for n in OWN), *(n.lower() for n in OWN)])
def test_fixed_and_forwarded_headers_cannot_override_own_headers(name: str, now: int) -> None:
    inbound = {"content-type": "application/json", name.lower(): "from-provider"}
    builder = make_builder(destination(forward_headers=[name], headers={name: "from-config"}))
    item = delivery(5, inbound=inbound, attempts=0)
    for request in (builder.single(item, now), builder.batch([item, delivery(6)], now)):
        sent = on_the_wire(request.pairs)
        for own in OWN:
            assert "from-provider" not in sent.getall(own, [])
            assert "from-config" not in sent.getall(own, [])
        assert sent.getall("webhook-id") == [request.webhook_id]
        assert sent.getall("webhook-timestamp") == [str(now)]
        verify_standard(request.body, request.headers)


@pytest.mark.parametrize("name", ["User-Agent", "user-agent", "USER-AGENT"])
def test_config_may_set_user_agent_once(name: str, now: int) -> None:
    """README: headers may set User-Agent; it replaces hookgate's, it does not add one."""
    builder = make_builder(destination(headers={name: "orders-relay/2"}))
    for request in (
        builder.single(delivery(1), now),
        builder.batch([delivery(1), delivery(2)], now),
    ):
        assert on_the_wire(request.pairs).getall("User-Agent") == ["orders-relay/2"]


@pytest.mark.parametrize("name", ["User-Agent", "user-agent"])
def test_forwarded_user_agent_replaces_hookgate_s(name: str, now: int) -> None:
    builder = make_builder(destination(forward_headers=[name]))
    item = delivery(1, inbound={"content-type": "application/json", "user-agent": "Stripe/1.0"})
    assert on_the_wire(builder.single(item, now).pairs).getall("User-Agent") == ["Stripe/1.0"]


@pytest.mark.parametrize(
    ("forward_name", "fixed_name"),
    [
        ("X-Env", "X-Env"),
        ("x-env", "X-ENV"),
        ("User-Agent", "User-Agent"),
        ("user-agent", "User-Agent"),
        ("Content-Type", "Content-Type"),
        ("content-type", "Content-Type"),
    ],
)
def test_fixed_header_wins_over_a_forwarded_one_of_the_same_name(
    forward_name: str, fixed_name: str, now: int
) -> None:
    """``headers`` come after ``forward_headers``; header names ignore case."""
    inbound = {"content-type": "application/json", "x-env": "inbound", "user-agent": "p/1"}
    builder = make_builder(
        destination(forward_headers=[forward_name], headers={fixed_name: "fixed"})
    )
    sent = on_the_wire(builder.single(delivery(1, inbound=inbound), now).pairs)
    assert sent.getall(fixed_name) == ["fixed"]


# -- batches ------------------------------------------------------------------------


def test_batch_envelope_carries_each_inbound_json_as_is(now: int) -> None:
    bodies = [
        b'{"type":"charge.succeeded","id":"evt_1","amount":4200}',
        b'{ "z": [1, 2.50, "caf\\u00e9"],   "a": null }\n',  # spacing, order, escapes kept
        b"[1,2,3]",
        b'"just a string"',
    ]
    items = [
        delivery(10, bodies[0], received_at=1_700_000_000.25),
        delivery(11, bodies[1], event_type=None, received_at=1_700_000_001.5),
        delivery(12, bodies[2], event_type="list", received_at=1_700_000_002.0),
        delivery(13, bodies[3], event_type="text", received_at=1_700_000_003.999),
    ]
    request = make_builder(destination()).batch(items, now)
    assert request.deliveries == tuple(items)
    envelope = json.loads(request.body)
    assert list(envelope) == ["batch_id", "events"]
    assert envelope["batch_id"] == request.webhook_id == outbound.batch_id_of(items)
    assert envelope["events"] == [
        {
            "id": "msg_000000000000000a",
            "source": "stripe",
            "type": "charge.succeeded",
            "received_at": "2023-11-14T22:13:20.250Z",
            "payload": {"type": "charge.succeeded", "id": "evt_1", "amount": 4200},
        },
        {
            "id": "msg_000000000000000b",
            "source": "stripe",
            "type": None,
            "received_at": "2023-11-14T22:13:21.500Z",
            "payload": {"z": [1, 2.5, "caf\u00e9"], "a": None},
        },
        {
            "id": "msg_000000000000000c",
            "source": "stripe",
            "type": "list",
            "received_at": "2023-11-14T22:13:22.000Z",
            "payload": [1, 2, 3],
        },
        {
            "id": "msg_000000000000000d",
            "source": "stripe",
            "type": "text",
            "received_at": "2023-11-14T22:13:23.999Z",
            "payload": "just a string",
        },
    ]
    for body in bodies:  # the inbound bytes themselves, not a re-serialisation
        assert body in request.body


def test_batch_headers_and_signature_verified_by_official_library(now: int) -> None:
    items = [delivery(1, attempts=0), delivery(2, attempts=3), delivery(3, attempts=1)]
    builder = make_builder(destination(headers={"X-Env": "prod"}))
    request = builder.batch(items, now)
    headers = request.headers
    assert {k: v for k, v in headers.items() if k != "webhook-signature"} == {
        "User-Agent": f"hookgate/{__version__}",
        "Content-Type": "application/json",
        "X-Env": "prod",
        "webhook-id": request.webhook_id,
        "webhook-timestamp": str(now),
        "Hookgate-Source": "stripe",
        "Hookgate-Attempt": "4",  # the most-tried member's next attempt
        "Hookgate-Batch-Size": "3",
        "Via": "1.1 hookgate-0123456789abcdef",
    }
    assert request.webhook_id.startswith("batch_")
    envelope = verify_standard(request.body, headers)
    assert [e["id"] for e in envelope["events"]] == [d.message_id for d in items]
    with pytest.raises(WebhookVerificationError):
        verify_standard(request.body.replace(b"charge", b"charga"), headers)


def test_batch_of_several_sources_names_none(now: int) -> None:
    items = [delivery(1, source="stripe"), delivery(2, source="github")]
    request = make_builder(destination()).batch(items, now)
    assert "Hookgate-Source" not in request.headers
    assert [e["source"] for e in json.loads(request.body)["events"]] == ["stripe", "github"]


def test_batch_hmac_sha256_signature_covers_the_envelope(now: int) -> None:
    builder = make_builder(destination(sign="hmac-sha256", secret="s3cret"))
    request = builder.batch([delivery(1), delivery(2)], now)
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Webhook-Signature"] == expected


def test_batch_id_is_stable_for_the_same_set(now: int) -> None:
    items = [delivery(n) for n in (3, 1, 4, 15, 9)]
    builder = make_builder(destination())
    first = builder.batch(items, now)
    # A retry, later, with the members now at attempt 2: the same id.
    retried = [delivery(d.id, attempts=1) for d in items]
    again = builder.batch(retried, now + 60)
    assert again.webhook_id == first.webhook_id
    verify_standard(again.body, again.headers)
    # A different set is a different batch.
    assert outbound.batch_id_of(items[:-1]) != first.webhook_id
    assert outbound.batch_id_of([*items, delivery(16)]) != first.webhook_id
    assert outbound.batch_id_of([delivery(n) for n in (3, 1, 4, 15, 10)]) != first.webhook_id


def test_batch_id_does_not_depend_on_member_order(now: int) -> None:
    """A set, not a sequence: claims order members by due time, which retries reshuffle.

    Each member of a failed batch gets its own jittered next_attempt_at, so the
    same set comes back from ``due_deliveries`` in another order.
    """
    items = [delivery(n) for n in (3, 1, 4, 15, 9)]
    ids = {outbound.batch_id_of(list(p)) for p in itertools.permutations(items)}
    assert ids == {outbound.batch_id_of(items)}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a":1}', True),
        (b" [1, 2] \n", True),
        (b'"text"', True),
        (b"42", True),
        (b"", False),
        (b"a=1&b=2", False),
        (b'{"a":1', False),
        (b"\xff\xfe{}", False),
        (b"<xml/>", False),
    ],
)
def test_is_json(body: bytes, expected: bool) -> None:
    assert outbound.is_json(body) is expected


def test_via_names_this_relay_after_the_upstream_ones(now: int) -> None:
    builder = make_builder(destination(forward_headers=["Via"], headers={"Via": "forged"}))
    first = builder.single(delivery(1, inbound={}), now)
    assert first.headers.getall("Via") == ["1.1 hookgate-0123456789abcdef"]
    relayed = builder.single(delivery(2, inbound={"via": "1.1 hookgate-fedcba9876543210"}), now)
    assert relayed.headers.getall("Via") == [
        "1.1 hookgate-fedcba9876543210, 1.1 hookgate-0123456789abcdef"
    ]
    batch = builder.batch([delivery(3), delivery(4)], now)
    assert batch.headers.getall("Via") == ["1.1 hookgate-0123456789abcdef"]
