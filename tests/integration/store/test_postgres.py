"""The PostgreSQL store as several processes share it: each ``PostgresStore`` here stands
for one hookgate process (its own pool, writer, listener and leases) on one database
of the session's private server.

What every backend does alike is in test_store_behaviour.py; what the daemons do
together, killed and restarted, is in tests/e2e/test_postgres_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

import hookgate.store.postgres
from hookgate.errors import StoreError
from hookgate.store import Accepted, NewMessage, SkippedDestination, Store
from hookgate.store.postgres import MIGRATIONS, QUERIES, PostgresStore
from hookgate.store.postgres.transfer import copy_sqlite
from hookgate.store.postgres.writer import insert_messages
from hookgate.store.sqlite import SQLiteStore
from postgres_server import PostgresServer

from ..harness import Backend, Downstream, Relay, new_message, record, wait_for

Opener = Callable[..., Awaitable[PostgresStore]]
T = TypeVar("T")


async def eventually(
    attempt: Callable[[], Awaitable[T]], ok: Callable[[T], bool] = bool, timeout: float = 10.0
) -> T:
    """Run ``attempt`` until its result is ``ok``; that result (fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await attempt()
        if ok(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not so within {timeout}s: {result!r}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def open_process(postgres_url: str) -> AsyncIterator[Opener]:
    """Open one more "process" (a store of its own) on the test's database."""
    opened: list[PostgresStore] = []

    async def open_one(lease: float = 30.0) -> PostgresStore:
        store = PostgresStore(postgres_url, lease=lease)
        await store.open()
        opened.append(store)
        return store

    try:
        yield open_one
    finally:
        for store in opened:
            await store.close()


def rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql.encode(), params)
        return cursor.fetchall() if cursor.description else []


async def accept_many(store: Store, count: int, **fields: Any) -> list[Accepted]:
    return list(await asyncio.gather(*(store.accept(new_message(**fields)) for _ in range(count))))


# -- start-up -----------------------------------------------------------------------------


async def test_processes_starting_together_migrate_once(
    open_process: Opener, postgres_url: str
) -> None:
    stores = await asyncio.gather(*(open_process() for _ in range(5)))
    assert len({s.identity for s in stores}) == 1
    assert len(stores[0].identity) == 32
    assert rows(postgres_url, "SELECT version FROM hookgate_schema ORDER BY 1") == [
        (n,) for n in range(1, len(MIGRATIONS) + 1)
    ]


async def test_unreachable_database_is_a_store_error_without_the_password(
    postgres_url: str,
) -> None:
    url = postgres_url.replace("hookgate@", "hookgate:s3cret@").rsplit(":", 1)[0] + ":1/x"
    store = PostgresStore(url, display_url="postgresql://hookgate:***@127.0.0.1:1/x")
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "s3cret" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


# -- ingest ---------------------------------------------------------------------------------


async def test_dedup_holds_across_processes(open_process: Opener, postgres_url: str) -> None:
    a, b = await open_process(), await open_process()
    keys = [f"evt_{i}" for i in range(40)]
    results = await asyncio.gather(
        *(store.accept(new_message(event_id=key)) for key in keys for store in (a, b, a, b))
    )
    by_key: dict[str, list[Accepted]] = {}
    for (key, _), result in zip(((k, s) for k in keys for s in range(4)), results, strict=True):
        by_key.setdefault(key, []).append(result)
    for key, accepted in by_key.items():
        assert [r.duplicate for r in accepted].count(False) == 1, key
        assert len({r.message_id for r in accepted}) == 1, key
    assert rows(postgres_url, "SELECT count(*) FROM messages") == [(40,)]
    assert rows(postgres_url, "SELECT count(*) FROM deliveries") == [(40,)]


async def test_an_id_another_process_took_is_drawn_again(
    open_process: Opener, postgres_url: str
) -> None:
    store = await open_process()
    taken = await store.accept(new_message(event_id="first"))
    taken_id = int(taken.message_id[4:], 16)
    draws = iter([taken_id, taken_id + 1])
    messages: list[NewMessage] = [new_message(event_id="second")]
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        async with conn.transaction():
            accepted = await insert_messages(conn, messages, lambda _: next(draws))
    assert accepted == [Accepted(f"msg_{taken_id + 1:016x}", duplicate=False)]
    assert rows(postgres_url, "SELECT count(*) FROM deliveries") == [(2,)]


async def test_a_commit_wakes_the_other_processes(open_process: Opener) -> None:
    a, b = await open_process(), await open_process()
    woken: list[frozenset[str]] = []
    b.on_commit(woken.append)
    await a.accept(new_message(destinations=("orders", "audit")))
    await wait_for(lambda: woken)
    assert woken == [frozenset({"orders", "audit"})]


# -- claims and leases ------------------------------------------------------------------------


async def test_claims_of_two_processes_never_overlap(open_process: Opener) -> None:
    stores = [await open_process() for _ in range(4)]
    await accept_many(stores[0], 200)
    claimed: list[int] = []

    async def claim_until_empty(store: PostgresStore) -> None:
        while batch := await store.claim_due("orders", time.time(), 7):
            claimed.extend(d.id for d in batch)

    await asyncio.gather(*(claim_until_empty(s) for s in stores))
    assert len(claimed) == 200
    assert len(set(claimed)) == 200


async def test_an_outcome_or_a_release_ends_the_lease(open_process: Opener) -> None:
    a, b = await open_process(), await open_process()
    await accept_many(a, 3)
    first, second, third = await a.claim_due("orders", time.time(), 10)
    assert await b.claim_due("orders", time.time(), 10) == []
    await a.record_attempt(record(first.id, next_attempt_at=time.time() - 1))
    await a.release([second.id])
    again = await b.claim_due("orders", time.time(), 10)
    assert sorted(d.id for d in again) == sorted([first.id, second.id])
    assert again[0].attempts + again[1].attempts == 1
    assert third.id not in {d.id for d in again}


async def test_a_dead_process_lease_comes_back_when_it_runs_out(
    open_process: Opener, postgres_url: str
) -> None:
    alive = await open_process()
    await accept_many(alive, 2)
    # A process that claimed both and died: its lease has 1 s left and no one renews it.
    rows(
        postgres_url,
        "UPDATE deliveries SET claimed_by = 'gone:1:0',"
        " lease_until = extract(epoch FROM now()) + 1",
    )
    assert await alive.claim_due("orders", time.time(), 10) == []  # not at once
    back = await eventually(lambda: alive.claim_due("orders", time.time(), 10))  # not never
    assert len(back) == 2


async def test_a_living_process_renews_its_leases(open_process: Opener, postgres_url: str) -> None:
    owner = await open_process(lease=3.0)  # renewed every second
    other = await open_process()
    await accept_many(owner, 1)
    await owner.claim_due("orders", time.time(), 10)
    ((first_until,),) = rows(postgres_url, "SELECT lease_until FROM deliveries")

    def database_now() -> float:
        return float(rows(postgres_url, "SELECT extract(epoch FROM now())")[0][0])

    await wait_for(lambda: database_now() > first_until)
    # Past the first lease's end, the renewed one still keeps it from the others.
    assert await other.claim_due("orders", time.time(), 10) == []
    assert rows(postgres_url, "SELECT lease_until FROM deliveries")[0][0] > first_until


async def test_closing_releases_what_the_process_claimed(open_process: Opener) -> None:
    a, b = await open_process(), await open_process()
    await accept_many(a, 3)
    assert len(await a.claim_due("orders", time.time(), 10)) == 3
    await a.close()
    assert len(await b.claim_due("orders", time.time(), 10)) == 3


async def test_claim_listed_skips_what_another_process_holds(open_process: Opener) -> None:
    a, b = await open_process(), await open_process()
    await accept_many(a, 3)
    head = await a.head_deliveries("orders", 3)
    assert await a.claim_listed(head[:1]) == head[:1]
    assert await b.claim_listed(head) == head[1:]


# -- pause, circuit, order and rate, shared ---------------------------------------------------


async def test_pause_and_open_circuit_stop_every_process_claims(open_process: Opener) -> None:
    a, b = await open_process(), await open_process()
    await accept_many(a, 2)
    await a.set_paused("orders", True)
    assert await b.claim_due("orders", time.time(), 10) == []
    assert await b.claim_listed(await b.head_deliveries("orders", 2)) == []
    await a.set_paused("orders", False)
    coordination = a.coordination
    assert coordination is not None
    await coordination.set_circuit("orders", time.time() + 600)
    assert await b.claim_due("orders", time.time(), 10) == []
    await coordination.set_circuit("orders", 0.0)
    assert len(await b.claim_due("orders", time.time(), 10)) == 2


async def test_a_pause_is_heard_by_the_other_processes(open_process: Opener) -> None:
    a, b = await open_process(), await open_process()
    assert b.coordination is not None
    heard: list[tuple[str, bool]] = []
    b.coordination.on_pause_changed(lambda name, paused: heard.append((name, paused)))
    await a.set_paused("orders", True)
    await a.set_paused("orders", False)
    await wait_for(lambda: len(heard) == 2)
    assert heard == [("orders", True), ("orders", False)]
    assert await b.paused_destinations() == set()


def test_every_named_query_is_used_and_every_used_one_exists() -> None:
    package = Path(hookgate.store.postgres.__file__).parent
    # The admin operations are written once for both backends and look their queries up
    # by name in the backend's ``queries``.
    used: set[str] = set()
    for path in [*package.glob("*.py"), package.parent / "admin.py"]:
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'(?:QUERIES|queries)\["([a-z0-9_]+)"\]', text))
    assert set(QUERIES) - used == set()  # no dead SQL
    assert used - set(QUERIES) == set()  # no lookup of a missing name


