"""The SQLite outbox: WAL, one writer task with group commit, two read connections.

Every write goes through the writer task: callers enqueue and await a future; it
drains everything queued, commits it in one transaction (one fsync for
many webhooks), then resolves the futures. Reads use two more connections, which
WAL lets run beside the writer: one for the dispatcher's claims, one for everything
else (admin API, health, metrics), so that a slow admin query never delays a claim.

Each read runs start to finish in one call on its connection's thread: a statement
left open between two calls would pin the connection's snapshot, and a claim that
ran in that old snapshot could see a just-settled delivery as still pending.

One process serves a database: ``<path>.lock`` is held (flock) from before the
database is opened until the store closes, and records the database's identity, so
that a database deleted or replaced behind hookgate's back is noticed, not silently
recreated empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
import structlog

from hookgate import metrics
from hookgate.errors import StoreError
from hookgate.store import (
    Accepted,
    AttemptRecord,
    DestinationQueue,
    DueDelivery,
    NewMessage,
    QueueStats,
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
    """
    -- The database's identity: the lock file records it, ingress loop detection uses it.
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    INSERT INTO meta VALUES ('identity', lower(hex(randomblob(16)))), ('heartbeat', '0');
    ALTER TABLE deliveries ADD COLUMN dead_reason TEXT;
    -- Counts kept by triggers, so that stats cost the same at ten rows or ten million.
    CREATE TABLE message_count (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL);
    INSERT INTO message_count SELECT 1, count(*) FROM messages;
    CREATE TABLE delivery_counts (
        destination TEXT NOT NULL,
        state TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (destination, state)
    ) WITHOUT ROWID;
    INSERT INTO delivery_counts SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2;
    CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
        UPDATE message_count SET count = count + 1;
    END;
    CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
        UPDATE message_count SET count = count - 1;
    END;
    CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries BEGIN
        INSERT INTO delivery_counts VALUES (new.destination, new.state, 1)
        ON CONFLICT (destination, state) DO UPDATE SET count = count + 1;
    END;
    CREATE TRIGGER deliveries_count_update AFTER UPDATE OF state ON deliveries
    WHEN old.state != new.state BEGIN
        UPDATE delivery_counts SET count = count - 1
        WHERE destination = old.destination AND state = old.state;
        INSERT INTO delivery_counts VALUES (new.destination, new.state, 1)
        ON CONFLICT (destination, state) DO UPDATE SET count = count + 1;
    END;
    CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries BEGIN
        UPDATE delivery_counts SET count = count - 1
        WHERE destination = old.destination AND state = old.state;
    END;
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
    " last_error = ?, dead_reason = ?, updated_at = ? WHERE id = ?"
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
# The head of a destination's line: the delivery pending longest, and its message's age.
_SELECT_OLDEST_PENDING = """
    SELECT m.received_at
    FROM deliveries d INDEXED BY deliveries_fifo JOIN messages m ON m.id = d.message_id
    WHERE d.destination = ? AND d.state = 'pending'
    ORDER BY d.id LIMIT 1
"""
_SELECT_DELIVERY_COUNTS = "SELECT destination, state, count FROM delivery_counts WHERE count > 0"
_SELECT_MESSAGE_COUNT = "SELECT count FROM message_count"
# Ids are time-ordered, so "received before" is an id range on the primary key.
_PRUNE = """
    DELETE FROM messages WHERE id IN (
        SELECT m.id FROM messages m WHERE m.id < ? AND NOT EXISTS (
            SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state = 'pending')
        ORDER BY m.id LIMIT ?)
"""
_HEARTBEAT = "UPDATE meta SET value = ? WHERE key = 'heartbeat'"
# SQLite's limit on bound variables is 32766; stay far below it.
_LOOKUP_CHUNK = 400
# A write that succeeded this recently shows the database takes writes: no heartbeat needed.
_HEARTBEAT_FRESH = 1.0
# These error codes mean the file itself is damaged: retrying will not help.
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


CommitListener = Callable[[frozenset[str]], None]
WriteCall = Callable[[aiosqlite.Connection], Awaitable[Any]]


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


class LockFile:
    """``<database>.lock``: held while a store has the database open; names its holder.

    Its content, ``{"pid": ..., "database": <identity>}``, outlives the process, so the
    next start knows which database belongs here even when the file is gone.
    """

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock or raise StoreError naming the holder; return the recorded identity."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_record(fd).get("pid", "unknown")
            os.close(fd)
            database = self.path.with_suffix("")
            raise StoreError(
                f"database {database} is in use by another hookgate (pid {holder})"
            ) from None
        self._fd = fd
        identity = _lock_record(fd).get("database")
        return identity if isinstance(identity, str) else None

    def record(self, identity: str) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, orjson.dumps({"pid": os.getpid(), "database": identity}), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _lock_record(fd: int) -> dict[str, Any]:
    try:
        record = orjson.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, orjson.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


