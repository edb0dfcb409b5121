"""The durable outbox: what the rest of hookgate may ask of storage.

Only the implementations in this package run SQL. ``sqlite.SQLiteStore`` is the
embedded default; a PostgreSQL store would implement the same ``Store``.
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Awaitable, Collection
from typing import Literal, Protocol

import msgspec

DeliveryState = Literal["pending", "delivered", "dead"]


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
    dead_reason: str | None = None  # gone, max_attempts or max_age once dead


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


class Store(Protocol):
    identity: str
    """The database's identity: random, made once when the database is created."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def accept(self, message: NewMessage) -> Accepted:
        """Commit the message and its deliveries durably (group commit), or raise StoreError."""
        ...

    def record_attempt(self, record: AttemptRecord) -> Awaitable[None]:
        """Queue the attempt for the next commit; the awaitable resolves once committed."""
        ...

    async def due_deliveries(
        self, destination: str, now: float, limit: int, exclude: Collection[int] = ()
    ) -> list[DueDelivery]:
        """Pending deliveries of ``destination`` due at ``now``, oldest first, but ``exclude``."""
        ...

    async def head_deliveries(self, destination: str, limit: int) -> list[DueDelivery]:
        """The first ``limit`` pending deliveries of ``destination`` in delivery order."""
        ...

    async def paused_destinations(self) -> set[str]: ...

    async def set_paused(self, destination: str, paused: bool) -> None:
        """Pause or resume a destination durably (it stays so across restarts)."""
        ...

    async def next_due_at(self, destination: str, after: float) -> float | None:
        """The earliest ``next_attempt_at`` strictly after ``after``, if any."""
        ...

    async def queue_stats(self) -> QueueStats: ...

    async def delivery_counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per destination and state (only the non-zero ones)."""
        ...

    async def message_count(self) -> int: ...

    @property
    def failure(self) -> str | None:
        """Why the store cannot take writes now, or None while it can."""
        ...

    async def check_writable(self) -> None:
        """Raise StoreError unless a write transaction commits now."""
        ...

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` messages received before ``before`` with nothing pending."""
        ...


# Ids need not be unguessable, only unique and ordered: a seeded PRNG costs no syscall.
_id_bits = random.Random()  # noqa: S311


def new_message_id(now: float | None = None) -> int:
    """A 63-bit id ordered by time: 41 bits of milliseconds, 22 random bits.

    Time-ordered so ids sort like arrival and never repeat across a database
    reset; the writer still makes each one strictly larger than the last.
    """
    millis = int((time.time() if now is None else now) * 1000)
    return (millis << 22) | _id_bits.getrandbits(22)


def message_id_floor(moment: float) -> int:
    """The smallest message id that can have been received at or after ``moment``."""
    return int(moment * 1000) << 22


def format_time(moment: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds: ``2026-11-27T09:30:28.843Z``."""
    when = datetime.datetime.fromtimestamp(moment, tz=datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_message_id(message_id: int) -> str:
    return f"msg_{message_id:016x}"


def parse_message_id(text: str) -> int | None:
    if not text.startswith("msg_") or len(text) != 20:
        return None
    try:
        number = int(text[4:], 16)
    except ValueError:
        return None
    return number if number < 2**63 else None  # SQLite integers are signed 64-bit