async def test_one_process_at_a_time_holds_an_ordered_destination(open_process: Opener) -> None:
    a, b = await open_process(), await open_process()
    assert a.coordination is not None and b.coordination is not None
    assert await a.coordination.hold_order("orders")
    assert not await b.coordination.hold_order("orders")
    assert await b.coordination.hold_order("audit")  # one lock per destination
    await a.coordination.release_order("orders")
    assert await b.coordination.hold_order("orders")
    # The holder's connection ends (its process died): another takes over, once the
    # server has ended that backend (after the client's close returns, not before).
    await b.close()
    survivor = a.coordination
    assert await eventually(lambda: survivor.hold_order("orders"))


async def test_rate_slots_are_shared(open_process: Opener) -> None:
    a, b = await open_process(), await open_process()
    assert a.coordination is not None and b.coordination is not None
    taken = [
        await s.take_rate_slot("orders", 3, 0.2, 60)
        for s in (a.coordination, b.coordination, a.coordination)
    ]
    assert sorted(slot for slot, _ in taken) == [0, 1, 2]  # type: ignore[type-var]
    slot, wait = await b.coordination.take_rate_slot("orders", 3, 0.2, 60)
    assert slot is None
    assert wait > 0
    await a.coordination.free_rate_slot("orders", taken[0][0], 0.2)  # type: ignore[arg-type]
    coordination = b.coordination
    again = await eventually(
        lambda: coordination.take_rate_slot("orders", 3, 0.2, 60), ok=lambda r: r[0] is not None
    )
    assert again[0] == taken[0][0]


