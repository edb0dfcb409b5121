"""``hookgate migrate``: a stopped daemon's SQLite outbox copied into PostgreSQL.

Messages, deliveries (pending ones are due again in PostgreSQL as they were),
attempts and pause state keep their ids, so a second run copies only what the first
did not; all of it in one transaction. A database that holds messages not copied
from this SQLite database is refused: the ids would collide.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

from hookgate.errors import StoreError
from hookgate.store.postgres.database import Connection, migrate
from hookgate.store.postgres.sql import QUERIES
from hookgate.store.sqlite.export import Export


@dataclass
class Copied:
    """What one run copied (rows already there are not counted) and found already there."""

    messages: int = 0
    messages_there: int = 0
    deliveries: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    paused: int = 0


async def copy_sqlite(
    sqlite_path: str, url: str, connect_args: dict[str, Any] | None = None
) -> Copied:
    """Copy the SQLite database at ``sqlite_path`` into the PostgreSQL one at ``url``."""
    try:
        with Export(sqlite_path) as source:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, **(connect_args or {})
            ) as conn:
                await migrate(conn)
                async with conn.transaction():
                    await _claim_target(conn, source.identity)
                    return await _copy(conn, source)
    except psycopg.Error as exc:
        raise StoreError(f"copy failed: {exc}") from None


async def _claim_target(conn: Connection, identity: str) -> None:
    """Refuse a database with messages of its own; mark it as this SQLite database's copy."""
    cursor = await conn.execute(QUERIES["select_migrated_from"].encode())
    row = await cursor.fetchone()
    if row is not None and row[0] != identity:
        raise StoreError(f"this database was copied from another SQLite database ({row[0]})")
    if row is None:
        cursor = await conn.execute(QUERIES["select_message_count"].encode())
        count = await cursor.fetchone()
        if count is not None and count[0]:
            raise StoreError(
                f"this database already holds {count[0]} messages of its own: copy into an"
                " empty database"
            )
        await conn.execute(QUERIES["set_migrated_from"].encode(), (identity,))


async def _copy(conn: Connection, source: Export) -> Copied:
    copied = Copied()
    for page in source.pages("messages"):
        cursor = await conn.execute(QUERIES["import_messages"].encode(), _columns(page, 9))
        inserted = len(await cursor.fetchall())
        copied.messages += inserted
        copied.messages_there += len(page) - inserted
    for page in source.pages("deliveries"):
        cursor = await conn.execute(QUERIES["import_deliveries"].encode(), _columns(page, 10))
        copied.deliveries.update(row[0] for row in await cursor.fetchall())
    for page in source.pages("attempts"):
        cursor = await conn.execute(QUERIES["import_attempts"].encode(), _columns(page, 7))
        copied.attempts += len(await cursor.fetchall())
    for name, paused, updated_at in source.destinations():
        await conn.execute(QUERIES["import_destination"].encode(), (name, paused, updated_at))
        copied.paused += paused
    await conn.execute(QUERIES["sync_identities"].encode())
    return copied


def _columns(page: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for unnest()."""
    return [[row[i] for row in page] for i in range(width)]
