"""What the admin listener answers: one definition of each answer, for every side.

The API's handlers encode these, the OpenAPI document is generated from them, and
the CLI decodes the daemon's JSON into them (docs/admin-api.md "Shapes"). The
client talks to daemons of other versions, so decoding stays lenient:

- fields it does not know are ignored (msgspec's default);
- a field added after the API's first version has a default, so an older daemon's
  answer, which lacks it, still decodes (``Delivery.dead_reason``,
  ``DestinationStats.delivered``);
- states are strings: the document lists the known ones, and a state that a newer
  hookgate adds still decodes.

Only msgspec and ``hookgate.wire`` here: the CLI imports this module.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from hookgate import wire

DeliveryStateName = Annotated[
    str, msgspec.Meta(extra_json_schema={"enum": sorted(wire.DELIVERY_STATES)})
]
DestinationStateName = Annotated[
    str, msgspec.Meta(extra_json_schema={"enum": sorted(wire.DESTINATION_STATES)})
]


class _Answer(msgspec.Struct, frozen=True):
    """An answer of the admin listener (no docstrings below: they would become
    descriptions in the OpenAPI document)."""


# -- /api/v1 ---------------------------------------------------------------------------


class ApiError(_Answer, frozen=True):
    error: str
    detail: str


class DeliveryCounts(_Answer, frozen=True):
    pending: int
    delivered: int
    dead: int


class Message(_Answer, frozen=True):
    id: str
    source: str
    event_type: str | None
    event_id: str | None
    received_at: str
    size: int
    deliveries: DeliveryCounts


class Attempt(_Answer, frozen=True):
    started_at: str
    duration_ms: float
    status: int | None
    error: str | None
    # The first 1 KiB of the response body, UTF-8 with replacement.
    response_snippet: str


class Delivery(_Answer, frozen=True):
    id: int
    message_id: str
    destination: str
    state: DeliveryStateName
    attempts: int
    next_attempt_at: str
    last_status: int | None
    last_error: str | None
    updated_at: str
    # Why it died: "gone" (410), "max_attempts", "max_age" or "transform" (its
    # transform failed: last_error says how); null unless dead.
    dead_reason: str | None = None


class DeliveryDetail(Delivery, frozen=True, kw_only=True):
    attempt_log: list[Attempt]


class SkippedDestination(_Answer, frozen=True):
    destination: str
    # "event_type": its events do not hold the message's type; "filter": its content
    # filter did not match the request.
    reason: str


class MessageDetail(_Answer, frozen=True):
    id: str
    source: str
    event_type: str | None
    event_id: str | None
    received_at: str
    size: int
    headers: dict[str, str]
    body: str | None
    body_base64: str | None
    deliveries: list[DeliveryDetail]
    # The destinations of its source that got no delivery, and why.
    skipped: list[SkippedDestination] = []


class MessagePage(_Answer, frozen=True):
    items: list[Message]
    next_cursor: str | None


class DeliveryPage(_Answer, frozen=True):
    items: list[Delivery]
    next_cursor: str | None


class Destination(_Answer, frozen=True):
    name: str
    url: str | None
    state: DestinationStateName
    paused: bool
    configured: bool
    pending: int
    dead: int


class DestinationList(_Answer, frozen=True):
    items: list[Destination]


class ReplayResult(_Answer, frozen=True):
    deliveries: list[Delivery]


class RetryResult(_Answer, frozen=True):
    retried: int


class DestinationStats(_Answer, frozen=True):
    pending: int
    dead: int
    delivered: int = 0


class Stats(_Answer, frozen=True):
    messages: int
    deliveries: DeliveryCounts
    oldest_pending_age_s: float
    destinations: dict[str, DestinationStats]


# -- health and readiness ----------------------------------------------------------------


class Health(_Answer, frozen=True):
    status: str


class ReadyQueue(_Answer, frozen=True):
    pending: int
    oldest_pending_age_s: float
    dead: int


class ReadyDestination(_Answer, frozen=True):
    state: DestinationStateName
    pending: int


class Readiness(_Answer, frozen=True, omit_defaults=True):
    """``GET /readyz``; ``queue`` and ``destinations`` are left out while the store
    cannot say (``checks["queue"]`` says why)."""

    status: str
    checks: dict[str, str]
    queue: ReadyQueue | None = None
    destinations: dict[str, ReadyDestination] | None = None
