"""The outbox writer: one task owns the write connection and commits in groups.

Callers enqueue and await a future; the writer drains everything queued, commits it
in one transaction (one fsync for many webhooks), then resolves the futures. Idle, it
adds no delay; busy, batches grow by themselves. A write call runs in a savepoint of
its own, so that its failure is only its caller's.

Messages and outcomes are committed by a drain on the SQLite thread: it commits what
is queued, hands the results to the event loop, and starts the next commit with what
was queued meanwhile, without waiting for the loop. Under load, a commit's end used to
wait for the loop to wake, and the next commit for the SQLite thread to wake; on two
busy cores those two wake-ups were about a third of a commit (docs/benchmarks.md: "the
group commit drained on the SQLite thread"). When more is queued, a commit's results
are handed over once the next batch's rows are written, so that the loop's answers
and the next COMMIT's wait for the disk overlap (``Writer._commit_while_queued``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import orjson
import structlog

from hookgate import metrics
from hookgate.errors import StoreError
from hookgate.store import (
    Accepted,
    AttemptRecord,
    CommitListener,
    DueDelivery,
    NewMessage,
    format_message_id,
    new_message_id,
)
from hookgate.store.rows import encode_skipped
from hookgate.store.sqlite.database import (
    BUSY_TIMEOUT_MS,
    Health,
    finish_wal_checkpoint,
    in_thread,
)
from hookgate.store.sqlite.sql import QUERIES, marks

log = structlog.get_logger("hookgate.store")

WriteCall = Callable[[aiosqlite.Connection], Awaitable[Any]]

# SQLite's limit on bound variables is 32766; stay far below it.
_LOOKUP_CHUNK = 400
# The most rows one INSERT statement carries (insert_rows): 64 rows of 9 values.
_ROWS_PER_INSERT = 64


@dataclass(slots=True)
class _Pending:
    """Writes queued by the event loop. Deques: the drain on the SQLite thread takes
    from them while the loop appends (each ``append``/``popleft`` is atomic)."""

    messages: deque[tuple[NewMessage, asyncio.Future[Accepted]]] = field(default_factory=deque)
    attempts: deque[tuple[AttemptRecord, asyncio.Future[None]]] = field(default_factory=deque)
    calls: deque[tuple[WriteCall, asyncio.Future[Any]]] = field(default_factory=deque)

    def __bool__(self) -> bool:
        return bool(self.messages or self.attempts or self.calls)

    def futures(self) -> Iterable[asyncio.Future[Any]]:
        yield from (f for _, f in self.messages)
        yield from (f for _, f in self.attempts)
        yield from (f for _, f in self.calls)

    def take(self, calls: bool) -> _Pending:
        """What is queued now (the write calls too when ``calls``), as a batch."""
        batch = _Pending()
        _move(self.messages, batch.messages)
        _move(self.attempts, batch.attempts)
        if calls:
            _move(self.calls, batch.calls)
        return batch


@dataclass(frozen=True, slots=True)
class Inserted:
    """What a commit's inserts made: the answer to each message, and the new deliveries
    by destination, in id order, as a claim would read them (``Writer.announced``)."""

    accepted: list[Accepted]
    deliveries: dict[str, list[DueDelivery]]


def _move(source: deque[Any], target: deque[Any]) -> None:
    for _ in range(len(source)):
        target.append(source.popleft())


class Writer:
    """The only code that writes: ``start()`` with the write connection, ``stop()`` drains."""

    def __init__(self, health: Health) -> None:
        self._health = health
        self._conn: aiosqlite.Connection | None = None
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._committing = False
        self._last_id = 0
        self._listeners: list[CommitListener] = []
        # The new deliveries of the commit whose listeners are being called, by
        # destination; None at any other time. The store hands them to the workers
        # (``SQLiteStore.claim_committed``), which then need no claim to find them.
        self.announced: dict[str, list[DueDelivery]] | None = None

    def start(self, conn: aiosqlite.Connection, last_id: int) -> None:
        """Run the writer task on ``conn``; new message ids will be larger than ``last_id``."""
        self._conn = conn
        self._last_id = last_id
        # Cached: asyncio.get_running_loop() costs a getpid() syscall per call on 3.11.
        self._loop = asyncio.get_running_loop()
        self.task = self._loop.create_task(self._run(), name="outbox-writer")

    async def stop(self) -> None:
        """Refuse new writes, commit those already queued, and end the task."""
        self._closing = True
        self._wake.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        self._conn = None

    @property
    def idle(self) -> bool:
        """Nothing is being committed and nothing waits to be."""
        return not self._committing and not self._pending

    def on_commit(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def accept(self, message: NewMessage) -> asyncio.Future[Accepted]:
        future: asyncio.Future[Accepted] = self._future()
        self._pending.messages.append((message, future))
        return future

    def record_attempt(self, record: AttemptRecord) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._future()
        self._pending.attempts.append((record, future))
        return future

    def call(self, call: WriteCall) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._future()
        self._pending.calls.append((call, future))
        return future

    def _future(self) -> asyncio.Future[Any]:
        """A future for a queued write, after checking that the writer will resolve it."""
        if self._closing:
            raise StoreError("the store is closing")
        self._health.raise_if_broken()
        task = self.task
        if self._loop is None or task is None or task.done():
            raise StoreError("the outbox writer is not running")
        self._wake.set()
        return self._loop.create_future()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                self._committing = True
                try:
                    # Shielded: once a batch is taken, it is committed or failed, never dropped.
                    if self._pending.calls:
                        await asyncio.shield(self._commit(self._pending.take(calls=True)))
                    else:
                        await asyncio.shield(self._drain())
                finally:
                    self._committing = False
            if self._closing and not self._pending:
                return

    async def _drain(self) -> None:
        """Commit messages and outcomes on the SQLite thread until none is queued."""
        conn, loop = self._conn, self._loop
        try:
            if conn is None or loop is None:
                raise StoreError("the store is not open")
            await in_thread(conn, lambda raw: self._commit_while_queued(raw, loop))
        except Exception as exc:  # no connection, or it closed under the drain
            self._commit_failed(self._pending.take(calls=False), exc)

    def _commit_while_queued(
        self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop
    ) -> None:
        """On the SQLite thread: commit what is queued, batch after batch, handing each
        outcome to the event loop; stop when nothing is queued, when a write call waits
        (it runs through the loop: ``_commit``) or after a failed commit.

        A commit's answers are handed over once the next batch's rows are written, just
        before its COMMIT, when anything was queued meanwhile (at once otherwise): the
        loop then answers and sends them while that COMMIT waits for the disk without
        the GIL. Handed over right after their COMMIT, the loop's turn of answers took
        the GIL from the next batch's rows, which waited for it about as long as they
        worked (docs/benchmarks.md, "Session 24").
        """
        unanswered: tuple[_Pending, Inserted, list[Any], float] | None = None

        def hand_over() -> None:
            nonlocal unanswered
            if unanswered is None:
                return
            held, unanswered = unanswered, None
            try:
                # Answered a while after its commit: the file must still be the one it
                # went into, as right after the commit.
                self._health.check_file()
                self._health.raise_if_broken()
            except StoreError as exc:
                loop.call_soon_threadsafe(self._commit_failed, held[0], exc)
                return
            loop.call_soon_threadsafe(self._committed, *held)

        try:
            while not self._pending.calls:
                batch = self._pending.take(calls=False)
                if not batch:
                    return
                started = time.monotonic()
                try:
                    self._health.raise_if_broken()
                    self._health.refuse_frozen_files()
                    messages = [m for m, _ in batch.messages]
                    ids = [self._next_id(m.received_at) for m in messages]
                    records = [r for r, _ in batch.attempts]
                    inserted = commit_batch(conn, messages, ids, records, answer_first=hand_over)
                    # After the commit, before any 2xx: a vanished file means nothing was kept.
                    self._health.check_file()
                    self._health.raise_if_broken()
                except Exception as exc:  # any failure fails this batch, never the writer
                    hand_over()
                    loop.call_soon_threadsafe(self._commit_failed, batch, exc)
                    return
                unanswered = (batch, inserted, [], time.monotonic() - started)
                if self._health.wal_restart_due:
                    hand_over()  # the checkpoint takes a while: answer first
                    finish_wal_checkpoint(conn, self._health)
        finally:
            hand_over()

    async def _commit(self, batch: _Pending) -> None:
        """Commit a batch with write calls, each call in a savepoint of its own."""
        conn = self._conn
        started = time.monotonic()
        try:
            if conn is None:
                raise StoreError("the store is not open")
            self._health.raise_if_broken()
            self._health.refuse_frozen_files()
            messages = [m for m, _ in batch.messages]
            ids = [self._next_id(m.received_at) for m in messages]
            records = [r for r, _ in batch.attempts]
            await in_thread(conn, begin)
            inserted = await in_thread(conn, lambda raw: write_batch(raw, messages, ids, records))
            results = [await in_savepoint(conn, call) for call, _ in batch.calls]
            await conn.execute("COMMIT")
            # After the commit, before any 2xx: a vanished file means nothing was kept.
            self._health.check_file()
            self._health.raise_if_broken()
        except Exception as exc:  # any failure fails this batch, never the writer
            self._commit_failed(batch, exc)
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
            return
        self._committed(batch, inserted, results, time.monotonic() - started)

    def _committed(
        self, batch: _Pending, inserted: Inserted, results: list[Any], took: float
    ) -> None:
        self._health.committed()
        metrics.commit_seconds.observe(took)
        if batch.messages:
            metrics.commit_size.observe(len(batch.messages))
        values = [*inserted.accepted, *(None for _ in batch.attempts), *results]
        _resolve(batch.futures(), values)
        self._notify(inserted.deliveries)

    def _commit_failed(self, batch: _Pending, exc: Exception) -> None:
        self._health.commit_failed(exc)
        log.error("store.commit_failed", error=str(exc), batch=len(batch.messages))
        _resolve(batch.futures(), exception=StoreError(f"commit failed: {exc}"))

    def _notify(self, deliveries: dict[str, list[DueDelivery]]) -> None:
        if not deliveries:
            return
        touched = frozenset(deliveries)
        self.announced = deliveries
        try:
            for listener in self._listeners:
                listener(touched)
        finally:
            self.announced = None

    def _next_id(self, received_at: float) -> int:
        self._last_id = max(new_message_id(received_at), self._last_id + 1)
        return self._last_id


def commit_batch(
    conn: sqlite3.Connection,
    messages: list[NewMessage],
    ids: list[int],
    records: list[AttemptRecord],
    answer_first: Callable[[], None] | None = None,
) -> Inserted:
    """One transaction with the batch's messages and outcomes (on the SQLite thread).

    ``answer_first`` runs once the rows are written, before the COMMIT, and also
    before waiting for the write lock if another connection holds it (an operator's
    ``sqlite3``, for up to busy_timeout): what it answers never waits for that lock. It
    may run twice, so it must answer only once.
    """
    begin(conn, answer_first)
    try:
        inserted = write_batch(conn, messages, ids, records)
        if answer_first is not None:
            answer_first()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return inserted


def begin(conn: sqlite3.Connection, answer_first: Callable[[], None] | None = None) -> None:
    """BEGIN IMMEDIATE on the write connection, waiting up to BUSY_TIMEOUT_MS for a write
    lock that another connection holds, after running ``answer_first``.

    The write connection's own busy_timeout is 0 (``SQLiteStore``: after migrating), so
    that a lock held elsewhere is seen before any wait, and costs nothing while free.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
            raise
    if answer_first is not None:
        answer_first()
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def write_batch(
    conn: sqlite3.Connection,
    messages: list[NewMessage],
    ids: list[int],
    records: list[AttemptRecord],
) -> Inserted:
    """Write the messages under ``ids`` and the outcomes, inside the caller's transaction."""
    inserted = insert_messages(conn, messages, ids)
    record_attempts(conn, records)
    return inserted


