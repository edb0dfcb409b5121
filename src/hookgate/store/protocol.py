"""``Store``: everything hookgate asks of its storage, and nothing of how it is done.

A backend (``store/sqlite/``, later ``store/postgres/``) implements all of it; the
rest of hookgate holds a ``Store`` and never sees a connection or a line of SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Collection, Sequence

    from hookgate.store.types import (
        Accepted,
        AttemptRecord,
        AttemptRow,
        DeliveryRow,
        DueDelivery,
        MessageContent,
        MessageFilter,
        MessageRow,
        NewMessage,
        QueueStats,
    )

CommitListener = Callable[[frozenset[str]], None]
"""Called after a commit with the destinations that got new deliveries in it."""

PauseListener = Callable[[str, bool], None]
"""Called with a destination and whether it is now paused."""


class Coordination(Protocol):
    """What processes sharing one database agree on through it (None for SQLite's one).

    Claims and leases are the ``Store``'s own (every backend has them); these are the
    per-destination rules that a single process keeps in memory instead.
    """

    poll_interval: float
    """How often an idle worker looks for work that no wake-up announced."""

    order_retry: float
    """How often a process that does not hold an ordered destination tries again."""

    async def hold_order(self, destination: str) -> bool:
        """Whether this process delivers the ordered ``destination`` now (taking it when free)."""
        ...

    async def release_order(self, destination: str) -> None: ...

    async def take_rate_slot(
        self, destination: str, count: int, window: float, hold: float
    ) -> tuple[int | None, float]:
        """``(slot, 0)``, or ``(None, seconds to wait)`` when all ``count`` slots are held."""
        ...

    async def free_rate_slot(self, destination: str, slot: int, window: float) -> None:
        """The request on ``slot`` ended now: the slot frees ``window`` seconds later."""
        ...

    async def set_circuit(self, destination: str, open_until: float) -> None:
        """No process claims for ``destination`` before ``open_until`` (0: closed)."""
        ...

    def on_pause_changed(self, listener: PauseListener) -> None:
        """Call ``listener`` when another process pauses or resumes a destination."""
        ...


class Store(Protocol):
    identity: str
    """The database's identity: random, made once when the database is created."""

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Open the database (created and migrated if need be), or raise StoreError."""
        ...

    async def close(self) -> None:
        """Commit the writes already queued, refuse new ones, release the database."""
        ...

    @property
    def writer_task(self) -> asyncio.Task[None] | None:
        """The background task the store needs while open (None before ``open()``).

        The daemon watches it: if it ends, the store takes no more writes and the
        daemon stops rather than answer 2xx it cannot keep.
        """
        ...

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with the destinations that got new deliveries in a commit."""
        ...

    @property
    def coordination(self) -> Coordination | None:
        """How processes sharing this database coordinate; None when only one may use it."""
        ...

    # -- ingest and delivery -----------------------------------------------------------

    def accept(self, message: NewMessage) -> asyncio.Future[Accepted]:
        """Queue the message and its deliveries for the next group commit; the future
        resolves once committed durably, or raises StoreError. A plain future, not a
        coroutine: an ingest process's commit costs its daemon no task."""
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

    # A claim leases deliveries to this process (claimed by whom, until when): no other
    # claim returns them until an outcome is recorded (``record_attempt``), they are
    # released, or the lease runs out because the process died.

    async def claim_due(self, destination: str, now: float, limit: int) -> list[DueDelivery]:
        """Lease up to ``limit`` unleased deliveries of ``destination`` due at ``now``.

        Oldest (``next_attempt_at``) first.
        """
        ...

    def claim_due_at_once(
        self, destination: str, now: float, limit: int
    ) -> tuple[list[DueDelivery], float | None] | None:
        """``claim_due`` made at once, without waiting for anything (I/O, a lock, a
        thread), or None when this store cannot: then ``claim_due`` is the way.

        With the claimed page comes, when the page is not full, the earliest
        ``next_attempt_at`` after ``now`` (``next_due_at``), read with it. Lets a
        worker claim what a commit made due from within the commit's own turn of the
        event loop. A store that other processes share always answers None.
        """
        ...

    def claim_committed(
        self, destination: str, limit: int
    ) -> tuple[list[DueDelivery], bool] | None:
        """From an ``on_commit`` listener: lease up to ``limit`` of the deliveries to
        ``destination`` that the commit being announced inserted, straight from the
        commit (the same values a claim would read, no read), oldest first; and whether
        that was all of them (the rest stay pending for a claim).

        None when the store cannot tell them now: outside an announcement, while a
        claim of its own might return them too, and always for a store that other
        processes share. Lets a worker whose last claim found nothing more due start a
        commit's deliveries without claiming them.
        """
        ...

    async def claim_listed(self, deliveries: Sequence[DueDelivery]) -> list[DueDelivery]:
        """Lease those of ``deliveries`` still pending and unleased; in the order given."""
        ...

    async def release(self, delivery_ids: Collection[int]) -> None:
        """End this process's leases on ``delivery_ids`` without an attempt."""
        ...

    async def next_due_at(self, destination: str, after: float) -> float | None:
        """The earliest ``next_attempt_at`` strictly after ``after``, if any."""
        ...

    async def paused_destinations(self) -> set[str]: ...

    async def set_paused(self, destination: str, paused: bool) -> None:
        """Pause or resume a destination durably (it stays so across restarts)."""
        ...

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` messages received before ``before`` with nothing pending."""
        ...

    # -- counts and health ----------------------------------------------------------------

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

    # -- admin: inspect, retry, replay ---------------------------------------------------

    async def list_messages(self, query: MessageFilter, limit: int) -> list[MessageRow]:
        """Messages matching ``query``, newest first."""
        ...

    async def get_message(self, message_id: str) -> tuple[MessageRow, MessageContent] | None:
        """One message with its headers and body; None when there is no such message."""
        ...

    async def list_deliveries(
        self,
        *,
        destination: str | None = None,
        state: str | None = None,
        message_id: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[DeliveryRow]:
        """Deliveries matching every filter given, newest first."""
        ...

    async def get_delivery(self, delivery_id: int) -> DeliveryRow | None: ...

    async def attempts(self, delivery_id: int) -> list[AttemptRow]:
        """The attempts of a delivery, in the order they were made."""
        ...

    async def retry_delivery(self, delivery_id: int) -> DeliveryRow | None:
        """Make a dead or pending delivery due now; None when it does not exist.

        Raises ConflictError when it is already delivered.
        """
        ...

    async def retry_dead(self, destination: str, since: float | None) -> int:
        """Make due now the dead deliveries of ``destination`` (that died since ``since``)."""
        ...

    async def replay(self, message_id: str, destinations: Sequence[str]) -> list[DeliveryRow]:
        """New pending deliveries of an existing message to ``destinations``."""
        ...

    async def destination_counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per destination and state, from the store's counters."""
        ...

    async def totals(self) -> tuple[int, dict[str, int]]:
        """How many messages, and how many deliveries in each state."""
        ...
