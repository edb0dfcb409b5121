"""Transforms at delivery: what the destination receives, and a failing transform's dead end.

Every test runs on each store backend (SQLite, then PostgreSQL): ``relay`` here is
the ``any_relay`` fixture.
"""

from __future__ import annotations

import msgspec
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from ..harness import Relay, wait_for


@pytest.fixture
def relay(any_relay: Relay) -> Relay:
    return any_relay


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ORDER = orjson.dumps({"id": "ord_1", "amount": 1500, "customer": {"email": "a@b.c"}})

RESHAPING = f"""
[destinations.orders]
url = "{{url}}"
sources = ["stripe"]
sign = "standard"
secret = "{SECRET}"
forward_headers = ["X-Shop"]
transform = '''
{{body: {{order: .body.id, cents: .body.amount}},
 headers: {{"X-Event": .event_type, "X-Shop": ("shop-" + .headers["x-shop"])}}}}
'''
"""


async def test_the_destination_gets_the_reshaped_body_and_headers(relay: Relay) -> None:
    await relay.start(RESHAPING)
    message_id = await relay.accept(ORDER, content_type="text/plain", headers={"x-shop": "acme"})
    await wait_for(lambda: relay.downstream.received)
    (got,) = relay.downstream.received
    assert orjson.loads(got.body) == {"order": "ord_1", "cents": 1500}
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Event"] == "charge.succeeded"
    assert got.headers["X-Shop"] == "shop-acme"  # the transform's value replaces the forwarded
    assert got.headers["webhook-id"] == message_id
    # The signature covers the body as sent, so the official library accepts it.
    Webhook(SECRET).verify(got.body, dict(got.headers))
    await wait_for(lambda: relay.delivery(message_id)[0] == "delivered")
    # The original body stays stored.
    assert relay.store is not None
    found = await relay.store.get_message(message_id)
    assert found is not None
    assert found[1].body == ORDER


FAILING = """
[destinations.orders]
url = "{url}"
sources = ["stripe"]
transform = '{body: (.body.amount + .body.customer.email)}'
"""


async def test_a_failing_transform_kills_the_delivery_until_fixed(relay: Relay) -> None:
    cfg = await relay.start(FAILING)
    assert relay.store is not None and relay.dispatcher is not None
    message_id = await relay.accept(ORDER)
    await wait_for(lambda: relay.delivery(message_id)[0] == "dead")
    _, attempts, status, error = relay.delivery(message_id)
    assert (attempts, status) == (1, None)
    assert error == 'transform failed: jq: number (1500) and string ("a@b.c") cannot be added'
    (delivery,) = await relay.store.list_deliveries(message_id=message_id)
    assert delivery.dead_reason == "transform"
    (attempt,) = await relay.store.attempts(delivery.id)
    assert attempt.error == error
    assert relay.downstream.received == []
    # The destination is not to blame: its circuit stays closed.
    assert relay.dispatcher.workers["orders"].state == "ok"
    if relay.backend is not None and relay.backend.kind == "postgresql":
        # Settled dead, its lease ended with the outcome (SQLite's lease is in memory).
        assert relay.rows("SELECT claimed_by, lease_until FROM deliveries") == [(None, 0)]

    # Fix the program, reload, retry by hand: delivered as the fixed program says (a
    # lease still held would keep it from being claimed again on either backend).
    fixed = msgspec.structs.replace(
        cfg.destinations["orders"], transform="{body: {total: .body.amount}}"
    )
    await relay.dispatcher.apply([fixed], grace=1.0)
    await relay.store.retry_delivery(delivery.id)
    relay.dispatcher.wake(frozenset({"orders"}))
    await wait_for(lambda: relay.delivery(message_id)[0] == "delivered")
    (got,) = relay.downstream.received
    assert orjson.loads(got.body) == {"total": 1500}


LOOPING = """
[destinations.orders]
url = "{url}"
sources = ["stripe"]
transform = 'def forever: forever; forever'
transform_timeout = "200ms"
"""


async def test_an_endless_transform_is_stopped(relay: Relay) -> None:
    await relay.start(LOOPING)
    message_id = await relay.accept(ORDER)
    await wait_for(lambda: relay.delivery(message_id)[0] == "dead")
    assert relay.delivery(message_id)[3] == (
        "transform failed: the program ran longer than transform_timeout (0.2s) and was stopped"
    )
    assert relay.downstream.received == []


TOO_BIG = """
[destinations.orders]
url = "{url}"
sources = ["stripe"]
transform = '{body: [range(1000)]}'
transform_max_size = "1KiB"
"""


async def test_an_output_over_the_size_limit_is_refused(relay: Relay) -> None:
    await relay.start(TOO_BIG)
    message_id = await relay.accept(ORDER)
    await wait_for(lambda: relay.delivery(message_id)[0] == "dead")
    assert "over transform_max_size (1024)" in relay.delivery(message_id)[3]