def insert_messages(
    conn: sqlite3.Connection, messages: list[NewMessage], ids: list[int]
) -> Inserted:
    """Insert the messages under ``ids`` and a delivery per destination of each new one,
    and add them to the counts: once per commit, not per row (docs/benchmarks.md).

    A message is a duplicate when an earlier one holds its event id inside the dedup
    window, in the database or earlier in the batch: it is answered with that one's
    id and not inserted. What the lookup decided is what is inserted: a conflict
    fails the whole batch rather than answer for a row that was not written.

    The deliveries' ids are given here, after the largest in the table, so that the
    new deliveries are known as a claim would read them without reading them back.
    """
    if not messages:
        return Inserted([], {})
    holders = live_dedup_holders(conn, messages)
    results: list[Accepted] = []
    new: list[tuple[Any, ...]] = []
    rows: list[tuple[int, int, str, float]] = []
    deliveries: dict[str, list[DueDelivery]] = {}
    delivery_id = conn.execute(QUERIES["select_max_delivery_id"]).fetchone()[0]
    for message_id, m in zip(ids, messages, strict=True):
        if m.event_id is not None:
            owner = holders.setdefault((m.source, m.event_id), message_id)
            if owner != message_id:  # held before, or by an earlier copy in the batch
                results.append(Accepted(format_message_id(owner), duplicate=True))
                continue
        formatted = format_message_id(message_id)
        results.append(Accepted(formatted, duplicate=False))
        new.append(
            (
                message_id,
                m.source,
                m.received_at,
                m.event_type,
                m.event_id,
                m.event_id,
                m.headers,
                m.body,
                encode_skipped(m.skipped),
            )
        )
        for destination in m.destinations:
            delivery_id += 1
            rows.append((delivery_id, message_id, destination, m.received_at))
            deliveries.setdefault(destination, []).append(
                new_delivery(delivery_id, formatted, destination, m)
            )
    if new:
        insert_rows(conn, QUERIES["insert_message"], new)
        conn.execute(QUERIES["add_message_count"], (len(new),))
    if rows:
        conn.execute(QUERIES["insert_deliveries"], (orjson.dumps(rows),))
        conn.executemany(
            QUERIES["add_delivery_count"], [(d, "pending", len(n)) for d, n in deliveries.items()]
        )
    return Inserted(results, deliveries)