# -- hot query plans on a grown table ------------------------------------------------------------


@pytest.fixture
async def grown(open_process: Opener, postgres_url: str) -> PostgresStore:
    """A database with 200,000 deliveries over 20 destinations, mostly delivered."""
    store = await open_process()
    rows(
        postgres_url,
        "INSERT INTO messages (id, source, received_at, event_type, event_id, dedup_key,"
        " headers, body) SELECT n, 'stripe', n, 't', 'evt_' || n, 'evt_' || n, '{}', '{}'"
        " FROM generate_series(1, 100000) AS n",
    )
    rows(
        postgres_url,
        "INSERT INTO deliveries (message_id, destination, state, next_attempt_at, updated_at)"
        " SELECT n, 'd' || mod(n, 20),"
        " CASE WHEN mod(n, 50) = 0 THEN 'pending' ELSE 'delivered' END, n, n"
        " FROM generate_series(1, 100000) AS n, generate_series(1, 2) AS copy",
    )
    rows(postgres_url, "ANALYZE")
    return store


HOT_QUERIES: dict[str, tuple[str, dict[str, Any] | tuple[Any, ...]]] = {
    "claim due": (
        QUERIES["claim_due"],
        {"destination": "d1", "now": 1e12, "limit": 10, "owner": "x", "lease": 30.0},
    ),
    "claim listed": (QUERIES["claim_listed"], {"ids": [1, 2, 3], "owner": "x", "lease": 30.0}),
    "head": (QUERIES["select_head"], ("d1", 10)),
    "next due": (QUERIES["select_next_due"], ("d1", 0.0)),
    "dedup owners": (
        QUERIES["select_dedup_owners"],
        {"sources": ["stripe"] * 2, "keys": ["evt_5", "evt_9"]},
    ),
    "dedup expiry": (
        QUERIES["expire_dedup_keys"],
        {"sources": ["stripe"], "keys": ["evt_5"], "cutoffs": [0.0]},
    ),
    "settle": (
        QUERIES["record_attempts"],
        {
            "ids": [1, 2],
            "states": ["delivered"] * 2,
            "attempts": [1, 1],
            "next_attempt_at": [0.0] * 2,
            "status": [200] * 2,
            "errors": [None] * 2,
            "dead_reasons": [None] * 2,
            "started_at": [0.0] * 2,
            "duration_ms": [1.0] * 2,
            "snippets": [b""] * 2,
            "now": 0.0,
            "owner": "x",
        },
    ),
    "renew leases": (QUERIES["renew_leases"], (30.0, [1, 2, 3], "x")),
    "oldest pending": (QUERIES["select_oldest_pending"], ("d1",)),
    "prune": (QUERIES["prune"], (500, 100)),
    # The dashboard's and the API's message listing, by its indexed filters.
    "list by event id": (
        QUERIES["list_messages"].format(where="m.event_id = %s"),
        ("evt_5", 50),
    ),
    "list by source": (QUERIES["list_messages"].format(where="m.source = %s"), ("github", 50)),
}


