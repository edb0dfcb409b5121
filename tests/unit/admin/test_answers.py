"""One set of answer types: the daemon encodes them, the CLI decodes daemons of any version."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hookgate import wire
from hookgate.admin import answers, api
from hookgate.cli import client

DELIVERY_V1: dict[str, Any] = {
    "id": 7,
    "message_id": "msg_0190c2a8f0000001",
    "destination": "orders",
    "state": "dead",
    "attempts": 3,
    "next_attempt_at": "2026-11-27T09:31:00.000Z",
    "last_status": 410,
    "last_error": None,
    "updated_at": "2026-11-27T09:31:00.000Z",
}


def test_an_older_daemons_answers_decode_with_the_later_fields_defaulted() -> None:
    delivery = client.shape(DELIVERY_V1, answers.Delivery)
    assert delivery.dead_reason is None
    stats = client.shape(
        {
            "messages": 1,
            "deliveries": {"pending": 0, "delivered": 0, "dead": 1},
            "oldest_pending_age_s": 0.0,
            "destinations": {"orders": {"pending": 0, "dead": 1}},
        },
        answers.Stats,
    )
    assert stats.destinations["orders"] == answers.DestinationStats(0, 1, delivered=0)


def test_a_newer_daemons_fields_and_states_do_not_stop_the_client() -> None:
    newer = {**DELIVERY_V1, "state": "cancelled", "priority": 5, "dead_reason": "gone"}
    delivery = client.shape(newer, answers.Delivery)
    assert (delivery.state, delivery.dead_reason) == ("cancelled", "gone")
    destination = client.shape(
        {
            "name": "orders",
            "url": None,
            "state": "draining",
            "paused": False,
            "configured": True,
            "pending": 0,
            "dead": 0,
            "region": "eu",
        },
        answers.Destination,
    )
    assert destination.state == "draining"


def test_a_missing_first_version_field_is_a_command_error() -> None:
    incomplete = {k: v for k, v in DELIVERY_V1.items() if k != "destination"}
    with pytest.raises(client.CommandError, match="unexpected answer"):
        client.shape(incomplete, answers.Delivery)


def test_what_the_daemon_encodes_the_client_decodes() -> None:
    sent = answers.DeliveryDetail(**DELIVERY_V1, dead_reason="gone", attempt_log=[])
    payload = msgspec.json.decode(msgspec.json.encode(sent))
    assert client.shape(payload, answers.DeliveryDetail) == sent


def test_readiness_leaves_out_what_the_store_cannot_say() -> None:
    failing = answers.Readiness("failing", {"queue": "failing: disk full"})
    assert (
        msgspec.json.encode(failing)
        == b'{"status":"failing","checks":{"queue":"failing: disk full"}}'
    )
    ready = answers.Readiness(
        "ok",
        {"database": "ok"},
        answers.ReadyQueue(0, 0.0, 0),
        {},
    )
    encoded = msgspec.json.decode(msgspec.json.encode(ready))
    assert list(encoded) == ["status", "checks", "queue", "destinations"]
    assert encoded["destinations"] == {}


def test_the_document_lists_the_wire_states() -> None:
    schemas = api.openapi_document()["components"]["schemas"]
    assert set(schemas["Delivery"]["properties"]["state"]["enum"]) == set(wire.DELIVERY_STATES)
    destination_state = schemas["Destination"]["properties"]["state"]["enum"]
    assert set(destination_state) == set(wire.DESTINATION_STATES)
