"""What the admin API reads and changes in the PostgreSQL outbox: a part of ``PostgresStore``.

The operations are written once in ``hookgate.store.admin``; here are PostgreSQL's
placeholder, its queries, and how psycopg binds an id list and runs a change in the
writer.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hookgate.store import admin
from hookgate.store.postgres.database import Connection
from hookgate.store.postgres.sql import QUERIES
from hookgate.store.postgres.writer import WriteCall


class AdminQueries(admin.AdminQueries):
    """The admin operations of the ``Store`` protocol, over the store's reads and writes."""

    queries: ClassVar[Mapping[str, str]] = QUERIES
    mark: ClassVar[str] = "%s"

    @abc.abstractmethod
    async def write_call(self, call: WriteCall) -> Any:
        """Run ``call`` inside the writer's next transaction and return its result."""

    def bind_ids(self, sql: str, ids: list[int]) -> tuple[str, Sequence[Any]]:
        return sql, (ids,)

    async def write_due_now(self, sql: str, *params: Any) -> int:
        async def write(conn: Connection) -> int:
            now = time.time()
            cursor = await conn.execute(sql.encode(), (now, now, *params))
            return cursor.rowcount

        return int(await self.write_call(write))

    async def write_replays(self, number: int, destinations: Sequence[str]) -> list[int]:
        async def write(conn: Connection) -> list[int]:
            now = time.time()
            ids: list[int] = []
            for destination in destinations:
                cursor = await conn.execute(
                    QUERIES["replay_delivery"].encode(), (destination, now, now, number)
                )
                ids.extend(row[0] for row in await cursor.fetchall())
            return ids

        ids: list[int] = await self.write_call(write)
        return ids