async def test_hot_queries_read_by_index_on_a_grown_table(
    grown: PostgresStore, postgres_url: str
) -> None:
    plans = {}
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        for name, (sql, params) in HOT_QUERIES.items():
            # EXPLAIN only plans: nothing runs, nothing changes.
            cursor = await conn.execute(("EXPLAIN " + sql).encode(), params)
            plans[name] = "\n".join(row[0] for row in await cursor.fetchall())
    for name, plan in plans.items():
        assert f"using {INDEX_USED[name]} on" in plan, (name, plan)
        assert "Seq Scan on deliveries" not in plan, (name, plan)
        assert "Seq Scan on messages" not in plan, (name, plan)
        assert "Sort" not in plan, (name, plan)  # the index gives the order


# Run by the writer for every batch, prepared by psycopg while the tables may still be
# small (a new database): the plan kept then must not read the whole table later.
PREPARED_EARLY = ("settle", "dedup owners", "dedup expiry")


def _numbered(sql: str) -> tuple[str, int]:
    """The query with $1, $2 .. for its named placeholders, as the server sees it."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return re.sub(r"%\((\w+)\)[bs]", number, sql), len(names)


async def test_batch_queries_planned_on_empty_tables_still_use_the_index(
    open_process: Opener, postgres_url: str
) -> None:
    await open_process()
    plans = {}
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        # The generic plan: what a prepared statement keeps, whatever the values.
        await conn.execute(b"SET plan_cache_mode = force_generic_plan")
        for name in PREPARED_EARLY:
            sql, count = _numbered(HOT_QUERIES[name][0])
            await conn.execute(f"PREPARE early AS {sql}".encode())
            nulls = ", ".join(["NULL"] * count)  # the values do not shape a generic plan
            cursor = await conn.execute(f"EXPLAIN EXECUTE early ({nulls})".encode())
            plans[name] = "\n".join(row[0] for row in await cursor.fetchall())
            await conn.execute(b"DEALLOCATE early")
    for name, plan in plans.items():
        assert f"on {INDEX_USED[name]}" in plan, (name, plan)  # an index or bitmap scan
        assert "Seq Scan" not in plan, (name, plan)


INDEX_USED = {
    "claim due": "deliveries_due",
    "claim listed": "deliveries_pkey",
    "head": "deliveries_fifo",
    "next due": "deliveries_due",
    "dedup owners": "messages_dedup",
    "dedup expiry": "messages_dedup",
    "settle": "deliveries_pkey",
    "renew leases": "deliveries_pkey",
    "oldest pending": "deliveries_fifo",
    "prune": "deliveries_message",
    "list by event id": "messages_event_id",
    "list by source": "messages_source",
}


# -- the counts: sums of their rows of changes ------------------------------------------------


def counted(url: str) -> tuple[dict[tuple[str, str], int], int]:
    """The counts as the rows themselves give them, by another connection."""
    by_state = rows(url, "SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2")
    return {(d, s): n for d, s, n in by_state}, rows(url, "SELECT count(*) FROM messages")[0][0]


async def store_counts(store: PostgresStore) -> tuple[dict[tuple[str, str], int], int]:
    by_state = await store.delivery_counts()
    flat = {(d, s): n for d, states in by_state.items() for s, n in states.items()}
    return flat, await store.message_count()


async def test_counts_read_their_changes_not_the_grown_tables(
    grown: PostgresStore, postgres_url: str
) -> None:
    # Statements after the fixture's: each adds rows of changes to the same groups.
    for first in (1, 2, 3):
        rows(
            postgres_url,
            "UPDATE deliveries SET state = 'dead' WHERE id IN (%s, %s)",
            (first, first + 20),
        )
    assert await store_counts(grown) == counted(postgres_url)
    groups = len(counted(postgres_url)[0])
    assert rows(postgres_url, "SELECT count(*) FROM delivery_count_changes")[0][0] > groups
    rows(postgres_url, QUERIES["compact_counts"])
    assert rows(postgres_url, "SELECT count(*) FROM delivery_count_changes")[0][0] == groups
    assert rows(postgres_url, "SELECT count(*) FROM message_count_changes")[0][0] == 1
    assert await store_counts(grown) == counted(postgres_url)
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        for name in ("select_delivery_counts", "select_message_count"):
            cursor = await conn.execute(("EXPLAIN " + QUERIES[name]).encode())
            plan = "\n".join(row[0] for row in await cursor.fetchall())
            assert "count_changes" in plan, (name, plan)
            assert " on deliveries" not in plan, (name, plan)
            assert " on messages" not in plan, (name, plan)


async def test_folds_while_two_processes_commit_keep_the_counts(
    open_process: Opener, postgres_url: str
) -> None:
    a, b = await open_process(), await open_process()
    folds = 0

    async def commit_and_settle(store: PostgresStore, rounds: int) -> None:
        for n in range(rounds):
            await accept_many(store, 5, destinations=("orders", "audit"))
            await accept_many(store, 2, event_id=f"evt_{n % 3}")  # duplicates too
            for delivery in await store.claim_due("orders", time.time() + 120, 4):
                state = ("delivered", "dead", "pending")[delivery.id % 3]
                await store.record_attempt(record(delivery.id, state=state))

    async def fold_meanwhile(done: asyncio.Event) -> None:
        nonlocal folds
        async with contextlib.AsyncExitStack() as stack:
            connections = [
                await stack.enter_async_context(
                    await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
                )
                for _ in range(2)
            ]
            while not done.is_set():
                # Two at once, as two processes' folds may be: one folds, one finds the lock.
                await asyncio.gather(
                    *(conn.execute(QUERIES["compact_counts"].encode()) for conn in connections)
                )
                folds += 1

    done = asyncio.Event()
    folding = asyncio.create_task(fold_meanwhile(done))
    await asyncio.gather(commit_and_settle(a, 25), commit_and_settle(b, 25))
    done.set()
    await folding
    assert folds > 5
    assert await store_counts(a) == await store_counts(b) == counted(postgres_url)
    assert await a.retry_dead("orders", since=None) > 0
    await a.prune(time.time() + 1, 1000)  # what is not pending goes
    assert await store_counts(b) == counted(postgres_url)


async def test_each_process_folds_the_changes_now_and_then(
    open_process: Opener, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hookgate.store.postgres, "_COMPACT_COUNTS_EVERY", 0.05)
    store = await open_process()
    for _ in range(20):
        await accept_many(store, 3, destinations=("orders", "audit"))
    changes = "SELECT count(*) FROM delivery_count_changes"
    await eventually(
        lambda: asyncio.to_thread(rows, postgres_url, changes),
        ok=lambda found: found[0][0] == 2,  # orders and audit, pending
    )
    assert await store_counts(store) == counted(postgres_url)


async def test_a_truncate_empties_the_counts(open_process: Opener, postgres_url: str) -> None:
    store = await open_process()
    await accept_many(store, 4, destinations=("orders", "audit"))
    rows(postgres_url, "TRUNCATE messages CASCADE")  # deliveries and attempts with them
    assert await store_counts(store) == counted(postgres_url) == ({}, 0)
    await accept_many(store, 2)
    assert await store_counts(store) == counted(postgres_url) == ({("orders", "pending"): 2}, 2)


async def lock_awaited(url: str, table: str) -> None:
    """Return once a transaction of this database waits for a lock on ``table``."""
    waiting = (
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    await eventually(lambda: asyncio.to_thread(rows, url, waiting, (table,)), lambda r: r[0][0])


def schema_4(url: str, messages: int = 0) -> None:
    """The database as hookgate left it before the counts' changes (migration 0005)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(QUERIES["create_schema_table"].encode())
        for number in range(4):
            conn.execute(MIGRATIONS[number].encode())
            conn.execute(QUERIES["insert_schema_version"].encode(), (number + 1,))
        conn.execute(
            b"INSERT INTO messages (id, source, received_at, headers, body)"
            b" SELECT n, 'stripe', n, '{}', '{}' FROM generate_series(1, %s) AS n",
            (messages,),
        )


