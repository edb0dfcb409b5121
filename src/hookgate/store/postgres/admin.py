"""What the admin API reads and changes in the PostgreSQL outbox: a part of ``PostgresStore``.

Reads run on pooled connections; changes (retry, replay) go through the writer like
every other write. A new admin operation is one method here and its query in
``queries.sql``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from typing import Any

from hookgate.errors import ConflictError
from hookgate.store import (
    AttemptRow,
    DeliveryRow,
    MessageContent,
    MessageFilter,
    MessageRow,
    message_id_floor,
    parse_message_id,
)
from hookgate.store.postgres.database import Connection
from hookgate.store.postgres.sql import QUERIES
from hookgate.store.postgres.writer import WriteCall
from hookgate.store.rows import delivery_row, message_content, message_row, where_clause


class AdminQueries(abc.ABC):
    """The admin operations of the ``Store`` protocol, over the store's reads and writes."""

    @abc.abstractmethod
    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one query, errors as StoreError."""

    @abc.abstractmethod
    async def write_call(self, call: WriteCall) -> Any:
        """Run ``call`` inside the writer's next transaction and return its result."""

    @abc.abstractmethod
    async def delivery_counts(self) -> dict[str, dict[str, int]]: ...

    @abc.abstractmethod
    async def message_count(self) -> int: ...

    # -- messages -------------------------------------------------------------

    async def list_messages(self, query: MessageFilter, limit: int) -> list[MessageRow]:
        where, params = where_clause(
            ("m.source = %s", query.source),
            ("m.event_type = %s", query.event_type),
            ("m.event_id = %s", query.event_id),
            ("m.id >= %s", None if query.since is None else message_id_floor(query.since)),
            ("m.id < %s", None if query.until is None else message_id_floor(query.until)),
            ("m.id < %s", query.before_id),
            _delivery_filter(query),
        )
        rows = await self.read(QUERIES["list_messages"].format(where=where), [*params, limit])
        counts = await self._delivery_counts([row[0] for row in rows])
        return [message_row(row, counts.get(row[0], {})) for row in rows]

    async def _delivery_counts(self, ids: list[int]) -> dict[int, dict[str, int]]:
        if not ids:
            return {}
        counts: dict[int, dict[str, int]] = {}
        for message_id, state, count in await self.read(
            QUERIES["count_message_deliveries"], (ids,)
        ):
            counts.setdefault(message_id, {})[state] = count
        return counts

    async def get_message(self, message_id: str) -> tuple[MessageRow, MessageContent] | None:
        number = parse_message_id(message_id)
        if number is None:
            return None
        rows = await self.read(QUERIES["get_message"], (number,))
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
        number = None if message_id is None else parse_message_id(message_id)
        where, params = where_clause(
            ("d.destination = %s", destination),
            ("d.state = %s", state),
            ("d.message_id = %s", number),
            ("d.id < %s", before_id),
        )
        sql = QUERIES["list_deliveries"].format(where=where)
        return [delivery_row(row) for row in await self.read(sql, [*params, limit])]

    async def get_delivery(self, delivery_id: int) -> DeliveryRow | None:
        rows = await self.read(QUERIES["get_delivery"], (delivery_id,))
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
            for r in await self.read(QUERIES["list_attempts"], (delivery_id,))
        ]

    async def retry_delivery(self, delivery_id: int) -> DeliveryRow | None:
        """Make a dead or pending delivery due now; None when it does not exist."""

        async def write(conn: Connection) -> int:
            now = time.time()
            cursor = await conn.execute(QUERIES["retry_delivery"].encode(), (now, now, delivery_id))
            return cursor.rowcount

        changed = await self.write_call(write)
        row = await self.get_delivery(delivery_id)
        if row is not None and not changed:
            raise ConflictError(f"delivery {delivery_id} is already delivered")
        return row

    async def retry_dead(self, destination: str, since: float | None) -> int:
        async def write(conn: Connection) -> int:
            now = time.time()
            params = (now, now, destination, since or 0.0)
            cursor = await conn.execute(QUERIES["retry_dead"].encode(), params)
            return cursor.rowcount

        return int(await self.write_call(write))

    async def replay(self, message_id: str, destinations: Sequence[str]) -> list[DeliveryRow]:
        """New pending deliveries of an existing message to ``destinations``."""
        number = parse_message_id(message_id)
        if number is None:
            return []

        async def write(conn: Connection) -> list[int]:
            now = time.time()
            ids: list[int] = []
            for destination in destinations:
                cursor = await conn.execute(
                    QUERIES["replay_delivery"].encode(), (destination, now, now, number)
                )
                ids.extend(row[0] for row in await cursor.fetchall())
            return ids

        ids = await self.write_call(write)
        rows = [await self.get_delivery(i) for i in ids]
        return [r for r in rows if r is not None]

    # -- counts ------------------------------------------------------------------

    async def destination_counts(self) -> dict[str, dict[str, int]]:
        return await self.delivery_counts()

    async def totals(self) -> tuple[int, dict[str, int]]:
        by_state = {"pending": 0, "delivered": 0, "dead": 0}
        for counts in (await self.delivery_counts()).values():
            for state, count in counts.items():
                by_state[state] += count
        return await self.message_count(), by_state


def _delivery_filter(query: MessageFilter) -> tuple[str, Any]:
    """The listing's clause on deliveries: one EXISTS with the destination and the
    state asked for, looked up per message through ``deliveries_message``."""
    where, params = where_clause(
        ("d.destination = %s", query.destination), ("d.state = %s", query.state)
    )
    if not params:
        return ("", None)
    # Only fixed clauses are formatted in (their values are bound).
    clause = f"EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND {where})"  # noqa: S608
    return (clause, tuple(params))
