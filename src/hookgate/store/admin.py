"""What the admin API reads and changes in the outbox, whatever the backend.

Each backend's ``AdminQueries`` names its SQL (``queries``, from its ``queries.sql``)
and its placeholder (``mark``), and implements the few steps that differ between the
drivers: how an id list is bound, how a change runs in its writer. Reads use the
store's read connections; changes (retry, replay) go through its writer like every
other write. A new admin operation is one method here and its query in each backend's
``queries.sql``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hookgate.errors import ConflictError
from hookgate.store.ids import message_id_floor, parse_message_id
from hookgate.store.rows import delivery_row, message_content, message_row, where_clause
from hookgate.store.types import (
    AttemptRow,
    DeliveryRow,
    MessageContent,
    MessageFilter,
    MessageRow,
)


class AdminQueries(abc.ABC):
    """The admin operations of the ``Store`` protocol, over the store's reads and writes."""

    # The backend's named queries and its parameter placeholder (``?`` or ``%s``).
    queries: ClassVar[Mapping[str, str]]
    mark: ClassVar[str]
    # The FROM of the listing's EXISTS on deliveries: ``deliveries d``, to be looked up
    # per message through ``deliveries_message``.
    message_deliveries: ClassVar[str] = "deliveries d"

    @abc.abstractmethod
    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one query, errors as StoreError."""

    @abc.abstractmethod
    async def delivery_counts(self) -> dict[str, dict[str, int]]: ...

    @abc.abstractmethod
    async def message_count(self) -> int: ...

    @abc.abstractmethod
    def bind_ids(self, sql: str, ids: list[int]) -> tuple[str, Sequence[Any]]:
        """Query ``sql``, which takes a list of message ids, and its parameters for
        ``ids`` (not empty)."""

    @abc.abstractmethod
    async def write_due_now(self, sql: str, *params: Any) -> int:
        """In the writer's next transaction, run ``sql`` with ``(now, now, *params)``:
        it makes deliveries due now. How many rows it changed."""

    @abc.abstractmethod
    async def write_replays(self, number: int, destinations: Sequence[str]) -> list[int]:
        """In the writer's next transaction, ``replay_delivery`` once per destination
        of message ``number``: the ids of the deliveries made."""

    # -- messages -------------------------------------------------------------

    async def list_messages(self, query: MessageFilter, limit: int) -> list[MessageRow]:
        mark = self.mark
        where, params = where_clause(
            (f"m.source = {mark}", query.source),
            (f"m.event_type = {mark}", query.event_type),
            (f"m.event_id = {mark}", query.event_id),
            (f"m.id >= {mark}", None if query.since is None else message_id_floor(query.since)),
            (f"m.id < {mark}", None if query.until is None else message_id_floor(query.until)),
            (f"m.id < {mark}", query.before_id),
            self._delivery_filter(query),
        )
        rows = await self.read(self.queries["list_messages"].format(where=where), [*params, limit])
        counts = await self._delivery_counts([row[0] for row in rows])
        return [message_row(row, counts.get(row[0], {})) for row in rows]

    def _delivery_filter(self, query: MessageFilter) -> tuple[str, Any]:
        """The listing's clause on deliveries: one EXISTS with the destination and the
        state asked for."""
        where, params = where_clause(
            (f"d.destination = {self.mark}", query.destination),
            (f"d.state = {self.mark}", query.state),
        )
        if not params:
            return ("", None)
        # Only fixed clauses are formatted in (their values are bound).
        clause = (
            f"EXISTS (SELECT 1 FROM {self.message_deliveries}"  # noqa: S608
            f" WHERE d.message_id = m.id AND {where})"
        )
        return (clause, tuple(params))

    async def _delivery_counts(self, ids: list[int]) -> dict[int, dict[str, int]]:
        if not ids:
            return {}
        counts: dict[int, dict[str, int]] = {}
        sql, params = self.bind_ids(self.queries["count_message_deliveries"], ids)
        for message_id, state, count in await self.read(sql, params):
            counts.setdefault(message_id, {})[state] = count
        return counts

    async def get_message(self, message_id: str) -> tuple[MessageRow, MessageContent] | None:
        number = parse_message_id(message_id)
        if number is None:
            return None
        rows = await self.read(self.queries["get_message"], (number,))
        if not rows:
            return None
        row = rows[0]
        counts = await self._delivery_counts([number])
        return message_row(row, counts.get(number, {})), message_content(row)

    # -- deliveries ------------------------------------------------------------

    async def list_deliveries(
        self,
        *,
        destination: str | None = None,
        state: str | None = None,
        message_id: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[DeliveryRow]:
        mark = self.mark
        number = None if message_id is None else parse_message_id(message_id)
        where, params = where_clause(
            (f"d.destination = {mark}", destination),
            (f"d.state = {mark}", state),
            (f"d.message_id = {mark}", number),
            (f"d.id < {mark}", before_id),
        )
        sql = self.queries["list_deliveries"].format(where=where)
        return [delivery_row(row) for row in await self.read(sql, [*params, limit])]

    async def get_delivery(self, delivery_id: int) -> DeliveryRow | None:
        rows = await self.read(self.queries["get_delivery"], (delivery_id,))
        return delivery_row(rows[0]) if rows else None

    async def attempts(self, delivery_id: int) -> list[AttemptRow]:
        return [
            AttemptRow(
                started_at=r[0],
                duration_ms=r[1],
                status=r[2],
                error=r[3],
                response_snippet=r[4] or b"",
            )
            for r in await self.read(self.queries["list_attempts"], (delivery_id,))
        ]

    async def retry_delivery(self, delivery_id: int) -> DeliveryRow | None:
        """Make a dead or pending delivery due now; None when it does not exist."""
        changed = await self.write_due_now(self.queries["retry_delivery"], delivery_id)
        row = await self.get_delivery(delivery_id)
        if row is not None and not changed:
            raise ConflictError(f"delivery {delivery_id} is already delivered")
        return row

    async def retry_dead(self, destination: str, since: float | None) -> int:
        return await self.write_due_now(self.queries["retry_dead"], destination, since or 0.0)

    async def replay(self, message_id: str, destinations: Sequence[str]) -> list[DeliveryRow]:
        """New pending deliveries of an existing message to ``destinations``."""
        number = parse_message_id(message_id)
        if number is None:
            return []
        ids = await self.write_replays(number, destinations)
        rows = [await self.get_delivery(i) for i in ids]
        return [r for r in rows if r is not None]

    # -- counts ------------------------------------------------------------------

    async def destination_counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per destination and state, from the store's counters."""
        return await self.delivery_counts()

    async def totals(self) -> tuple[int, dict[str, int]]:
        """How many messages, and how many deliveries in each state."""
        by_state = {"pending": 0, "delivered": 0, "dead": 0}
        for counts in (await self.delivery_counts()).values():
            for state, count in counts.items():
                by_state[state] += count
        return await self.message_count(), by_state
