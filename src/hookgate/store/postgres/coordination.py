"""What hookgate processes sharing one PostgreSQL database agree on through it.

- Order: an ordered destination is delivered by one process at a time, the holder of
  a session advisory lock on a connection of its own; the lock goes with the
  connection, so when the holder dies another process takes over.
- Rate limit: ``rate_slots`` rows, one per request a destination may start per
  window, shared by every process (see ``RateLimiter`` for why a slot is held from
  the start of a request until a window after its end).
- Circuit: an open circuit is written to ``destinations``; every process's claims
  skip the destination until it may be probed again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import structlog

from hookgate.store.postgres.database import Connection, Pool, execute, fetch
from hookgate.store.postgres.sql import QUERIES
from hookgate.store.protocol import PauseListener

log = structlog.get_logger("hookgate.store")

# How often an idle worker looks for work that no notification announced (one sent
# while the listener reconnected, a lease that ran out, a circuit closed elsewhere).
FALLBACK_POLL = 2.0
# How often a process that does not hold an ordered destination tries to take it over.
ORDER_RETRY = 1.0
# A worker waiting for another process's rate slot looks again this often at most.
_RATE_POLL = 0.05


class PostgresCoordination:
    def __init__(self, pool: Pool, conninfo: str, connect_args: dict[str, Any]) -> None:
        self._pool = pool
        self._conninfo = conninfo
        self._connect_args = connect_args
        self._locks: Connection | None = None
        self._held: set[str] = set()
        self._lock = asyncio.Lock()
        self._slots_made: set[tuple[str, int]] = set()
        self._pause_listeners: list[PauseListener] = []
        self.poll_interval = FALLBACK_POLL
        self.order_retry = ORDER_RETRY

    # -- order ---------------------------------------------------------------------

    async def hold_order(self, destination: str) -> bool:
        """Whether this process delivers ``destination`` now (taking it over when free)."""
        if destination in self._held:
            return True
        async with self._lock:
            try:
                conn = await self._lock_connection()
                cursor = await conn.execute(QUERIES["try_order_lock"].encode(), (destination,))
                row = await cursor.fetchone()
            except psycopg.Error as exc:
                log.error("store.order_lock_failed", destination=destination, error=str(exc))
                await self._drop_lock_connection()
                return False
        if row and row[0]:
            self._held.add(destination)
            log.info("store.order_taken", destination=destination)
            return True
        return False

    async def release_order(self, destination: str) -> None:
        if destination not in self._held:
            return
        self._held.discard(destination)
        async with self._lock:
            if self._locks is not None:
                try:
                    await self._locks.execute(
                        QUERIES["release_order_lock"].encode(), (destination,)
                    )
                except psycopg.Error:
                    await self._drop_lock_connection()

    async def check_order_locks(self) -> None:
        """Notice a lost lock connection: the locks went with it, so nothing is held."""
        async with self._lock:
            if self._locks is None:
                return
            try:
                await self._locks.execute(b"SELECT 1")
            except psycopg.Error as exc:
                if self._held:
                    log.error(
                        "store.order_locks_lost", destinations=sorted(self._held), error=str(exc)
                    )
                await self._drop_lock_connection()

    async def _lock_connection(self) -> Connection:
        if self._locks is None or self._locks.closed:
            self._held.clear()
            self._locks = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, **self._connect_args
            )
        return self._locks

    async def _drop_lock_connection(self) -> None:
        self._held.clear()
        if self._locks is not None:
            await self._locks.close()
            self._locks = None

    async def close(self) -> None:
        async with self._lock:
            await self._drop_lock_connection()

    # -- rate limit ----------------------------------------------------------------

    async def take_rate_slot(
        self, destination: str, count: int, window: float, hold: float
    ) -> tuple[int | None, float]:
        """A slot of the destination's ``count``, held for at most ``hold`` seconds.

        ``(slot, 0)`` when one was free; ``(None, wait)`` with how long to wait
        before asking again.
        """
        if (destination, count) not in self._slots_made:
            await execute(self._pool, QUERIES["add_rate_slots"], (destination, count))
            self._slots_made.add((destination, count))
        params = {"destination": destination, "count": count, "hold": hold}
        rows = await fetch(self._pool, QUERIES["take_rate_slot"], params)
        if rows:
            return int(rows[0][0]), 0.0
        rows = await fetch(self._pool, QUERIES["next_rate_slot_in"], (destination, count))
        wait = rows[0][0] if rows and rows[0][0] is not None else window
        return None, min(max(float(wait), 0.001), _RATE_POLL)

    async def free_rate_slot(self, destination: str, slot: int, window: float) -> None:
        """The request on ``slot`` ended now: the slot frees one window later."""
        await execute(self._pool, QUERIES["free_rate_slot"], (window, destination, slot))

    # -- pause -------------------------------------------------------------------------

    def on_pause_changed(self, listener: PauseListener) -> None:
        self._pause_listeners.append(listener)

    def pause_changed(self, destination: str, paused: bool) -> None:
        """Another process paused or resumed ``destination`` (its NOTIFY arrived)."""
        for listener in self._pause_listeners:
            listener(destination, paused)

    # -- circuit -------------------------------------------------------------------

    async def set_circuit(self, destination: str, open_until: float) -> None:
        """Share a circuit's state: no process claims for it before ``open_until`` (0: closed)."""
        await execute(self._pool, QUERIES["set_circuit"], (destination, open_until, time.time()))