async def test_an_upgrade_waits_for_an_older_process_writing_meanwhile(
    postgres_url: str,
) -> None:
    schema_4(postgres_url)
    async with await psycopg.AsyncConnection.connect(postgres_url) as older:
        # An older process's writer, mid-transaction: it has expired dedup keys
        # (messages locked for writing) and will insert a message and its delivery.
        expiry = {"sources": ["stripe"], "keys": ["evt"], "cutoffs": [0.0]}
        await older.execute(QUERIES["expire_dedup_keys"].encode(), expiry)
        store = PostgresStore(postgres_url)
        opening = asyncio.create_task(store.open())
        await lock_awaited(postgres_url, "messages")
        inserted = (
            *([9000], ["stripe"], [1.0], [None], ["evt"], ["evt"], [b"{}"], [b"{}"], [None]),
            *([9000], ["orders"]),
        )
        await older.execute(QUERIES["insert_messages"].encode(), inserted)
        await older.commit()  # before the upgrade, whose lock it never waited for
        await opening
    try:
        assert rows(postgres_url, "SELECT max(version) FROM hookgate_schema")[0][0] == 5
        assert await store_counts(store) == counted(postgres_url) == ({("orders", "pending"): 1}, 1)
    finally:
        await store.close()


async def test_an_upgrade_that_deadlocks_with_a_writer_tries_again(postgres_url: str) -> None:
    schema_4(postgres_url, messages=3)
    rows(
        postgres_url,
        "INSERT INTO deliveries (message_id, destination, state, next_attempt_at, updated_at)"
        " SELECT n, 'orders', 'pending', n, n FROM generate_series(1, 3) AS n",
    )
    async with await psycopg.AsyncConnection.connect(postgres_url) as older:
        # An older process's batch: an outcome settled (deliveries locked for writing),
        # then a prune (messages), while the upgrade holds messages and waits for
        # deliveries: PostgreSQL ends the upgrade's transaction, which waited first.
        await older.execute(b"UPDATE deliveries SET state = 'delivered' WHERE id = 1")
        store = PostgresStore(postgres_url)
        opening = asyncio.create_task(store.open())
        await lock_awaited(postgres_url, "deliveries")
        await older.execute(b"DELETE FROM messages WHERE id = 1")
        await older.commit()
        await opening
    try:
        assert rows(postgres_url, "SELECT max(version) FROM hookgate_schema")[0][0] == 5
        assert await store_counts(store) == counted(postgres_url) == ({("orders", "pending"): 2}, 2)
    finally:
        await store.close()


