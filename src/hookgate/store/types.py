"""The values that cross the ``Store`` boundary, whatever the backend."""

from __future__ import annotations

import msgspec

from hookgate.wire import DeliveryState


class SkippedDestination(msgspec.Struct, frozen=True):
    """A destination of the message's source that got no delivery, and why.

    ``reason``: "event_type" (not in its ``events``) or "filter" (its content filter
    did not match).
    """

    destination: str
    reason: str


class NewMessage(msgspec.Struct, frozen=True):
    """A verified inbound webhook, ready to be committed with its deliveries."""

    source: str
    received_at: float
    event_type: str | None
    event_id: str | None
    dedup_window: float
    headers: bytes  # orjson-encoded {name: value}
    body: bytes
    destinations: tuple[str, ...]
    skipped: tuple[SkippedDestination, ...] = ()


class Accepted(msgspec.Struct, frozen=True):
    message_id: str
    duplicate: bool


class DueDelivery(msgspec.Struct, frozen=True):
    """A delivery that is due, with the message it carries."""

    id: int
    message_id: str
    destination: str
    attempts: int
    next_attempt_at: float
    received_at: float
    source: str
    event_type: str | None
    headers: bytes
    body: bytes


class AttemptRecord(msgspec.Struct, frozen=True):
    """The outcome of one attempt and the delivery's state after it."""

    delivery_id: int
    started_at: float
    duration_ms: float
    status: int | None
    error: str | None
    response_snippet: bytes
    state: DeliveryState
    attempts: int
    next_attempt_at: float
    dead_reason: str | None = None  # gone, max_attempts, max_age or transform once dead


class DestinationQueue(msgspec.Struct, frozen=True):
    pending: int
    oldest_pending_at: float | None


class QueueStats(msgspec.Struct, frozen=True):
    pending: int
    oldest_pending_at: float | None
    dead: int
    destinations: dict[str, DestinationQueue]


class MessageFilter(msgspec.Struct, frozen=True):
    """Which messages an admin listing wants; times are unix seconds."""

    source: str | None = None
    event_type: str | None = None
    state: DeliveryState | None = None
    since: float | None = None
    until: float | None = None
    before_id: int | None = None
    event_id: str | None = None
    # With ``state``: a delivery to this destination in that state.
    destination: str | None = None


class MessageRow(msgspec.Struct, frozen=True):
    id: str
    number: int
    source: str
    event_type: str | None
    event_id: str | None
    received_at: float
    size: int
    pending: int
    delivered: int
    dead: int


class MessageContent(msgspec.Struct, frozen=True):
    headers: bytes  # orjson-encoded {name: value}
    body: bytes
    skipped: tuple[SkippedDestination, ...] = ()


class DeliveryRow(msgspec.Struct, frozen=True):
    id: int
    message_id: str
    destination: str
    state: DeliveryState
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    updated_at: float
    dead_reason: str | None = None


class AttemptRow(msgspec.Struct, frozen=True):
    started_at: float
    duration_ms: float
    status: int | None
    error: str | None
    response_snippet: bytes
