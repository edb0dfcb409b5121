"""The SQLite outbox: WAL, one writer task with group commit, two read connections.

Every write goes through the writer (writer.py). Reads use more connections, which
WAL lets run beside the writer: for the dispatcher's claims, and one for everything
else (admin API, health, metrics), so that a slow admin query never delays a claim.
Each read runs start to finish in one call (database.py). A claim of a small page
runs on the event loop's own thread, on a connection of its own that never waits for
a lock: an indexed read of a few rows costs less than the trip to a connection's
thread and back, which under load was most of a claim's time (docs/benchmarks.md);
a larger page, or a claim that would have to wait, goes to the claims thread.
The WAL is checkpointed beside the commits, on a connection of its own, not inside
them (database.py: ``Checkpointer``).

Claims lease deliveries to the process as the ``Store`` protocol says; with one
process per database, a lease is a set in memory that an outcome or a release
empties, and that dies with the process: at the next start everything is due again.
A commit's new deliveries can be leased without a claim: the writer knows them as a
claim would read them, and hands them to the workers as it announces the commit
(``claim_committed``); what no worker takes stays pending for the next claim.

One process serves a database: ``<path>.lock`` is held (flock) from before the
database is opened until the store closes, and records the database's identity, so
that a database deleted or replaced behind hookgate's back is noticed, not silently
recreated empty (lockfile.py).

The SQL is in files beside this one: ``queries.sql`` (every query, by name),
``migrations/`` and ``schema.sql`` (what the migrations produce); see sql.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson

from hookgate.errors import StoreError
from hookgate.store import (
    Accepted,
    AttemptRecord,
    CommitListener,
    DestinationQueue,
    DueDelivery,
    NewMessage,
    QueueStats,
    message_id_floor,
)
from hookgate.store.rows import due_deliveries
from hookgate.store.sqlite.admin import AdminQueries
from hookgate.store.sqlite.database import (
    Checkpointer,
    Health,
    connect,
    connect_here,
    fetch,
    migrate,
    read_in_one_trip,
    scalar,
)
from hookgate.store.sqlite.lockfile import LockFile
from hookgate.store.sqlite.sql import MIGRATIONS, QUERIES
from hookgate.store.sqlite.writer import WriteCall, Writer

__all__ = ["MIGRATIONS", "QUERIES", "SQLiteStore"]

T = TypeVar("T")

# A write that succeeded this recently shows the database takes writes: no heartbeat needed.
_HEARTBEAT_FRESH = 1.0
# The largest claim read on the event loop's thread: a page of this many rows (bodies of
# a few KB, indexed) reads in well under a millisecond; a larger one goes to a thread.
# Large bodies cost the loop in proportion, as they already do several times over: the
# loop reads them at ingest, and copies them into the frame to the delivery process.
_LOOP_CLAIM_ROWS = 64
# SQLite's answers to a read that would have to wait for a lock (WAL readers rarely do).
_WOULD_WAIT = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class SQLiteStore(AdminQueries):
    """The embedded outbox. ``open()`` before use, ``close()`` drains queued writes."""

    def __init__(self, path: str, *, sync: str = "full") -> None:
        self.path = path
        self.sync = sync
        self.identity = ""
        self._lock = LockFile(Path(path))
        self._health = Health(path)
        self._writer = Writer(self._health)
        self._checkpointer = Checkpointer(self._health)
        self._write: aiosqlite.Connection | None = None
        self._claims: aiosqlite.Connection | None = None
        # Claims of small pages, on the event loop's thread (never waits: busy_timeout 0).
        self._claims_here: sqlite3.Connection | None = None
        self._read: aiosqlite.Connection | None = None
        self._leased: set[int] = set()
        # Destinations with a claim on the claims thread: its page was read after its
        # leased set was sent, so a commit's deliveries are not handed over meanwhile
        # (that claim may return them too).
        self._claiming: collections.Counter[str] = collections.Counter()
        # Per destination: the time of its last claim that did not fill its page, and
        # when its next delivery comes due after that (read by that claim).
        self._next_due: dict[str, tuple[float, float | None]] = {}

    # -- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        try:
            write, last_id = await self._open()
        except (sqlite3.Error, StoreError, OSError) as exc:
            await self.close()
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StoreError(f"cannot open database {self.path}: {detail}") from None
        except BaseException:
            # Cancelled (a signal during a long migration) or a bug: still close what
            # was opened, or a connection's thread keeps the process from exiting.
            await asyncio.shield(self.close())
            raise
        self._writer.start(write, last_id)

    async def _open(self) -> tuple[aiosqlite.Connection, int]:
        """Lock, connect, migrate and check identity; the write connection and the last id."""
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
        self._write = write = await connect(self.path, self.sync)
        await migrate(write, self._health)
        # From now on only the writer uses it, and waits for a lock itself (writer.begin).
        await write.execute("PRAGMA busy_timeout = 0")
        self.identity = str(await self._scalar(write, QUERIES["select_identity"]))
        if recorded is not None and recorded != self.identity:
            raise StoreError(
                f"this is database {self.identity}, but {self._lock.path} records database"
                f" {recorded} here: put the right file back, or remove {self._lock.path} to"
                " adopt this one"
            )
        self._lock.record(self.identity)
        self._health.remember_file()
        self._health.watch_wal_index()
        self._claims = await connect(self.path, self.sync)
        self._claims_here = await asyncio.to_thread(connect_here, self.path)
        self._read = await connect(self.path, self.sync)
        self._checkpointer.start(await connect(self.path, self.sync))
        return write, int(await self._scalar(self._read, QUERIES["select_max_message_id"]))

    async def close(self) -> None:
        try:
            await self._writer.stop()
            await self._checkpointer.close()
            for conn in (self._read, self._claims, self._write):
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            if self._claims_here is not None:
                self._claims_here.close()
        finally:
            self._read = self._claims = self._write = self._claims_here = None
            self._health.close()
            self._lock.release()

    @property
    def writer_task(self) -> asyncio.Task[None] | None:
        return self._writer.task

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with the destinations that got new deliveries in a commit."""
        self._writer.on_commit(listener)

    @property
    def coordination(self) -> None:
        """Nothing to coordinate: the lock file keeps every other process out."""
        return None

    # -- health -------------------------------------------------------------------

    @property
    def failure(self) -> str | None:
        """Why the store cannot take writes now, or None while it can."""
        return self._health.broken or self._health.failure

    async def check_writable(self) -> None:
        """Raise StoreError unless a write transaction commits now.

        A recent good commit answers for an idle writer; otherwise a heartbeat row is
        written, so that a full disk or a read-only file shows before a webhook meets it,
        and a writer stuck in a commit shows as not answering.
        """
        health = self._health
        health.raise_if_broken()
        fresh = time.monotonic() - health.last_good_write < _HEARTBEAT_FRESH
        if self._writer.idle and fresh and health.failure is None:
            return

        async def heartbeat(conn: aiosqlite.Connection) -> None:
            await conn.execute(QUERIES["heartbeat"], (str(time.time()),))

        await self.write_call(heartbeat)

    # -- writes (through the writer) -----------------------------------------

    def accept(self, message: NewMessage) -> asyncio.Future[Accepted]:
        return self._writer.accept(message)

    def record_attempt(self, record: AttemptRecord) -> asyncio.Future[None]:
        # A plain future, not a coroutine: the dispatcher shields it without a task.
        committed = self._writer.record_attempt(record)
        committed.add_done_callback(lambda done: self._settled(done, record.delivery_id))
        return committed

    def _settled(self, committed: asyncio.Future[None], delivery_id: int) -> None:
        """The lease ends once the outcome is committed (a failed write keeps it)."""
        if not committed.cancelled() and committed.exception() is None:
            self._leased.discard(delivery_id)

    async def write_call(self, call: WriteCall) -> Any:
        """Run ``call`` inside the writer's next transaction and return its result.

        The call runs in a savepoint of its own: if it fails, only its caller sees the
        error; the webhooks committed in the same transaction are not touched.
        """
        return await self._writer.call(call)

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` messages received before ``before`` with nothing pending."""
        floor = message_id_floor(before)

        async def delete(conn: aiosqlite.Connection) -> int:
            async with conn.execute(QUERIES["prune"], (floor, limit)) as cursor:
                return cursor.rowcount

        return int(await self.write_call(delete))

    async def set_paused(self, destination: str, paused: bool) -> None:
        async def write(conn: aiosqlite.Connection) -> None:
            await conn.execute(QUERIES["set_paused"], (destination, int(paused), time.time()))

        await self.write_call(write)

    # -- reads ----------------------------------------------------------------------

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one admin query, errors as StoreError."""
        return await fetch(self._read, sql, params, self._health)

    async def _scalar(
        self, conn: aiosqlite.Connection | None, sql: str, params: Sequence[Any] = ()
    ) -> Any:
        return await scalar(conn, sql, params, self._health)

    async def due_deliveries(
        self, destination: str, now: float, limit: int, exclude: Collection[int] = ()
    ) -> list[DueDelivery]:
        params = (destination, now, orjson.dumps(list(exclude)), limit)
        return await self._deliveries(QUERIES["select_due"], params, destination)

    async def head_deliveries(self, destination: str, limit: int) -> list[DueDelivery]:
        params = (destination, limit)

        def head(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(QUERIES["select_head"], params).fetchall()

        return due_deliveries(await self._claims_read(head, limit), destination)

    async def claim_due(self, destination: str, now: float, limit: int) -> list[DueDelivery]:
        claim = self._claim(destination, now, limit)
        self._claiming[destination] += 1
        try:
            rows, next_due = await self._claims_read(claim, limit)
        finally:
            self._claiming[destination] -= 1
        if len(rows) < limit:
            self._next_due[destination] = (now, next_due)
        return self._lease(rows, destination)

    def claim_due_at_once(
        self, destination: str, now: float, limit: int
    ) -> tuple[list[DueDelivery], float | None] | None:
        """A page of few rows, read on this thread; not when a lock is in the way."""
        if limit > _LOOP_CLAIM_ROWS:
            return None
        read = self._read_here(self._claim(destination, now, limit))
        if read is None:
            return None
        rows, next_due = read
        return self._lease(rows, destination), None if next_due is None else float(next_due)

    def claim_committed(
        self, destination: str, limit: int
    ) -> tuple[list[DueDelivery], bool] | None:
        """Lease up to ``limit`` of the deliveries to ``destination`` that the commit being
        announced inserted, as a claim would read them, without reading; and whether
        that was all of them. None outside a commit's announcement, or while a claim
        for ``destination`` runs on the claims thread: then only a claim finds them."""
        announced = self._writer.announced
        if announced is None or self._claiming[destination]:
            return None
        new = announced.get(destination)
        if not new:
            return [], True
        # A claim made on the loop between the commit (on the SQLite thread) and this
        # announcement may have leased some of them already: those are its to send.
        # None of them can have settled since: their outcome commits after this one.
        leased = self._leased
        if not leased.isdisjoint(d.id for d in new):
            new[:] = [d for d in new if d.id not in leased]
        taken = new[:limit]
        del new[:limit]  # handed once, whoever else listens
        leased.update(d.id for d in taken)
        return taken, not new

    def _claim(
        self, destination: str, now: float, limit: int
    ) -> Callable[[sqlite3.Connection], tuple[list[Any], float | None]]:
        """The reads of a claim: the due page and, if not full, when the next comes due."""
        # Leased as of now: one settled while the query runs committed its outcome
        # before its lease ended, so it is either excluded or read in its new state.
        params = (destination, now, orjson.dumps(list(self._leased)), limit)

        def claim(conn: sqlite3.Connection) -> tuple[list[Any], float | None]:
            rows = conn.execute(QUERIES["select_due"], params).fetchall()
            if len(rows) == limit:
                return rows, None
            # A page that is not full: the worker asks next when more comes due.
            found = conn.execute(QUERIES["select_next_due"], (destination, now)).fetchone()
            return rows, None if found is None else found[0]

        return claim

    def _lease(self, rows: list[Any], destination: str) -> list[DueDelivery]:
        due = due_deliveries(rows, destination)
        self._leased.update(d.id for d in due)
        return due

    async def _claims_read(self, work: Callable[[sqlite3.Connection], T], rows: int) -> T:
        """``work``'s reads of up to ``rows`` rows, in one go: a few on this thread, unless a
        lock is in the way (the loop never waits for one); more on the claims thread."""
        if rows <= _LOOP_CLAIM_ROWS and (done := self._read_here(work)) is not None:
            return done
        return await read_in_one_trip(self._claims, work, self._health)

    def _read_here(self, work: Callable[[sqlite3.Connection], T]) -> T | None:
        """``work`` (whose result is never None) run on the event loop's connection, or
        None if it would wait for a lock."""
        conn = self._claims_here
        if conn is None:
            raise StoreError("the store is not open")
        self._health.refuse_frozen_files()
        try:
            return work(conn)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) in _WOULD_WAIT:
                return None
            self._health.note_error(exc)
            raise StoreError(f"read failed: {exc}") from None

    async def claim_listed(self, deliveries: Sequence[DueDelivery]) -> list[DueDelivery]:
        claimed = [d for d in deliveries if d.id not in self._leased]
        self._leased.update(d.id for d in claimed)
        return claimed

    async def release(self, delivery_ids: Collection[int]) -> None:
        self._leased.difference_update(delivery_ids)

    async def _deliveries(
        self, sql: str, params: Sequence[Any], destination: str
    ) -> list[DueDelivery]:
        rows = await fetch(self._claims, sql, params, self._health)
        return due_deliveries(rows, destination)

    async def paused_destinations(self) -> set[str]:
        rows = await fetch(self._claims, QUERIES["select_paused"], (), self._health)
        return {row[0] for row in rows}

    async def next_due_at(self, destination: str, after: float) -> float | None:
        # The claim at ``after`` read it already, in the same trip and snapshot: what
        # changed since then wakes the worker, which claims (and reads this) again.
        claimed = self._next_due.pop(destination, None)
        if claimed is not None and claimed[0] == after:
            return None if claimed[1] is None else float(claimed[1])
        sql = QUERIES["select_next_due"]
        value = await self._scalar(self._claims, sql, (destination, after))
        return None if value is None else float(value)

    async def delivery_counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per destination and state (only the non-zero ones)."""
        counts: dict[str, dict[str, int]] = {}
        for destination, state, count in await self.read(QUERIES["select_delivery_counts"]):
            counts.setdefault(destination, {})[state] = count
        return counts

    async def message_count(self) -> int:
        return int(await self._scalar(self._read, QUERIES["select_message_count"]) or 0)

    async def queue_stats(self) -> QueueStats:
        counts = await self.delivery_counts()
        destinations: dict[str, DestinationQueue] = {}
        for name, by_state in counts.items():
            pending = by_state.get("pending", 0)
            if pending:
                sql = QUERIES["select_oldest_pending"]
                oldest = await self._scalar(self._read, sql, (name,))
                destinations[name] = DestinationQueue(pending=pending, oldest_pending_at=oldest)
        oldest_times = [q.oldest_pending_at for q in destinations.values() if q.oldest_pending_at]
        return QueueStats(
            pending=sum(q.pending for q in destinations.values()),
            oldest_pending_at=min(oldest_times) if oldest_times else None,
            dead=sum(by_state.get("dead", 0) for by_state in counts.values()),
            destinations=destinations,
        )