def new_delivery(
    delivery_id: int, message_id: str, destination: str, message: NewMessage
) -> DueDelivery:
    """A delivery just inserted for ``message``, as ``select_due`` reads it."""
    return DueDelivery(
        id=delivery_id,
        message_id=message_id,
        destination=destination,
        attempts=0,
        next_attempt_at=message.received_at,
        received_at=message.received_at,
        source=message.source,
        event_type=message.event_type,
        headers=message.headers,
        body=message.body,
    )


def live_dedup_holders(
    conn: sqlite3.Connection, messages: list[NewMessage]
) -> dict[tuple[str, str], int]:
    """The stored message holding each (source, event_id) of ``messages`` inside the
    dedup window. A holder received before the window (of the batch's latest copy of
    that event id) gives its key up, so that the event id makes a new message again.

    One lookup per source and chunk of event ids, each an index search; the key is
    given up by an update only when that happens, not tried for every message (2.3 µs
    a webhook: docs/benchmarks.md).
    """
    cutoffs: dict[tuple[str, str], float] = {}
    for m in messages:
        if m.event_id is not None:
            key = (m.source, m.event_id)
            cutoffs[key] = max(cutoffs.get(key, -math.inf), m.received_at - m.dedup_window)
    holders: dict[tuple[str, str], int] = {}
    expired: list[tuple[str, str, float]] = []
    for key, (message_id, received_at) in dedup_holders(conn, list(cutoffs)).items():
        if received_at < cutoffs[key]:
            expired.append((key[0], key[1], cutoffs[key]))
        else:
            holders[key] = message_id
    if expired:
        conn.executemany(QUERIES["expire_dedup_key"], expired)
    return holders


