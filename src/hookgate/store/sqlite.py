"""The SQLite outbox: WAL, one writer task with group commit, one read connection.

Every write goes through the writer task: callers enqueue and await a future; it
drains everything queued, commits it in one transaction (one fsync for
many webhooks), then resolves the futures. Reads use a second connection, which
WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import orjson
import structlog

from hookgate import metrics
from hookgate.store import (
    Accepted,
    AttemptRecord,
    DestinationQueue,
    DueDelivery,
    NewMessage,
    QueueStats,
    StoreError,
    format_message_id,
    message_id_floor,
    new_message_id,
)

log = structlog.get_logger("hookgate.store")

# Numbered migrations; PRAGMA user_version records how many have run.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        received_at REAL NOT NULL,
        event_type TEXT,
        event_id TEXT,
        dedup_key TEXT,            -- event_id while inside the dedup window, then NULL
        headers BLOB NOT NULL,
        body BLOB NOT NULL
    );
    CREATE UNIQUE INDEX messages_dedup ON messages(source, dedup_key)
        WHERE dedup_key IS NOT NULL;
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        destination TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        updated_at REAL NOT NULL
    );
    CREATE INDEX deliveries_due ON deliveries(destination, next_attempt_at, id)
        WHERE state = 'pending';
    CREATE INDEX deliveries_message ON deliveries(message_id);
    CREATE INDEX deliveries_dead ON deliveries(destination, updated_at) WHERE state = 'dead';
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
        started_at REAL NOT NULL,
        duration_ms REAL NOT NULL,
        status INTEGER,
        error TEXT,
        response_snippet BLOB
    );
    CREATE INDEX attempts_delivery ON attempts(delivery_id);
    """,
    """
    CREATE TABLE destinations (
        name TEXT PRIMARY KEY,
        paused INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    -- Ordered destinations take their head in delivery order, whatever its due time.
    CREATE INDEX deliveries_fifo ON deliveries(destination, id) WHERE state = 'pending';
    """,
)

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, source, received_at, event_type, event_id, dedup_key, headers, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_EXPIRE_DEDUP_KEY = (
    "UPDATE messages SET dedup_key = NULL WHERE source = ? AND dedup_key = ? AND received_at < ?"
)
_INSERT_DELIVERY = (
    "INSERT INTO deliveries (message_id, destination, state, next_attempt_at, updated_at)"
    " VALUES (?, ?, 'pending', ?, ?)"
)
_UPDATE_DELIVERY = (
    "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, last_status = ?,"
    " last_error = ?, updated_at = ? WHERE id = ?"
)
_INSERT_ATTEMPT = (
    "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, response_snippet)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_DELIVERY_COLUMNS = """
    d.id, d.message_id, d.attempts, d.next_attempt_at,
    m.received_at, m.source, m.event_type, m.headers, m.body
"""
_SELECT_DUE = f"""
    SELECT {_DELIVERY_COLUMNS}
    FROM deliveries d JOIN messages m ON m.id = d.message_id
    WHERE d.destination = ? AND d.state = 'pending' AND d.next_attempt_at <= ?
      AND d.id NOT IN (SELECT value FROM json_each(?))
    ORDER BY d.next_attempt_at, d.id LIMIT ?
"""  # noqa: S608 - a constant column list
_SELECT_HEAD = f"""
    SELECT {_DELIVERY_COLUMNS}
    FROM deliveries d INDEXED BY deliveries_fifo JOIN messages m ON m.id = d.message_id
    WHERE d.destination = ? AND d.state = 'pending'
    ORDER BY d.id LIMIT ?
"""  # noqa: S608 - a constant column list
_SET_PAUSED = """
    INSERT INTO destinations (name, paused, updated_at) VALUES (?, ?, ?)
    ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at
"""
_SELECT_NEXT_DUE = """
    SELECT next_attempt_at FROM deliveries
    WHERE destination = ? AND state = 'pending' AND next_attempt_at > ?
    ORDER BY next_attempt_at LIMIT 1
"""
_SELECT_PENDING_BY_DESTINATION = """
    SELECT d.destination, count(*), min(m.received_at)
    FROM deliveries d JOIN messages m ON m.id = d.message_id
    WHERE d.state = 'pending' GROUP BY d.destination
"""
# Ids are time-ordered, so "received before" is an id range on the primary key.
_PRUNE = """
    DELETE FROM messages WHERE id IN (
        SELECT m.id FROM messages m WHERE m.id < ? AND NOT EXISTS (
            SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state = 'pending')
        ORDER BY m.id LIMIT ?)
"""
_COUNT_DEAD = "SELECT count(*) FROM deliveries WHERE state = 'dead'"
# SQLite's limit on bound variables is 32766; stay far below it.
_LOOKUP_CHUNK = 400


CommitListener = Callable[[frozenset[str]], None]
WriteCall = Callable[[aiosqlite.Connection], Awaitable[Any]]


async def _nothing(conn: aiosqlite.Connection) -> None:
    return None


@dataclass(slots=True)
class _Pending:
    messages: list[tuple[NewMessage, asyncio.Future[Accepted]]] = field(default_factory=list)
    attempts: list[tuple[AttemptRecord, asyncio.Future[None]]] = field(default_factory=list)
    calls: list[tuple[WriteCall, asyncio.Future[Any]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.messages or self.attempts or self.calls)

    def futures(self) -> Iterable[asyncio.Future[Any]]:
        yield from (f for _, f in self.messages)
        yield from (f for _, f in self.attempts)
        yield from (f for _, f in self.calls)


class SQLiteStore:
    """The embedded outbox. ``open()`` before use, ``close()`` drains queued writes."""

    def __init__(self, path: str, *, sync: str = "full") -> None:
        self.path = path
        self.sync = sync
        self._write: aiosqlite.Connection | None = None
        self._read: aiosqlite.Connection | None = None
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._last_id = 0
        self._listeners: list[CommitListener] = []
        self.last_batch_size = 0

    # -- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        try:
            self._write = await self._connect()
            await self._migrate(self._write)
            self._read = await self._connect()
            self._last_id = await self._max_message_id()
        except (sqlite3.Error, StoreError) as exc:
            await self.close()
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        # Cached: asyncio.get_running_loop() costs a getpid() syscall per call on 3.11.
        self._loop = asyncio.get_running_loop()
        self._writer_task = self._loop.create_task(self._run_writer(), name="outbox-writer")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._writer_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer_task
        for conn in (self._read, self._write):
            if conn is not None:
                await conn.close()
        self._read = self._write = None

    @property
    def writer_task(self) -> asyncio.Task[None] | None:
        return self._writer_task

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with the destinations that got new deliveries in a commit."""
        self._listeners.append(listener)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute(f"PRAGMA synchronous = {'FULL' if self.sync == 'full' else 'NORMAL'}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        version = await self._scalar(conn, "PRAGMA user_version")
        if version > len(MIGRATIONS):
            raise StoreError(f"database schema {version} is newer than this hookgate knows")
        for number in range(version, len(MIGRATIONS)):
            await conn.execute("BEGIN IMMEDIATE")
            await self._apply_migration(conn, number)
            await conn.execute("COMMIT")
            log.info("store.migrated", version=number + 1)

    async def _apply_migration(self, conn: aiosqlite.Connection, number: int) -> None:
        for statement in _statements(MIGRATIONS[number]):
            await conn.execute(statement)
        await conn.execute(f"PRAGMA user_version = {number + 1}")

    async def _max_message_id(self) -> int:
        return int(await self._scalar(self.reader(), "SELECT coalesce(max(id), 0) FROM messages"))

    @staticmethod
    async def _scalar(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
        async with conn.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    # -- writes (through the writer) -----------------------------------------

    def _future(self) -> asyncio.Future[Any]:
        """A future for a queued write, after checking that the writer will resolve it."""
        if self._closing:
            raise StoreError("the store is closing")
        task = self._writer_task
        if self._loop is None or task is None or task.done():
            raise StoreError("the outbox writer is not running")
        self._wake.set()
        return self._loop.create_future()

    async def accept(self, message: NewMessage) -> Accepted:
        future: asyncio.Future[Accepted] = self._future()
        self._pending.messages.append((message, future))
        return await future

    def record_attempt(self, record: AttemptRecord) -> asyncio.Future[None]:
        # A plain future, not a coroutine: the dispatcher shields it without a task.
        future: asyncio.Future[None] = self._future()
        self._pending.attempts.append((record, future))
        return future

    async def check_writable(self) -> None:
        await self.write_call(_nothing)

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` messages received before ``before`` with nothing pending."""
        floor = message_id_floor(before)

        async def delete(conn: aiosqlite.Connection) -> int:
            async with conn.execute(_PRUNE, (floor, limit)) as cursor:
                return cursor.rowcount

        return int(await self.write_call(delete))

    async def write_call(self, call: WriteCall) -> Any:
        """Run ``call`` inside the writer's next transaction and return its result."""
        future: asyncio.Future[Any] = self._future()
        self._pending.calls.append((call, future))
        return await future

    async def _run_writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, _Pending()
            if batch:
                # Shielded: once a batch is taken, it is committed or failed, never dropped.
                await asyncio.shield(self._commit(batch))
            if self._closing and not self._pending:
                return

    async def _commit(self, batch: _Pending) -> None:
        conn = self._write
        if conn is None:
            raise StoreError("the store is not open")
        started = time.monotonic()
        try:
            await conn.execute("BEGIN IMMEDIATE")
            accepted = await self._insert_messages(conn, batch.messages)
            await self._record_attempts(conn, [r for r, _ in batch.attempts])
            results = [await call(conn) for call, _ in batch.calls]
            await conn.execute("COMMIT")
        except Exception as exc:  # any failure fails this batch, never the writer
            log.error("store.commit_failed", error=repr(exc), batch=len(batch.messages))
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            _resolve(batch.futures(), exception=StoreError(f"commit failed: {exc}"))
            return
        metrics.commit_seconds.observe(time.monotonic() - started)
        if batch.messages:
            metrics.commit_size.observe(len(batch.messages))
        self.last_batch_size = len(batch.messages)
        _resolve(batch.futures(), [*accepted, *(None for _ in batch.attempts), *results])
        touched = frozenset(
            d
            for (m, _), r in zip(batch.messages, accepted, strict=True)
            if not r.duplicate
            for d in m.destinations
        )
        if touched:
            for listener in self._listeners:
                listener(touched)

    async def _insert_messages(
        self, conn: aiosqlite.Connection, items: list[tuple[NewMessage, asyncio.Future[Accepted]]]
    ) -> list[Accepted]:
        if not items:
            return []
        ids = [self._next_id(m.received_at) for m, _ in items]
        keyed = [(i, m) for i, (m, _) in enumerate(items) if m.event_id is not None]
        if keyed:
            await conn.executemany(
                _EXPIRE_DEDUP_KEY,
                [(m.source, m.event_id, m.received_at - m.dedup_window) for _, m in keyed],
            )
        await conn.executemany(
            _INSERT_MESSAGE,
            [
                (
                    ids[i],
                    m.source,
                    m.received_at,
                    m.event_type,
                    m.event_id,
                    m.event_id,
                    m.headers,
                    m.body,
                )
                for i, (m, _) in enumerate(items)
            ],
        )
        owners = await self._dedup_owners(conn, [m for _, m in keyed]) if keyed else {}
        results: list[Accepted] = []
        rows: list[tuple[int, str, float, float]] = []
        for message_id, (message, _) in zip(ids, items, strict=True):
            owner = owners.get((message.source, message.event_id), message_id)
            results.append(Accepted(format_message_id(owner), duplicate=owner != message_id))
            if owner == message_id:
                now = message.received_at
                rows.extend((message_id, d, now, now) for d in message.destinations)
        if rows:
            await conn.executemany(_INSERT_DELIVERY, rows)
        return results

    async def _dedup_owners(
        self, conn: aiosqlite.Connection, messages: list[NewMessage]
    ) -> dict[tuple[str, str | None], int]:
        """Which message id holds each (source, event_id) after this batch's inserts."""
        owners: dict[tuple[str, str | None], int] = {}
        keys = list(dict.fromkeys((m.source, m.event_id) for m in messages))
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            values = ",".join("(?, ?)" for _ in chunk)
            # Only "(?, ?)" placeholders are formatted in; the values are bound.
            sql = f"SELECT source, dedup_key, id FROM messages WHERE (source, dedup_key) IN (VALUES {values})"  # noqa: S608, E501
            params = [p for key in chunk for p in key]
            async with conn.execute(sql, params) as cursor:
                for source, key, message_id in await cursor.fetchall():
                    owners[(source, key)] = message_id
        return owners

    def _next_id(self, received_at: float) -> int:
        self._last_id = max(new_message_id(received_at), self._last_id + 1)
        return self._last_id

    async def _record_attempts(
        self, conn: aiosqlite.Connection, records: list[AttemptRecord]
    ) -> None:
        if not records:
            return
        now = time.time()
        await conn.executemany(
            _UPDATE_DELIVERY,
            [
                (r.state, r.attempts, r.next_attempt_at, r.status, r.error, now, r.delivery_id)
                for r in records
            ],
        )
        await conn.executemany(
            _INSERT_ATTEMPT,
            [
                (r.delivery_id, r.started_at, r.duration_ms, r.status, r.error, r.response_snippet)
                for r in records
            ],
        )

    # -- reads (on the read connection) ---------------------------------------

    def reader(self) -> aiosqlite.Connection:
        if self._read is None:
            raise StoreError("the store is not open")
        return self._read

    async def due_deliveries(
        self, destination: str, now: float, limit: int, exclude: Collection[int] = ()
    ) -> list[DueDelivery]:
        # The excluded (in flight) rows are skipped in the index, their bodies never read.
        params = (destination, now, orjson.dumps(list(exclude)), limit)
        return await self._deliveries(_SELECT_DUE, params, destination)

    async def head_deliveries(self, destination: str, limit: int) -> list[DueDelivery]:
        return await self._deliveries(_SELECT_HEAD, (destination, limit), destination)

    async def _deliveries(
        self, sql: str, params: Sequence[Any], destination: str
    ) -> list[DueDelivery]:
        async with self.reader().execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [
            DueDelivery(
                id=row[0],
                message_id=format_message_id(row[1]),
                destination=destination,
                attempts=row[2],
                next_attempt_at=row[3],
                received_at=row[4],
                source=row[5],
                event_type=row[6],
                headers=row[7],
                body=row[8],
            )
            for row in rows
        ]

    async def paused_destinations(self) -> set[str]:
        async with self.reader().execute("SELECT name FROM destinations WHERE paused") as cursor:
            return {row[0] for row in await cursor.fetchall()}

    async def set_paused(self, destination: str, paused: bool) -> None:
        async def write(conn: aiosqlite.Connection) -> None:
            await conn.execute(_SET_PAUSED, (destination, int(paused), time.time()))

        await self.write_call(write)

    async def next_due_at(self, destination: str, after: float) -> float | None:
        value = await self._scalar(self.reader(), _SELECT_NEXT_DUE, (destination, after))
        return None if value is None else float(value)

    async def queue_stats(self) -> QueueStats:
        conn = self.reader()
        async with conn.execute(_SELECT_PENDING_BY_DESTINATION) as cursor:
            rows = await cursor.fetchall()
        destinations = {
            name: DestinationQueue(pending=count, oldest_pending_at=oldest)
            for name, count, oldest in rows
        }
        oldest = [q.oldest_pending_at for q in destinations.values() if q.oldest_pending_at]
        return QueueStats(
            pending=sum(q.pending for q in destinations.values()),
            oldest_pending_at=min(oldest) if oldest else None,
            dead=await self._scalar(conn, _COUNT_DEAD),
            destinations=destinations,
        )


def _resolve(
    futures: Iterable[asyncio.Future[Any]],
    values: Sequence[Any] = (),
    exception: BaseException | None = None,
) -> None:
    """Resolve a committed batch's futures with its values, or fail them all."""
    for i, future in enumerate(futures):
        if future.done():  # the caller went away; the write stands regardless
            continue
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(values[i])


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
