"""End to end: a database that cannot take a write gets 503, never a 2xx.

Another process (this test) takes SQLite's exclusive write lock on the daemon's file
and holds it until the webhooks sent meanwhile are answered, which takes at least the
daemon's busy timeout (5 s). They cannot be committed, so the promise "a 2xx means it
is on disk" demands a 503 with ``Retry-After`` and a JSON error. Once the lock is gone, webhooks are
accepted again and ``/readyz`` recovers, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from .conftest import Daemon, Downstream, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]
BUSY_TIMEOUT = 5.0  # PRAGMA busy_timeout in hookgate.store.sqlite


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold SQLite's write lock on ``path`` (as any other process could) until exit."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def send(
    session: aiohttp.ClientSession, url: str, body: bytes
) -> tuple[int, dict[str, str], dict[str, object]]:
    async with session.post(
        url, data=body, headers={"Content-Type": "application/json"}
    ) as response:
        payload = await response.read()
        return response.status, dict(response.headers), json.loads(payload) if payload else {}


async def readyz(session: aiohttp.ClientSession, daemon: Daemon) -> tuple[int, dict[str, object]]:
    async with session.get(daemon.admin_url("/readyz")) as response:
        return response.status, await response.json()


@pytest.mark.slow  # holds the lock past busy_timeout, ~10 s
# With ingest processes, the 503 comes from a child that the daemon told of the failure.
@pytest.mark.parametrize("ingest_processes", [0, 2])
async def test_locked_database_gets_503_then_recovers(
    start_daemon: StartDaemon, downstream: Downstream, ingest_processes: int
) -> None:
    daemon = await start_daemon(
        server={"ingest_processes": ingest_processes},
        sources={"shop": {"path": "/hooks/shop", "event_type": "json:type"}},
        destinations={"orders": {"url": downstream.url("/orders"), "sources": ["shop"]}},
    )
    url = daemon.url("/hooks/shop")
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        before, _, first = await send(session, url, b'{"type":"before"}')
        assert before == 202, first
        # Its delivery recorded first, so the writer is idle when the lock is taken.
        await wait_for(lambda: daemon.delivery_rows(str(first["id"]))[0][1] == "delivered")

        with exclusive_lock(daemon.db_path):
            locked_at = time.monotonic()
            # Several at once, and the answers awaited while the lock is still held: no
            # commit can succeed meanwhile, however the writer groups them (each of its
            # attempts gives up after the busy timeout), so none may be a 2xx.
            sends = [
                asyncio.create_task(send(session, url, b'{"type":"during","n":%d}' % i))
                for i in range(3)
            ]

            async def failing() -> tuple[int, dict[str, object]] | None:
                answer = await readyz(session, daemon)
                return answer if answer[0] == 503 else None

            # Until the webhooks reach the writer (through an ingest process, they may
            # come after this check), an idle writer with a recent commit is ready.
            ready_status, ready_body = await wait_for(failing, 20)
            answers = await asyncio.gather(*sends)
            held = time.monotonic() - locked_at
        assert ready_status == 503, ready_body
        assert ready_body["status"] == "failing", ready_body
        # The writer waited for the lock as long as SQLite's busy timeout lets it.
        assert held >= BUSY_TIMEOUT - 0.5, held

        for status, headers, body in answers:
            assert status == 503, (status, body)
            assert headers.get("Retry-After", "").isdigit(), headers
            assert int(headers["Retry-After"]) > 0, headers
            assert headers["Content-Type"].startswith("application/json"), headers
            assert body["error"] == "unavailable", body
            assert isinstance(body["detail"], str) and body["detail"], body

        # Released: accepted again, and ready again, without a restart.
        after, _, last = await send(session, url, b'{"type":"after"}')
        assert after == 202, last

        async def ready() -> bool:
            status, _ = await readyz(session, daemon)
            return status == 200

        await wait_for(ready, message="/readyz did not recover after the lock was released")

        # A refused webhook must not turn up late. A marker, sent last: one writer
        # commits in arrival order and deliveries are claimed oldest first, so once
        # the marker is delivered and nothing is pending, a late one would be there.
        status, _, marker = await send(session, url, b'{"type":"marker"}')
        assert status == 202, marker
    await wait_for(
        lambda: (
            daemon.delivery_rows(str(marker["id"]))[0][1] == "delivered"
            and "pending" not in daemon.delivery_states()
        ),
        message=lambda: f"not all delivered: {daemon.delivery_states()}",
    )

    stored = sorted(row[0] for row in daemon.query("SELECT event_type FROM messages"))
    assert stored == ["after", "before", "marker"]
    received = downstream.requests
    # At least once: an attempt whose outcome could not be recorded under the lock is
    # made again, with the same webhook-id, so the receiver can tell.
    ids_by_body: dict[bytes, set[str]] = {}
    for request in received:
        ids_by_body.setdefault(request.body, set()).add(request.webhook_id)
    expected = {b'{"type":"after"}', b'{"type":"before"}', b'{"type":"marker"}'}
    assert set(ids_by_body) == expected, ids_by_body
    assert all(len(ids) == 1 for ids in ids_by_body.values()), ids_by_body
    assert daemon.running
    assert "Traceback" not in daemon.stdout() + daemon.stderr()