def dedup_holders(
    conn: sqlite3.Connection, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, float]]:
    """(id, received_at) of the message holding each (source, event_id) of ``keys``."""
    by_source: dict[str, list[str]] = {}
    for source, event_id in keys:
        by_source.setdefault(source, []).append(event_id)
    found: dict[tuple[str, str], tuple[int, float]] = {}
    for source, event_ids in by_source.items():
        for start in range(0, len(event_ids), _LOOKUP_CHUNK):
            chunk = event_ids[start : start + _LOOKUP_CHUNK]
            for key, message_id, received_at in conn.execute(
                dedup_lookup(len(chunk)), (source, *chunk)
            ):
                found[(source, key)] = (message_id, received_at)
    return found


def dedup_lookup(keys: int) -> str:
    """The dedup lookup for ``keys`` event ids of one source."""
    return QUERIES["select_dedup_owners"].format(keys=marks(keys))


def record_attempts(conn: sqlite3.Connection, records: list[AttemptRecord]) -> None:
    """Settle each delivery as its attempt left it, and keep the attempt."""
    if not records:
        return
    outcomes = orjson.dumps(
        [
            (
                r.delivery_id,
                r.state,
                r.attempts,
                r.next_attempt_at,
                r.status,
                r.error,
                r.dead_reason,
            )
            for r in records
        ]
    )
    conn.execute(QUERIES["settle_deliveries"], (outcomes, time.time()))
    insert_rows(
        conn,
        QUERIES["insert_attempt"],
        [
            (r.delivery_id, r.started_at, r.duration_ms, r.status, r.error, r.response_snippet)
            for r in records
        ],
    )


def insert_rows(conn: sqlite3.Connection, query: str, rows: list[tuple[Any, ...]]) -> None:
    """``rows`` by ``query``, an INSERT of one VALUES row, several rows a statement.

    One statement is one step of SQLite and one trip out of the GIL and back, where a
    row at a time cost more CPU: 8.8-9.0 against 7.0-7.4 µs a webhook in commits of 64
    (docs/benchmarks.md, "Session 24"). The statements carry 64, 32 ... 1 rows, so
    that the connection's statement cache holds every size there is.
    """
    start = 0
    while start < len(rows):
        size = min(_ROWS_PER_INSERT, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start : start + size]
        conn.execute(multi_row(query, size), [value for row in chunk for value in row])
        start += size


@functools.cache
def multi_row(query: str, rows: int) -> str:
    """``query`` (ending in ``VALUES`` and one row) with ``rows`` rows."""
    row = query[query.rindex("VALUES") + len("VALUES") :].strip()
    return query + f", {row}" * (rows - 1)


async def in_savepoint(conn: aiosqlite.Connection, call: WriteCall) -> Any:
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
