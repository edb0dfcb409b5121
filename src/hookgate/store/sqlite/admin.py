"""What the admin API reads and changes in the SQLite outbox: a part of ``SQLiteStore``.

The operations are written once in ``hookgate.store.admin``; here are SQLite's
placeholder, its queries, and how aiosqlite binds an id list and runs a change in the
writer (one writer, no lock fights).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import aiosqlite

from hookgate.store import admin
from hookgate.store.sqlite.sql import QUERIES, marks
from hookgate.store.sqlite.writer import WriteCall


class AdminQueries(admin.AdminQueries):
    """The admin operations of the ``Store`` protocol, over the store's own reads and writes."""

    queries: ClassVar[Mapping[str, str]] = QUERIES
    mark: ClassVar[str] = "?"
    # Left to itself, SQLite picks ``deliveries_dead`` for "dead to a destination",
    # which reads every dead delivery of it for each message
    # (tests/integration/store/test_store_listing.py).
    message_deliveries: ClassVar[str] = "deliveries d INDEXED BY deliveries_message"

    @abc.abstractmethod
    async def write_call(self, call: WriteCall) -> Any:
        """Run ``call`` inside the writer's next transaction and return its result."""

    def bind_ids(self, sql: str, ids: list[int]) -> tuple[str, Sequence[Any]]:
        return sql.format(ids=marks(len(ids))), ids

    async def write_due_now(self, sql: str, *params: Any) -> int:
        async def write(conn: aiosqlite.Connection) -> int:
            now = time.time()
            async with conn.execute(sql, (now, now, *params)) as cursor:
                return cursor.rowcount

        return int(await self.write_call(write))

    async def write_replays(self, number: int, destinations: Sequence[str]) -> list[int]:
        async def write(conn: aiosqlite.Connection) -> list[int]:
            now = time.time()
            ids = []
            for destination in destinations:
                params = (destination, now, now, number)
                async with conn.execute(QUERIES["replay_delivery"], params) as cursor:
                    if cursor.rowcount:
                        ids.append(int(cursor.lastrowid or 0))
                        # Inserts are counted by their writer, not by a trigger.
                        await conn.execute(
                            QUERIES["add_delivery_count"], (destination, "pending", 1)
                        )
            return ids

        ids: list[int] = await self.write_call(write)
        return ids
