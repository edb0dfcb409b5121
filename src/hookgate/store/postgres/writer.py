"""The PostgreSQL outbox writer: one task per process commits its writes in groups.

As with SQLite, callers enqueue and await a future; the writer takes everything
queued, commits it in one transaction on a pooled connection, then resolves the
futures. Other processes have writers of their own: dedup holds across them through
the unique index (INSERT .. ON CONFLICT DO NOTHING), and a commit that brought new
deliveries sends a NOTIFY that wakes every process's idle workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import structlog

from hookgate import metrics
from hookgate.errors import StoreError
from hookgate.store import (
    Accepted,
    AttemptRecord,
    CommitListener,
    NewMessage,
    format_message_id,
    new_message_id,
)
from hookgate.store.postgres.database import Connection, Health, Pool
from hookgate.store.postgres.sql import QUERIES
from hookgate.store.rows import encode_skipped

log = structlog.get_logger("hookgate.store")

WriteCall = Callable[[Connection], Awaitable[Any]]

# Two processes' batches may lock the same dedup keys in different orders; PostgreSQL
# then aborts one transaction, which is simply run again.
_RETRIED_ERRORS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_COMMIT_TRIES = 3


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


class Writer:
    """The only code that writes: ``start()`` on the pool, ``stop()`` drains."""

    def __init__(self, health: Health, owner: str) -> None:
        self._health = health
        self._owner = owner
        self._pool: Pool | None = None
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._committing = False
        self._last_id = 0
        self._listeners: list[CommitListener] = []

    def start(self, pool: Pool, last_id: int) -> None:
        self._pool = pool
        self._last_id = last_id
        self._loop = asyncio.get_running_loop()
        self.task = self._loop.create_task(self._run(), name="outbox-writer")

    async def stop(self) -> None:
        """Refuse new writes, commit those already queued, and end the task."""
        self._closing = True
        self._wake.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        self._pool = None

    @property
    def idle(self) -> bool:
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
        if self._closing:
            raise StoreError("the store is closing")
        task = self.task
        if self._loop is None or task is None or task.done():
            raise StoreError("the outbox writer is not running")
        self._wake.set()
        return self._loop.create_future()

    async def _run(self) -> None:
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
        started = time.monotonic()
        for tries_left in reversed(range(_COMMIT_TRIES)):
            try:
                accepted, results = await self._transaction(batch)
                break
            except _RETRIED_ERRORS as exc:
                if tries_left:
                    log.info("store.commit_retried", error=str(exc))
                    continue
                self._commit_failed(batch, exc)
                return
            except Exception as exc:  # any failure fails this batch, never the writer
                self._commit_failed(batch, exc)
                return
        self._health.committed()
        metrics.commit_seconds.observe(time.monotonic() - started)
        if batch.messages:
            metrics.commit_size.observe(len(batch.messages))
        _resolve(batch.futures(), [*accepted, *(None for _ in batch.attempts), *results])
        touched = _touched(batch, accepted)
        if touched:
            for listener in self._listeners:
                listener(touched)

    async def _transaction(self, batch: _Pending) -> tuple[list[Accepted], list[Any]]:
        pool = self._pool
        if pool is None:
            raise StoreError("the store is not open")
        messages = [m for m, _ in batch.messages]
        async with pool.connection() as conn, _pipelined(conn, batch), conn.transaction():
            accepted = await insert_messages(conn, messages, self._next_id)
            await record_attempts(conn, [r for r, _ in batch.attempts], self._owner)
            results = [await in_savepoint(conn, call) for call, _ in batch.calls]
            touched = _touched(batch, accepted)
            if touched:
                payload = {"by": self._owner, "destinations": sorted(touched)}
                await conn.execute(
                    QUERIES["notify_deliveries"].encode(), (orjson.dumps(payload).decode(),)
                )
        return accepted, results

    def _commit_failed(self, batch: _Pending, exc: Exception) -> None:
        self._health.commit_failed(exc)
        log.error("store.commit_failed", error=str(exc), batch=len(batch.messages))
        _resolve(batch.futures(), exception=StoreError(f"commit failed: {exc}"))

    def _next_id(self, received_at: float) -> int:
        self._last_id = max(new_message_id(received_at), self._last_id + 1)
        return self._last_id


def _pipelined(conn: Connection, batch: _Pending) -> AbstractAsyncContextManager[Any]:
    """Pipeline mode: BEGIN goes with the first statement, and what needs no answer
    (outcomes, NOTIFY) with COMMIT: two round trips for a batch, not five. Not for a
    batch with write calls, which read their statements' answers (row counts) at once.
    """
    return contextlib.nullcontext() if batch.calls else conn.pipeline()


def _touched(batch: _Pending, accepted: list[Accepted]) -> frozenset[str]:
    """The destinations that got new deliveries in this batch."""
    return frozenset(
        d
        for (m, _), r in zip(batch.messages, accepted, strict=True)
        if not r.duplicate
        for d in m.destinations
    )


async def insert_messages(
    conn: Connection, messages: list[NewMessage], next_id: Callable[[float], int]
) -> list[Accepted]:
    """Insert the messages and a delivery per destination of each new one.

    Dedup is the unique index's: a message whose (source, event id) is taken inserts
    nothing and answers with the message that holds it. A message whose id another
    process drew in the same millisecond (22 random bits apart) draws a new one.
    """
    if not messages:
        return []
    # Rows in a fixed order (by dedup key) so that two processes lock keys in the same order.
    order = sorted(
        range(len(messages)), key=lambda i: (messages[i].source, messages[i].event_id or "")
    )
    await _expire_dedup_keys(conn, [messages[i] for i in order if messages[i].event_id])
    results: dict[int, Accepted] = {}
    todo = order
    while todo:
        ids = {i: next_id(messages[i].received_at) for i in todo}
        inserted = await _insert(conn, [(ids[i], messages[i]) for i in todo])
        lost = [messages[i] for i in todo if ids[i] not in inserted]
        owners = await dedup_owners(conn, lost)
        retry = []
        for i in todo:
            message = messages[i]
            if ids[i] in inserted:
                results[i] = Accepted(format_message_id(ids[i]), duplicate=False)
            elif (owner := owners.get((message.source, message.event_id))) is not None:
                results[i] = Accepted(format_message_id(owner), duplicate=True)
            else:
                retry.append(i)
        todo = retry
    return [results[i] for i in range(len(messages))]


async def _expire_dedup_keys(conn: Connection, keyed: list[NewMessage]) -> None:
    if keyed:
        await conn.execute(
            QUERIES["expire_dedup_keys"].encode(),
            {
                "sources": [m.source for m in keyed],
                "keys": [m.event_id for m in keyed],
                "cutoffs": [float(m.received_at - m.dedup_window) for m in keyed],
            },
        )


async def _insert(conn: Connection, rows: list[tuple[int, NewMessage]]) -> set[int]:
    """Insert the rows, and the deliveries of those that went in; the ids that went in."""
    deliveries = [(i, d) for i, m in rows for d in m.destinations]
    cursor = await conn.execute(
        QUERIES["insert_messages"].encode(),
        (
            [i for i, _ in rows],
            [m.source for _, m in rows],
            [float(m.received_at) for _, m in rows],
            [m.event_type for _, m in rows],
            [m.event_id for _, m in rows],
            [m.event_id for _, m in rows],
            [m.headers for _, m in rows],
            [m.body for _, m in rows],
            [encode_skipped(m.skipped) for _, m in rows],
            [i for i, _ in deliveries],
            [d for _, d in deliveries],
        ),
    )
    return {row[0] for row in await cursor.fetchall()}


async def dedup_owners(
    conn: Connection, messages: Sequence[NewMessage]
) -> dict[tuple[str, str | None], int]:
    """Which message id holds each (source, event_id) of ``messages`` now."""
    keyed = [m for m in messages if m.event_id is not None]
    if not keyed:
        return {}
    cursor = await conn.execute(
        QUERIES["select_dedup_owners"].encode(),
        {"sources": [m.source for m in keyed], "keys": [m.event_id for m in keyed]},
    )
    return {(source, key): message_id for source, key, message_id in await cursor.fetchall()}


async def record_attempts(conn: Connection, records: list[AttemptRecord], owner: str) -> None:
    """Settle each delivery as its attempt left it, end its lease, and keep the attempt."""
    if not records:
        return
    records = sorted(records, key=lambda r: r.delivery_id)
    await conn.execute(
        QUERIES["record_attempts"].encode(),
        {
            "ids": [r.delivery_id for r in records],
            "states": [r.state for r in records],
            "attempts": [r.attempts for r in records],
            "next_attempt_at": [float(r.next_attempt_at) for r in records],
            "status": [r.status for r in records],
            "errors": [r.error for r in records],
            "dead_reasons": [r.dead_reason for r in records],
            "started_at": [float(r.started_at) for r in records],
            "duration_ms": [float(r.duration_ms) for r in records],
            "snippets": [r.response_snippet for r in records],
            "now": time.time(),
            "owner": owner,
        },
    )


async def in_savepoint(conn: Connection, call: WriteCall) -> Any:
    """Run ``call``; on its failure undo only its changes and return the error as a value."""
    try:
        async with conn.transaction():
            return await call(conn)
    except psycopg.OperationalError:
        raise  # the connection itself failed: fail the batch
    except Exception as exc:
        return _CallFailed(exc)


class _CallFailed:
    """A write call's error, carried as its result so that only its caller sees it."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _resolve(
    futures: Iterable[asyncio.Future[Any]],
    values: Sequence[Any] = (),
    exception: BaseException | None = None,
) -> None:
    for i, future in enumerate(futures):
        if future.done():  # the caller went away; the write stands regardless
            continue
        if exception is not None:
            future.set_exception(exception)
        elif isinstance(values[i], _CallFailed):
            future.set_exception(StoreError(f"write failed: {values[i].error}"))
        else:
            future.set_result(values[i])
