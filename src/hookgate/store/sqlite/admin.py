"""What the admin API reads and changes in the SQLite outbox.

Reads use the store's read connection; changes (retry, replay) go through its
writer like every other write: one writer, no lock fights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import aiosqlite

from hookgate.errors import ConflictError
from hookgate.store import (
    AttemptRow,
    DeliveryRow,
    MessageContent,
    MessageFilter,
    MessageRow,
    format_message_id,
    message_id_floor,
    parse_message_id,
)
from hookgate.store.sqlite import SQLiteStore

_MESSAGE_COLUMNS = "m.id, m.source, m.event_type, m.event_id, m.received_at, length(m.body)"
_DELIVERY_COLUMNS = (
    "d.id, d.message_id, d.destination, d.state, d.attempts, d.next_attempt_at,"
    " d.last_status, d.last_error, d.updated_at, d.dead_reason"
)
_RETRY_DELIVERY = """
    UPDATE deliveries
    SET state = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?, dead_reason = NULL
    WHERE id = ? AND state != 'delivered'
"""
_RETRY_DEAD = """
    UPDATE deliveries
    SET state = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?, dead_reason = NULL
    WHERE destination = ? AND state = 'dead' AND updated_at >= ?
"""
# Nothing is inserted when retention pruned the message meanwhile.
_INSERT_DELIVERY = """
    INSERT INTO deliveries (message_id, destination, state, next_attempt_at, updated_at)
    SELECT id, ?, 'pending', ?, ? FROM messages WHERE id = ?
"""


class SQLiteAdmin:
    """Admin queries over an open ``SQLiteStore``."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self.store.read(sql, params)

    # -- messages -------------------------------------------------------------

    async def list_messages(self, query: MessageFilter, limit: int) -> list[MessageRow]:
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("m.source = ?", query.source),
            ("m.event_type = ?", query.event_type),
            ("m.id >= ?", None if query.since is None else message_id_floor(query.since)),
            ("m.id < ?", None if query.until is None else message_id_floor(query.until)),
            ("m.id < ?", query.before_id),
            (
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state = ?)",
                query.state,
            ),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = " AND ".join(clauses) or "1"
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE {where} ORDER BY m.id DESC LIMIT ?"  # noqa: S608 - fixed fragments, bound values
        rows = await self._rows(sql, [*params, limit])
        counts = await self._delivery_counts([row[0] for row in rows])
        return [_message_row(row, counts.get(row[0], {})) for row in rows]

    async def _delivery_counts(self, ids: list[int]) -> dict[int, dict[str, int]]:
        if not ids:
            return {}
        marks = ",".join("?" for _ in ids)
        sql = f"SELECT message_id, state, count(*) FROM deliveries WHERE message_id IN ({marks}) GROUP BY 1, 2"  # noqa: S608, E501 - placeholders only
        counts: dict[int, dict[str, int]] = {}
        for message_id, state, count in await self._rows(sql, ids):
            counts.setdefault(message_id, {})[state] = count
        return counts

    async def get_message(self, message_id: str) -> tuple[MessageRow, MessageContent] | None:
        number = parse_message_id(message_id)
        if number is None:
            return None
        sql = f"SELECT {_MESSAGE_COLUMNS}, m.headers, m.body FROM messages m WHERE m.id = ?"  # noqa: S608
        rows = await self._rows(sql, (number,))
        if not rows:
            return None
        row = rows[0]
        counts = await self._delivery_counts([number])
        return _message_row(row, counts.get(number, {})), MessageContent(row[6], row[7])

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
        clauses: list[str] = []
        params: list[Any] = []
        number = None if message_id is None else parse_message_id(message_id)
        for clause, value in (
            ("d.destination = ?", destination),
            ("d.state = ?", state),
            ("d.message_id = ?", number),
            ("d.id < ?", before_id),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = " AND ".join(clauses) or "1"
        sql = (
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d WHERE {where} ORDER BY d.id DESC LIMIT ?"  # noqa: S608 - fixed fragments, bound values
        )
        return [_delivery_row(row) for row in await self._rows(sql, [*params, limit])]

    async def get_delivery(self, delivery_id: int) -> DeliveryRow | None:
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = ?"  # noqa: S608
        rows = await self._rows(sql, (delivery_id,))
        return _delivery_row(rows[0]) if rows else None

    async def attempts(self, delivery_id: int) -> list[AttemptRow]:
        sql = (
            "SELECT started_at, duration_ms, status, error, response_snippet FROM attempts"
            " WHERE delivery_id = ? ORDER BY id"
        )
        return [
            AttemptRow(
                started_at=r[0],
                duration_ms=r[1],
                status=r[2],
                error=r[3],
                response_snippet=r[4] or b"",
            )
            for r in await self._rows(sql, (delivery_id,))
        ]

    async def retry_delivery(self, delivery_id: int) -> DeliveryRow | None:
        """Make a dead or pending delivery due now; None when it does not exist."""

        async def write(conn: aiosqlite.Connection) -> int:
            now = time.time()
            async with conn.execute(_RETRY_DELIVERY, (now, now, delivery_id)) as cursor:
                return cursor.rowcount

        changed = await self.store.write_call(write)
        row = await self.get_delivery(delivery_id)
        if row is not None and not changed:
            raise ConflictError(f"delivery {delivery_id} is already delivered")
        return row

    async def retry_dead(self, destination: str, since: float | None) -> int:
        async def write(conn: aiosqlite.Connection) -> int:
            now = time.time()
            params = (now, now, destination, since or 0.0)
            async with conn.execute(_RETRY_DEAD, params) as cursor:
                return cursor.rowcount

        return int(await self.store.write_call(write))

    async def replay(self, message_id: str, destinations: Sequence[str]) -> list[DeliveryRow]:
        """New pending deliveries of an existing message to ``destinations``."""
        number = parse_message_id(message_id)
        if number is None:
            return []

        async def write(conn: aiosqlite.Connection) -> list[int]:
            now = time.time()
            ids = []
            for destination in destinations:
                async with conn.execute(_INSERT_DELIVERY, (destination, now, now, number)) as cur:
                    if cur.rowcount:
                        ids.append(int(cur.lastrowid or 0))
            return ids

        ids = await self.store.write_call(write)
        rows = [await self.get_delivery(i) for i in ids]
        return [r for r in rows if r is not None]

    # -- counts ------------------------------------------------------------------

    async def destination_counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per destination and state, from the store's counters."""
        return await self.store.delivery_counts()

    async def totals(self) -> tuple[int, dict[str, int]]:
        """How many messages, and how many deliveries in each state."""
        by_state = {"pending": 0, "delivered": 0, "dead": 0}
        for counts in (await self.store.delivery_counts()).values():
            for state, count in counts.items():
                by_state[state] += count
        return await self.store.message_count(), by_state


def _message_row(row: Sequence[Any], counts: dict[str, int]) -> MessageRow:
    return MessageRow(
        id=format_message_id(row[0]),
        number=row[0],
        source=row[1],
        event_type=row[2],
        event_id=row[3],
        received_at=row[4],
        size=row[5],
        pending=counts.get("pending", 0),
        delivered=counts.get("delivered", 0),
        dead=counts.get("dead", 0),
    )


def _delivery_row(row: Sequence[Any]) -> DeliveryRow:
    return DeliveryRow(
        id=row[0],
        message_id=format_message_id(row[1]),
        destination=row[2],
        state=row[3],
        attempts=row[4],
        next_attempt_at=row[5],
        last_status=row[6],
        last_error=row[7],
        updated_at=row[8],
        dead_reason=row[9],
    )
