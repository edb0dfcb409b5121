"""The PostgreSQL database: connecting, migrating, one-call reads, and its health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from hookgate.errors import StoreError
from hookgate.store.postgres.sql import MIGRATIONS, QUERIES

log = structlog.get_logger("hookgate.store")

# How long a migration waits for a table's lock before it lets the writers go on and
# tries again (PostgreSQL's lock_timeout; a text value), and its pauses between tries.
_MIGRATION_LOCK_TIMEOUT = "2s"
_MIGRATION_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0)

Connection = psycopg.AsyncConnection[tuple[Any, ...]]
Pool = AsyncConnectionPool[Connection]


class Health:
    """Whether the database takes writes now (a failure clears with the next good commit)."""

    def __init__(self) -> None:
        self.failure: str | None = None
        self.last_good_write = float("-inf")

    def committed(self) -> None:
        self.failure = None
        self.last_good_write = time.monotonic()

    def commit_failed(self, exc: Exception) -> None:
        self.failure = str(exc)


async def migrate(conn: Connection) -> None:
    """Run the migrations this database has not had, in one transaction.

    The advisory lock makes processes that start together take turns: the first
    migrates, the others then find nothing left to do. Processes of the older version
    may still be writing meanwhile (a rolling upgrade): a migration that locks tables
    waits for their transactions, and every write queues behind it, so it waits for a
    table only ``_MIGRATION_LOCK_TIMEOUT`` at a time. Its transaction is tried again, after a
    pause, when that runs out or when PostgreSQL ends it to break a deadlock with a
    writer (whose own commit is retried too).
    """
    for pause in (*_MIGRATION_PAUSES, None):
        try:
            async with conn.transaction():
                applied = await _migrate(conn)
            for version in applied:  # once committed, not for a try rolled back
                log.info("store.migrated", version=version)
            return
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            if pause is None:
                raise StoreError(f"cannot migrate the database while it is busy: {exc}") from None
            log.warning("store.migration_retried", error=str(exc), retry_in_s=pause)
            await asyncio.sleep(pause)


async def _migrate(conn: Connection) -> list[int]:
    """The migrations' transaction: the versions it applied."""
    # As long as another process's migration takes, whatever lock_timeout the role or
    # the URL sets; then at most _MIGRATION_LOCK_TIMEOUT for each table.
    await conn.execute(QUERIES["limit_lock_waits"], ("0",))
    await conn.execute(QUERIES["lock_migrations"])
    await conn.execute(QUERIES["limit_lock_waits"], (_MIGRATION_LOCK_TIMEOUT,))
    await conn.execute(QUERIES["create_schema_table"])
    version = await _scalar(conn, QUERIES["select_schema_version"])
    if version > len(MIGRATIONS):
        raise StoreError(f"database schema {version} is newer than this hookgate knows")
    if 0 < version < len(MIGRATIONS):
        # Both tables, before any migration locks one of them: one order for every
        # path of upgrade. Writers take them in either order (an ingest messages
        # first, a batch that settles then prunes deliveries first), so a deadlock
        # with one stays possible, and migrate() tries again.
        await conn.execute(QUERIES["lock_tables_for_migration"])
    for number in range(version, len(MIGRATIONS)):
        await conn.execute(MIGRATIONS[number].encode())
        await conn.execute(QUERIES["insert_schema_version"], (number + 1,))
    return list(range(version + 1, len(MIGRATIONS) + 1))


async def fetch(
    pool: Pool | None,
    sql: str,
    params: Sequence[Any] | dict[str, Any] = (),
    *,
    binary: bool = False,
) -> list[Any]:
    """All rows of one statement, on a pooled connection in autocommit; errors as StoreError.

    ``binary``: the rows come in binary, for rows with bodies (claims): bytes as they
    are, where text would be hex that the server writes and the client parses.
    """
    cursor_rows, _ = await _run(pool, sql, params, binary)
    return cursor_rows


async def execute(pool: Pool | None, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
    """Run one statement in autocommit; how many rows it changed."""
    _, count = await _run(pool, sql, params, False)
    return count


async def _run(
    pool: Pool | None, sql: str, params: Sequence[Any] | dict[str, Any], binary: bool
) -> tuple[list[Any], int]:
    """Run one statement; once more on a new connection if the pooled one was cut.

    A database restart or failover cuts every pooled connection, and the pool only
    learns of it when one is used. Running again is safe: the statement failed with
    its connection, so nothing of it was committed (a claim that ran before the cut
    leases rows that simply come back when the lease runs out).
    """
    if pool is None or pool.closed:
        raise StoreError("the store is not open")
    try:
        return await _once(pool, sql, params, binary)
    except _ConnectionCut:
        pass
    try:
        return await _once(pool, sql, params, binary)
    except _ConnectionCut as cut:
        raise StoreError(f"query failed: {cut}") from None


class _ConnectionCut(Exception):
    """The pooled connection was broken (its statement did not run to a commit)."""


async def _once(
    pool: Pool, sql: str, params: Sequence[Any] | dict[str, Any], binary: bool
) -> tuple[list[Any], int]:
    conn: Connection | None = None
    try:
        async with pool.connection() as conn:
            cursor = await conn.execute(sql.encode(), params, binary=binary)
            rows = await cursor.fetchall() if cursor.description else []
            return rows, cursor.rowcount
    except psycopg.OperationalError as exc:
        if conn is not None and conn.broken:
            raise _ConnectionCut(str(exc)) from None
        raise StoreError(f"query failed: {exc}") from None
    except psycopg.Error as exc:  # the pool's PoolTimeout and PoolClosed too
        raise StoreError(f"query failed: {exc}") from None


async def _scalar(conn: Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    cursor = await conn.execute(sql.encode(), params)
    row = await cursor.fetchone()
    return row[0] if row else None