async def test_an_upgrade_counts_the_rows_already_there(postgres_url: str) -> None:
    schema_4(postgres_url, messages=300)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            b"INSERT INTO deliveries (message_id, destination, state, next_attempt_at,"
            b" updated_at) SELECT n, 'd' || mod(n, 3),"
            b" (ARRAY['pending', 'delivered', 'dead'])[1 + mod(n, 7) % 3], n, n"
            b" FROM generate_series(1, 300) AS n"
        )
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        assert await store_counts(store) == counted(postgres_url)
        assert (await store_counts(store))[1] == 300
        await accept_many(store, 3)
        assert await store_counts(store) == counted(postgres_url)
    finally:
        await store.close()


async def test_a_pause_reaches_the_workers_of_the_other_processes(
    tmp_path: Path, downstream: Downstream, postgres_url: str
) -> None:
    backend = Backend("postgresql", postgres_url)
    relays = [Relay(tmp_path / name, downstream, backend) for name in ("a", "b")]
    try:
        for relay in relays:
            (tmp_path / relay.tmp_path.name).mkdir()
            await relay.start('[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\n')
        a, b = (relay.dispatcher for relay in relays)
        assert a is not None and b is not None
        await a.set_paused("orders", True)
        await wait_for(lambda: b.workers["orders"].state == "paused")
        await a.set_paused("orders", False)
        await wait_for(lambda: b.workers["orders"].state == "ok")
    finally:
        for relay in relays:
            await relay.stop()