class SQLiteStore:
    """The embedded outbox. ``open()`` before use, ``close()`` drains queued writes."""

    def __init__(self, path: str, *, sync: str = "full") -> None:
        self.path = path
        self.sync = sync
        self.identity = ""
        self._lock = LockFile(Path(path))
        self._write: aiosqlite.Connection | None = None
        self._claims: aiosqlite.Connection | None = None
        self._read: aiosqlite.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._last_id = 0
        self._listeners: list[CommitListener] = []
        self.last_batch_size = 0
        # Why writes fail now (cleared by the next good commit), and why they never will
        # succeed again in this process (the file vanished or is corrupt).
        self._failure: str | None = None
        self._broken: str | None = None
        self._last_good_write = float("-inf")
        self._committing = False

    # -- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._open()
        except (sqlite3.Error, StoreError, OSError) as exc:
            await self.close()
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StoreError(f"cannot open database {self.path}: {detail}") from None
        # Cached: asyncio.get_running_loop() costs a getpid() syscall per call on 3.11.
        self._loop = asyncio.get_running_loop()
        self._writer_task = self._loop.create_task(self._run_writer(), name="outbox-writer")

    async def _open(self) -> None:
        folder = Path(self.path).parent
        if not folder.is_dir():
            raise StoreError(f"the directory {folder} does not exist")
        recorded = self._lock.acquire()
        if recorded is not None and not os.path.exists(self.path):
            raise StoreError(
                f"the database file is missing, but {self._lock.path} records database"
                f" {recorded} here: restore the file, or remove {self._lock.path} to start"
                " with a new, empty database"
            )
        self._write = await self._connect()
        await self._migrate(self._write)
        self.identity = await self._identity()
        if recorded is not None and recorded != self.identity:
            raise StoreError(
                f"this is database {self.identity}, but {self._lock.path} records database"
                f" {recorded} here: put the right file back, or remove {self._lock.path} to"
                " adopt this one"
            )
        self._lock.record(self.identity)
        self._file_id = _file_id(self.path)
        self._claims = await self._connect()
        self._read = await self._connect()
        self._last_id = await self._max_message_id()

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._writer_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer_task
        for conn in (self._read, self._claims, self._write):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    await conn.close()
        self._read = self._claims = self._write = None
        self._lock.release()

    @property
    def writer_task(self) -> asyncio.Task[None] | None:
        return self._writer_task

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with the destinations that got new deliveries in a commit."""
        self._listeners.append(listener)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute("PRAGMA busy_timeout = 5000")
            await conn.execute("PRAGMA journal_mode = WAL")
            synchronous = "FULL" if self.sync == "full" else "NORMAL"
            await conn.execute(f"PRAGMA synchronous = {synchronous}")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            # An unclosed connection's thread would keep a failed start from exiting.
            await conn.close()
            raise
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        version = await self._scalar(conn, "PRAGMA user_version")
        if version > len(MIGRATIONS):
            raise StoreError(f"database schema {version} is newer than this hookgate knows")
        for number in range(version, len(MIGRATIONS)):
            script = f"BEGIN IMMEDIATE; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1};"
            try:
                await conn.executescript(script + " COMMIT;")
            except sqlite3.Error:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise
            log.info("store.migrated", version=number + 1)

    async def _identity(self) -> str:
        return str(await self._scalar(self._write, "SELECT value FROM meta WHERE key = 'identity'"))

    async def _max_message_id(self) -> int:
        sql = "SELECT coalesce(max(id), 0) FROM messages"
        return int(await self._scalar(self._read, sql))

    async def _scalar(
        self, conn: aiosqlite.Connection | None, sql: str, params: Sequence[Any] = ()
    ) -> Any:
        rows = await self._fetch(conn, sql, params)
        return rows[0][0] if rows else None

    async def _fetch(
        self, conn: aiosqlite.Connection | None, sql: str, params: Sequence[Any] = ()
    ) -> list[Any]:
        """All rows of one query, run start to finish in one call (see the module doc)."""
        if conn is None:
            raise StoreError("the store is not open")
        try:
            return list(await conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            self._note_error(exc)
            raise StoreError(f"read failed: {exc}") from None
        except ValueError as exc:  # aiosqlite: the connection was closed meanwhile
            raise StoreError(str(exc)) from None

    def _note_error(self, exc: sqlite3.Error) -> None:
        if getattr(exc, "sqlite_errorcode", None) in _CORRUPT_CODES and self._broken is None:
            self._broken = f"the database is corrupt: {exc}"
            log.critical("store.corrupt", error=str(exc), path=self.path)

    # -- health -------------------------------------------------------------------

    @property
    def failure(self) -> str | None:
        """Why the store cannot take writes now, or None while it can."""
        return self._broken or self._failure

    async def check_writable(self) -> None:
        """Raise StoreError unless a write transaction commits now.

        A recent good commit answers for an idle writer; otherwise a heartbeat row is
        written, so that a full disk or a read-only file shows before a webhook meets it,
        and a writer stuck in a commit shows as not answering.
        """
        if self._broken is not None:
            raise StoreError(self._broken)
        idle = not self._committing and not self._pending
        fresh = time.monotonic() - self._last_good_write < _HEARTBEAT_FRESH
        if idle and fresh and self._failure is None:
            return

        async def heartbeat(conn: aiosqlite.Connection) -> None:
            await conn.execute(_HEARTBEAT, (str(time.time()),))

        await self.write_call(heartbeat)

    def _check_file(self) -> None:
        """Mark the store broken when its file was deleted or replaced since it opened."""
        if self._broken is not None:
            return
        try:
            current = _file_id(self.path)
        except OSError:
            current = None
        if current != self._file_id:
            self._broken = f"the database file {self.path} was deleted or replaced"
            log.critical("store.file_lost", path=self.path)

    # -- writes (through the writer) -----------------------------------------

    def _future(self) -> asyncio.Future[Any]:
        """A future for a queued write, after checking that the writer will resolve it."""
        if self._closing:
            raise StoreError("the store is closing")
        if self._broken is not None:
            raise StoreError(self._broken)
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

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` messages received before ``before`` with nothing pending."""
        floor = message_id_floor(before)

        async def delete(conn: aiosqlite.Connection) -> int:
            async with conn.execute(_PRUNE, (floor, limit)) as cursor:
                return cursor.rowcount

        return int(await self.write_call(delete))

    async def write_call(self, call: WriteCall) -> Any:
        """Run ``call`` inside the writer's next transaction and return its result.

        The call runs in a savepoint of its own: if it fails, only its caller sees the
        error; the webhooks committed in the same transaction are not touched.
        """
        future: asyncio.Future[Any] = self._future()
        self._pending.calls.append((call, future))
        return await future

    async def _run_writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, _Pending()
            if batch:
                self._committing = True
                try:
                    # Shielded: once a batch is taken, it is committed or failed, never dropped.
                    await asyncio.shield(self._commit(batch))
                finally:
                    self._committing = False
            if self._closing and not self._pending:
                return

    async def _commit(self, batch: _Pending) -> None:
        conn = self._write
        started = time.monotonic()
        try:
            if conn is None:
                raise StoreError("the store is not open")
            if self._broken is not None:
                raise StoreError(self._broken)
            await conn.execute("BEGIN IMMEDIATE")
            accepted = await self._insert_messages(conn, batch.messages)
            await self._record_attempts(conn, [r for r, _ in batch.attempts])
            results = [await _in_savepoint(conn, call) for call, _ in batch.calls]
            await conn.execute("COMMIT")
            # After the commit, before any 2xx: a vanished file means nothing was kept.
            self._check_file()
            if self._broken is not None:
                raise StoreError(self._broken)
        except Exception as exc:  # any failure fails this batch, never the writer
            self._commit_failed(batch, exc)
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
            return
        self._failure = None
        self._last_good_write = time.monotonic()
        metrics.commit_seconds.observe(time.monotonic() - started)
        if batch.messages:
            metrics.commit_size.observe(len(batch.messages))
        self.last_batch_size = len(batch.messages)
        _resolve(batch.futures(), [*accepted, *(None for _ in batch.attempts), *results])
        self._notify(batch, accepted)

    def _commit_failed(self, batch: _Pending, exc: Exception) -> None:
        if isinstance(exc, sqlite3.Error):
            self._note_error(exc)
        self._failure = str(exc)
        log.error("store.commit_failed", error=str(exc), batch=len(batch.messages))
        _resolve(batch.futures(), exception=StoreError(f"commit failed: {exc}"))

    def _notify(self, batch: _Pending, accepted: list[Accepted]) -> None:
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
        keyed = [m for m, _ in items if m.event_id is not None]
        if keyed:
            await conn.executemany(
                _EXPIRE_DEDUP_KEY,
                [(m.source, m.event_id, m.received_at - m.dedup_window) for m in keyed],
            )
        await conn.executemany(
            _INSERT_MESSAGE,
            [
                (
                    message_id,
                    m.source,
                    m.received_at,
                    m.event_type,
                    m.event_id,
                    m.event_id,
                    m.headers,
                    m.body,
                )
                for message_id, (m, _) in zip(ids, items, strict=True)
            ],
        )
        owners = await self._dedup_owners(conn, keyed) if keyed else {}
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
        """Which message id holds each (source, event_id) after this batch's inserts.

        One ``source = ? AND dedup_key IN (...)`` query per source and chunk: an
        equality and an IN list are what SQLite's planner turns into index lookups
        (a row-value IN over VALUES scans the whole table on SQLite 3.40).
        """
        by_source: dict[str, list[str]] = {}
        for message in messages:
            if message.event_id is not None:
                by_source.setdefault(message.source, []).append(message.event_id)
        owners: dict[tuple[str, str | None], int] = {}
        for source, event_ids in by_source.items():
            keys = list(dict.fromkeys(event_ids))
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[start : start + _LOOKUP_CHUNK]
                async with conn.execute(_dedup_sql(len(chunk)), (source, *chunk)) as cursor:
                    for key, message_id in await cursor.fetchall():
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
                (
                    r.state,
                    r.attempts,
                    r.next_attempt_at,
                    r.status,
                    r.error,
                    r.dead_reason,
                    now,
                    r.delivery_id,
                )
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

    # -- reads ----------------------------------------------------------------------

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one admin query, errors as StoreError."""
        return await self._fetch(self._read, sql, params)

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
        rows = await self._fetch(self._claims, sql, params)
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
        rows = await self._fetch(self._claims, "SELECT name FROM destinations WHERE paused")
        return {row[0] for row in rows}

    async def set_paused(self, destination: str, paused: bool) -> None:
        async def write(conn: aiosqlite.Connection) -> None:
            await conn.execute(_SET_PAUSED, (destination, int(paused), time.time()))

        await self.write_call(write)

    async def next_due_at(self, destination: str, after: float) -> float | None:
        value = await self._scalar(self._claims, _SELECT_NEXT_DUE, (destination, after))
        return None if value is None else float(value)

    async def delivery_counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per destination and state (only the non-zero ones)."""
        counts: dict[str, dict[str, int]] = {}
        for destination, state, count in await self.read(_SELECT_DELIVERY_COUNTS):
            counts.setdefault(destination, {})[state] = count
        return counts

    async def message_count(self) -> int:
        return int(await self._scalar(self._read, _SELECT_MESSAGE_COUNT) or 0)

    async def queue_stats(self) -> QueueStats:
        counts = await self.delivery_counts()
        destinations: dict[str, DestinationQueue] = {}
        for name, by_state in counts.items():
            pending = by_state.get("pending", 0)
            if pending:
                oldest = await self._scalar(self._read, _SELECT_OLDEST_PENDING, (name,))
                destinations[name] = DestinationQueue(pending=pending, oldest_pending_at=oldest)
        oldest_times = [q.oldest_pending_at for q in destinations.values() if q.oldest_pending_at]
        return QueueStats(
            pending=sum(q.pending for q in destinations.values()),
            oldest_pending_at=min(oldest_times) if oldest_times else None,
            dead=sum(by_state.get("dead", 0) for by_state in counts.values()),
            destinations=destinations,
        )


async def _in_savepoint(conn: aiosqlite.Connection, call: WriteCall) -> Any:
    """Run ``call``; on its failure undo only its changes and return the error as a value."""
    await conn.execute("SAVEPOINT call")
    try:
        result = await call(conn)
    except Exception as exc:
        if not conn.in_transaction:
            raise  # SQLite rolled the whole transaction back (disk full, I/O): fail the batch
        await conn.execute("ROLLBACK TO call")
        result = _CallFailed(exc)
    await conn.execute("RELEASE call")
    return result


class _CallFailed:
    """A write call's error, carried as its result so that only its caller sees it."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _dedup_sql(keys: int) -> str:
    marks = ", ".join("?" for _ in range(keys))
    # Only "?" placeholders are formatted in; the values are bound.
    return f"SELECT dedup_key, id FROM messages WHERE source = ? AND dedup_key IN ({marks})"  # noqa: S608


def _file_id(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


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
        elif isinstance(values[i], _CallFailed):
            future.set_exception(StoreError(f"write failed: {values[i].error}"))
        else:
            future.set_result(values[i])
