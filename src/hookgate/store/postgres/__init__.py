"""The PostgreSQL outbox: one database shared by any number of hookgate processes.

The same ``Store`` as SQLite's, on psycopg 3 (typed, async, with its connection pool
and LISTEN/NOTIFY). Every process has its own group-commit writer (writer.py) and
reads on pooled connections. What the processes share goes through the database:

- Claims: ``SELECT .. FOR UPDATE SKIP LOCKED`` takes due deliveries and leases them
  to this process (``claimed_by``, ``lease_until``). A background task renews the
  process's leases while it lives (by the ids it holds); an outcome or a release ends
  one. A process that dies leaves its deliveries leased until the lease runs out: then
  they are due again, not at once (they may still be on the wire) and not never.
- Wake-ups: a commit with new deliveries sends NOTIFY; every process LISTENs and wakes
  its idle workers, and idle workers also look now and then (``FALLBACK_POLL``).
- Order, rate limit and circuit: coordination.py.

The SQL is in files beside this one: ``queries.sql`` (every query, by name) and
``migrations/``. A new ``Store`` method is a method here (or in store/admin.py, once
for both backends, for the admin API) and its query in ``queries.sql``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Collection, Sequence
from typing import Any

import orjson
import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

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
from hookgate.store.postgres.admin import AdminQueries
from hookgate.store.postgres.coordination import PostgresCoordination
from hookgate.store.postgres.database import Connection, Health, Pool, execute, fetch, migrate
from hookgate.store.postgres.sql import MIGRATIONS, QUERIES
from hookgate.store.postgres.writer import WriteCall, Writer
from hookgate.store.rows import due_deliveries

__all__ = ["MIGRATIONS", "QUERIES", "PostgresStore"]

log = structlog.get_logger("hookgate.store")

_HEARTBEAT_FRESH = 1.0
_CONNECT_TIMEOUT = 10.0
_POOL_SIZE = 10
_LISTEN_RETRY = 1.0
# How often each process folds the rows of changes behind the counts (compact_counts):
# a count then sums at most the changes of this many seconds, of every process.
_COMPACT_COUNTS_EVERY = 10.0


class PostgresStore(AdminQueries):
    """The shared outbox. ``open()`` before use, ``close()`` drains queued writes."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        lease: float = 30.0,
        display_url: str | None = None,
    ) -> None:
        self.url = url
        self.display_url = display_url or url
        self.lease = lease
        self.identity = ""
        # Who claims, in leases and attempts: this process on this machine, this run.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._connect_args: dict[str, Any] = {"connect_timeout": _CONNECT_TIMEOUT}
        if password is not None:
            self._connect_args["password"] = password
        self._health = Health()
        self._writer = Writer(self._health, self.owner)
        self._pool: Pool | None = None
        self._coordination: PostgresCoordination | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: list[CommitListener] = []
        # What this process holds a lease on: renewed by id, released at close.
        self._leased: set[int] = set()
        self._listening = asyncio.Event()
        self._opened = False

    # -- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        try:
            pool, last_id = await self._open()
        except (psycopg.Error, StoreError, OSError) as exc:
            await self.close()
            raise StoreError(f"cannot open database {self.display_url}: {exc}") from None
        except BaseException:
            await asyncio.shield(self.close())
            raise
        self._opened = True
        self._writer.start(pool, last_id)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(), name="store-listen"),
            loop.create_task(self._renew_leases(), name="store-leases"),
            loop.create_task(self._compact_counts(), name="store-counts"),
        ]
        # Listening before the first claim: a commit from then on wakes this process.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                await self._listening.wait()

    async def _open(self) -> tuple[Pool, int]:
        # One connection first, so that a wrong address or password fails at once
        # (a pool would keep trying until its timeout).
        async with await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, **self._connect_args
        ) as conn:
            await migrate(conn)
        pool: Pool = AsyncConnectionPool(
            self.url,
            kwargs={"autocommit": True, **self._connect_args},
            min_size=1,
            max_size=_POOL_SIZE,
            open=False,
            name="hookgate",
        )
        self._pool = pool
        await pool.open(wait=True, timeout=_CONNECT_TIMEOUT)
        self.identity = str((await self.read(QUERIES["select_identity"]))[0][0])
        self._coordination = PostgresCoordination(pool, self.url, self._connect_args)
        return pool, int((await self.read(QUERIES["select_max_message_id"]))[0][0])

    async def close(self) -> None:
        await self._writer.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._coordination is not None:
            await self._coordination.close()
        if self._opened and self._pool is not None and not self._pool.closed:
            # What this process claimed and did not settle is free at once for the others.
            with contextlib.suppress(StoreError):
                await self.release(self._leased)
        if self._pool is not None:
            await self._pool.close()
        self._opened = False

    @property
    def writer_task(self) -> asyncio.Task[None] | None:
        return self._writer.task

    @property
    def coordination(self) -> PostgresCoordination | None:
        return self._coordination

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with the destinations that got new deliveries, in any process."""
        self._writer.on_commit(listener)
        self._listeners.append(listener)

    async def _listen(self) -> None:
        """Wake this process's workers on the other processes' commits (NOTIFY)."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, **self._connect_args
                ) as conn:
                    await conn.execute(b"LISTEN hookgate")
                    self._listening.set()
                    async for notice in conn.notifies():
                        self._notified(notice.payload)
            except psycopg.Error as exc:
                log.warning("store.listen_failed", error=str(exc), retry_in_s=_LISTEN_RETRY)
            await asyncio.sleep(_LISTEN_RETRY)

    def _notified(self, payload: str) -> None:
        try:
            notice = orjson.loads(payload)
            if notice["by"] == self.owner:
                return  # this process told its own listeners already
            if "paused" in notice:
                for name, paused in notice["paused"].items():
                    if self._coordination is not None:
                        self._coordination.pause_changed(str(name), bool(paused))
                return
            touched = frozenset(str(d) for d in notice["destinations"])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return
        for listener in self._listeners:
            listener(touched)

    async def _renew_leases(self) -> None:
        """Keep this process's leases from running out while it lives."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                if self._leased:
                    params = (self.lease, list(self._leased), self.owner)
                    await execute(self._pool, QUERIES["renew_leases"], params)
            except StoreError as exc:
                log.error("store.lease_renewal_failed", error=str(exc))
            if self._coordination is not None:
                await self._coordination.check_order_locks()

    async def _compact_counts(self) -> None:
        """Keep the counts' rows of changes few, whatever the rate of commits."""
        while True:
            await asyncio.sleep(_COMPACT_COUNTS_EVERY)
            try:
                await execute(self._pool, QUERIES["compact_counts"])
            except StoreError as exc:
                log.warning("store.count_compaction_failed", error=str(exc))

    # -- health -------------------------------------------------------------------

    @property
    def failure(self) -> str | None:
        return self._health.failure

    async def check_writable(self) -> None:
        """Raise StoreError unless a write transaction commits now."""
        fresh = time.monotonic() - self._health.last_good_write < _HEARTBEAT_FRESH
        if self._writer.idle and fresh and self._health.failure is None:
            return

        async def heartbeat(conn: Connection) -> None:
            await conn.execute(QUERIES["heartbeat"].encode(), (str(time.time()),))

        await self.write_call(heartbeat)

    # -- writes -------------------------------------------------------------------

    def accept(self, message: NewMessage) -> asyncio.Future[Accepted]:
        return self._writer.accept(message)

    def record_attempt(self, record: AttemptRecord) -> asyncio.Future[None]:
        committed = self._writer.record_attempt(record)

        def settled(future: asyncio.Future[None]) -> None:
            # Committed: the lease ended with it. Failed: still leased, and the
            # worker writes the outcome again, so the lease is still renewed.
            if not future.cancelled() and future.exception() is None:
                self._leased.discard(record.delivery_id)

        committed.add_done_callback(settled)
        return committed

    async def write_call(self, call: WriteCall) -> Any:
        """Run ``call`` inside the writer's next transaction, in a savepoint of its own."""
        return await self._writer.call(call)

    async def prune(self, before: float, limit: int) -> int:
        floor = message_id_floor(before)

        async def delete(conn: Connection) -> int:
            cursor = await conn.execute(QUERIES["prune"].encode(), (floor, limit))
            return cursor.rowcount

        return int(await self.write_call(delete))

    async def set_paused(self, destination: str, paused: bool) -> None:
        notice = {"by": self.owner, "paused": {destination: paused}}
        params = {
            "name": destination,
            "paused": paused,
            "at": time.time(),
            "notice": orjson.dumps(notice).decode(),
        }
        await fetch(self._pool, QUERIES["set_paused"], params)

    # -- claims ---------------------------------------------------------------------

    async def claim_due(self, destination: str, now: float, limit: int) -> list[DueDelivery]:
        params = {
            "destination": destination,
            "now": now,
            "limit": limit,
            "owner": self.owner,
            "lease": self.lease,
        }
        rows = await fetch(self._pool, QUERIES["claim_due"], params, binary=True)
        self._leased.update(row[0] for row in rows)
        return sorted(due_deliveries(rows, destination), key=lambda d: (d.next_attempt_at, d.id))

    def claim_due_at_once(self, destination: str, now: float, limit: int) -> None:
        """A claim here is a round trip to the server: never at once."""
        return None

    def claim_committed(self, destination: str, limit: int) -> None:
        """Other processes commit too: only a claim leases deliveries."""
        return None

    async def claim_listed(self, deliveries: Sequence[DueDelivery]) -> list[DueDelivery]:
        if not deliveries:
            return []
        params = {"ids": [d.id for d in deliveries], "owner": self.owner, "lease": self.lease}
        rows = await fetch(self._pool, QUERIES["claim_listed"], params, binary=True)
        claimed = {row[0] for row in rows}
        self._leased |= claimed
        return [d for d in deliveries if d.id in claimed]

    async def release(self, delivery_ids: Collection[int]) -> None:
        if delivery_ids:
            ids = list(delivery_ids)
            await execute(self._pool, QUERIES["release_claims"], (ids, self.owner))
            self._leased.difference_update(ids)

    # -- reads ----------------------------------------------------------------------

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one query on a pooled connection, errors as StoreError."""
        return await fetch(self._pool, sql, params)

    async def due_deliveries(
        self, destination: str, now: float, limit: int, exclude: Collection[int] = ()
    ) -> list[DueDelivery]:
        rows = await self.read(QUERIES["select_due"], (destination, now, list(exclude), limit))
        return due_deliveries(rows, destination)

    async def head_deliveries(self, destination: str, limit: int) -> list[DueDelivery]:
        rows = await fetch(self._pool, QUERIES["select_head"], (destination, limit), binary=True)
        return due_deliveries(rows, destination)

    async def paused_destinations(self) -> set[str]:
        return {row[0] for row in await self.read(QUERIES["select_paused"])}

    async def next_due_at(self, destination: str, after: float) -> float | None:
        rows = await self.read(QUERIES["select_next_due"], (destination, after))
        return float(rows[0][0]) if rows else None

    async def delivery_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for destination, state, count in await self.read(QUERIES["select_delivery_counts"]):
            counts.setdefault(destination, {})[state] = count
        return counts

    async def message_count(self) -> int:
        return int((await self.read(QUERIES["select_message_count"]))[0][0])

    async def queue_stats(self) -> QueueStats:
        counts = await self.delivery_counts()
        destinations: dict[str, DestinationQueue] = {}
        for name, by_state in counts.items():
            pending = by_state.get("pending", 0)
            if pending:
                rows = await self.read(QUERIES["select_oldest_pending"], (name,))
                oldest = rows[0][0] if rows else None
                destinations[name] = DestinationQueue(pending=pending, oldest_pending_at=oldest)
        oldest_times = [q.oldest_pending_at for q in destinations.values() if q.oldest_pending_at]
        return QueueStats(
            pending=sum(q.pending for q in destinations.values()),
            oldest_pending_at=min(oldest_times) if oldest_times else None,
            dead=sum(by_state.get("dead", 0) for by_state in counts.values()),
            destinations=destinations,
        )