async def test_the_store_recovers_when_the_database_drops_its_connections(
    open_process: Opener, postgres_url: str
) -> None:
    """A restart or failover of PostgreSQL: every connection is cut at once."""
    a, b = await open_process(), await open_process()
    woken: list[frozenset[str]] = []
    b.on_commit(woken.append)
    await a.accept(new_message())
    rows(
        postgres_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )

    async def accept_now() -> Accepted | None:
        try:
            return await a.accept(new_message(destinations=("audit",)))
        except StoreError:
            return None  # a commit on a cut connection fails (503), the next reconnects

    assert await eventually(accept_now) is not None
    assert a.failure is None
    # b's listener reconnected: a's commits wake it again.
    await eventually(
        lambda: a.accept(new_message(destinations=("crm",))),
        ok=lambda _: frozenset({"crm"}) in woken,
    )
    assert len(await b.claim_due("orders", time.time(), 10)) == 1


# -- hookgate migrate ---------------------------------------------------------------------


async def test_copy_keeps_skipped_destinations_and_reads_an_older_sqlite_database(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    postgres_url = postgres_server.new_database()
    path = str(tmp_path / "hookgate.db")
    sqlite = SQLiteStore(path)
    await sqlite.open()
    skips = (SkippedDestination("crm", "filter"),)
    skipping = await sqlite.accept(new_message(destinations=("orders",), skipped=skips))
    await sqlite.close()
    copied = await copy_sqlite(path, postgres_url)
    assert copied.messages == 1
    target = PostgresStore(postgres_url)
    await target.open()
    try:
        found = await target.get_message(skipping.message_id)
    finally:
        await target.close()
    assert found is not None
    assert found[1].skipped == skips

    # A database an older hookgate left (before skipped destinations): copied all the same.
    older = str(tmp_path / "older.db")
    sqlite = SQLiteStore(older)
    await sqlite.open()
    await sqlite.accept(new_message())
    await sqlite.close()
    with contextlib.closing(sqlite3.connect(older)) as conn:
        conn.execute("ALTER TABLE messages DROP COLUMN skipped")
        conn.execute("PRAGMA user_version = 4")
    empty = postgres_server.new_database()
    copied = await copy_sqlite(older, empty)
    assert copied.messages == 1
    assert rows(empty, "SELECT skipped FROM messages") == [(None,)]
