"""The counts behind /metrics, /readyz and the admin API stay exact.

SQLite keeps them in tables (``message_count``, ``delivery_counts``): the writer adds
what it inserts once per commit, triggers count changes of state and deletes
(migration 0006). Each step of a workload is compared with counting the rows
themselves, on each backend, and on a SQLite database upgraded from the migrations
before 0006 with rows in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import msgspec

from hookgate.store import Store
from hookgate.store.sqlite import SQLiteStore, sql

from ..harness import Backend, new_message, record

COUNT_TRIGGERS = "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name"


async def assert_counts_exact(store: Store, backend: Backend) -> None:
    """The store's counts are those of its rows, as another connection counts them."""
    by_state: dict[str, dict[str, int]] = defaultdict(dict)
    for destination, state, count in backend.rows(
        "SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2"
    ):
        by_state[destination][state] = count
    assert await store.delivery_counts() == dict(by_state)
    assert await store.message_count() == backend.rows("SELECT count(*) FROM messages")[0][0]


async def workload(store: Store, backend: Backend) -> None:
    """Inserts, duplicates, outcomes, retries, replays and retention deletes, each
    followed by a check of the counts."""
    now = time.time()
    # One group commit: several destinations, none, and a duplicate inside the batch.
    first, *_ = await asyncio.gather(
        *(
            store.accept(
                new_message(
                    event_id=f"evt_{n % 5}",
                    received_at=now - 1000 + n,
                    destinations=(("orders", "audit"), ("orders",), ())[n % 3],
                )
            )
            for n in range(8)
        )
    )
    await assert_counts_exact(store, backend)
    duplicates = [store.accept(new_message(event_id="evt_1")) for _ in range(3)]
    assert all(a.duplicate for a in await asyncio.gather(*duplicates))
    await store.accept(new_message(event_id="evt_new", destinations=("crm",)))
    await assert_counts_exact(store, backend)

    orders = await store.due_deliveries("orders", now, 10)
    await store.record_attempt(record(orders[0].id, state="delivered", status=200, error=None))
    await store.record_attempt(record(orders[1].id, state="dead", attempts=12))
    await store.record_attempt(record(orders[2].id))  # failed, pending again
    for audit in await store.due_deliveries("audit", now, 10):
        await store.record_attempt(record(audit.id, state="delivered", status=200, error=None))
    await assert_counts_exact(store, backend)

    dead = backend.rows("SELECT count(*) FROM deliveries WHERE state = 'dead'")[0][0]
    assert await store.retry_dead("orders", since=None) == dead > 0
    await store.record_attempt(record(orders[1].id, state="dead", attempts=12))
    assert await store.retry_delivery(orders[1].id) is not None
    await assert_counts_exact(store, backend)

    assert len(await store.replay(first.message_id, ["audit", "billing"])) == 2
    await assert_counts_exact(store, backend)

    for delivery in await store.due_deliveries("orders", time.time() + 120, 100):
        await store.record_attempt(record(delivery.id, state="delivered", status=200, error=None))
    for delivery in await store.due_deliveries("audit", time.time(), 100):
        await store.record_attempt(record(delivery.id, state="delivered", status=200, error=None))
    assert await store.prune(now - 100, limit=100) > 0
    await assert_counts_exact(store, backend)


async def test_counts_stay_exact_through_a_workload(any_store: Store, backend: Backend) -> None:
    await workload(any_store, backend)
    assert await any_store.message_count() > 0


async def test_one_commit_of_every_kind_of_outcome_writes_each_as_recorded(
    any_store: Store, backend: Backend
) -> None:
    # Delivered (with and without an error), retried and dead outcomes settled by one
    # commit (one settle statement on SQLite): each row reads as its record says.
    await asyncio.gather(
        *(any_store.accept(new_message(destinations=("orders",))) for _ in range(6))
    )
    due = await any_store.due_deliveries("orders", time.time(), 10)
    at = time.time()
    records = [
        record(due[0].id, state="delivered", status=200, error=None, next_attempt_at=at + 1),
        record(due[1].id, state="pending", attempts=2, next_attempt_at=at + 60),
        record(due[2].id, state="delivered", status=299, error="late", next_attempt_at=at + 2),
        record(due[3].id, state="dead", attempts=12, next_attempt_at=at + 3),
        record(
            due[4].id, state="delivered", attempts=3, status=204, error=None, next_attempt_at=at
        ),
    ]
    records[3] = msgspec.structs.replace(records[3], dead_reason="max_attempts")
    # Queued in one turn of the loop: one group commit.
    await asyncio.gather(*(any_store.record_attempt(r) for r in records))
    rows = backend.rows(
        "SELECT id, state, attempts, next_attempt_at, last_status, last_error, dead_reason"
        " FROM deliveries WHERE destination = 'orders' ORDER BY id"
    )
    expected = [
        (r.delivery_id, r.state, r.attempts, r.next_attempt_at, r.status, r.error, r.dead_reason)
        for r in records
    ]
    assert [tuple(row) for row in rows[:5]] == expected
    assert tuple(rows[5][1:3]) == ("pending", 0)  # not in the commit: untouched
    attempts = backend.rows("SELECT delivery_id, status, error FROM attempts ORDER BY delivery_id")
    assert [tuple(a) for a in attempts] == [(r.delivery_id, r.status, r.error) for r in records]
    await assert_counts_exact(any_store, backend)


def old_database(path: Path) -> None:
    """A database as hookgate left it before migration 0006 (the insert triggers
    counted), with messages, deliveries in each state and attempts."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for number, script in enumerate(sql.MIGRATIONS[:5], start=1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        now = time.time() - 5000
        conn.execute("BEGIN")
        for n in range(1, 31):
            conn.execute(
                "INSERT INTO messages (id, source, received_at, headers, body)"
                " VALUES (?, 'stripe', ?, x'7b7d', x'7b7d')",
                (n, now + n),
            )
            for destination, state in (("orders", ("pending", "delivered", "dead")[n % 3]),):
                conn.execute(
                    "INSERT INTO deliveries (message_id, destination, state, next_attempt_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?)",
                    (n, destination, state, now + n, now + n),
                )
        conn.execute("COMMIT")


async def test_upgrade_keeps_the_counts_and_counts_after_it(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.db"
    old_database(path)
    backend = Backend("sqlite", str(path))
    before = backend.rows(COUNT_TRIGGERS)
    assert ("messages_count_insert",) in before
    assert ("deliveries_count_insert",) in before
    store = SQLiteStore(str(path))
    await store.open()
    try:
        assert backend.rows("PRAGMA user_version") == [(len(sql.MIGRATIONS),)]
        assert backend.rows(COUNT_TRIGGERS) == [
            ("deliveries_count_delete",),
            ("deliveries_count_update",),
            ("messages_count_delete",),
        ]
        assert await store.message_count() == 30
        assert await store.delivery_counts() == {
            "orders": {"pending": 10, "delivered": 10, "dead": 10}
        }
        await workload(store, backend)
        assert await store.message_count() > 0
    finally:
        await store.close()
