"""The SQLite outbox against a real database file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from hookgate.errors import StoreError
from hookgate.store import format_message_id, parse_message_id
from hookgate.store import sqlite as sqlite_store
from hookgate.store.sqlite import SQLiteStore
from hookgate.store.sqlite.database import connect_here
from hookgate.store.sqlite.writer import commit_batch

from ..harness import db_rows, new_message, query_plan, record

T = TypeVar("T")


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A separate, plain sqlite3 connection: what another process would see."""
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


def message_exists(path: Path, message_id: str) -> bool:
    number = parse_message_id(message_id)
    return bool(db_rows(path, "SELECT 1 FROM messages WHERE id = ?", (number,)))


async def wait_for_sqlite_threads(timeout: float = 1.0) -> None:
    """Wait until no aiosqlite worker thread is left, or fail.

    aiosqlite stops the thread of a connection that failed to open by itself, and
    reports back to the event loop: the loop must still run when it does.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)
    pytest.fail("an aiosqlite connection thread is still running")


# -- schema and connection settings --------------------------------------------------


async def test_migrations_set_user_version_and_schema(store: SQLiteStore, db_path: Path) -> None:
    assert db_rows(db_path, "PRAGMA user_version") == [(len(sqlite_store.MIGRATIONS),)]
    tables = {r[0] for r in db_rows(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"messages", "deliveries", "attempts"} <= tables

    def columns(table: str) -> set[str]:
        return {str(r[1]) for r in db_rows(db_path, f"PRAGMA table_info({table})")}

    assert columns("messages") >= {
        "id",
        "source",
        "received_at",
        "event_type",
        "event_id",
        "headers",
        "body",
    }
    assert columns("deliveries") >= {
        "id",
        "message_id",
        "destination",
        "state",
        "attempts",
        "next_attempt_at",
        "last_status",
        "last_error",
        "updated_at",
    }
    assert columns("attempts") >= {
        "delivery_id",
        "started_at",
        "duration_ms",
        "status",
        "error",
        "response_snippet",
    }
    indexes = {
        r[0] for r in db_rows(db_path, "SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    assert {"deliveries_due", "messages_dedup"} <= indexes


async def test_migrations_match_a_fresh_schema(store: SQLiteStore, db_path: Path) -> None:
    """What open() builds equals the migrations applied by hand to an empty database."""
    with contextlib.closing(sqlite3.connect(":memory:")) as fresh:
        for script in sqlite_store.MIGRATIONS:
            fresh.executescript(script)
        expected = fresh.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    actual = db_rows(db_path, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
    assert actual == expected


async def test_reopen_does_not_migrate_again(db_path: Path) -> None:
    for _ in range(2):
        store = SQLiteStore(str(db_path))
        await store.open()
        await store.close()
    assert db_rows(db_path, "PRAGMA user_version") == [(len(sqlite_store.MIGRATIONS),)]


async def test_newer_schema_is_refused(db_path: Path) -> None:
    with raw(db_path) as conn:
        conn.execute("PRAGMA user_version = 999")
    store = SQLiteStore(str(db_path))
    try:
        with pytest.raises(StoreError, match="newer"):
            await store.open()
        # A failed open() leaves nothing behind: a connection left open keeps a
        # non-daemon thread alive, which can keep the process from exiting.
        await wait_for_sqlite_threads()
    finally:
        await store.close()  # so that a failure here cannot hang the test run


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "no" / "such" / "dir" / "x.db"))
    with pytest.raises(StoreError, match="cannot open database"):
        await store.open()
    await wait_for_sqlite_threads()


@pytest.mark.parametrize(("sync", "level"), [("full", 2), ("normal", 1)])
async def test_wal_and_synchronous_applied(db_path: Path, sync: str, level: int) -> None:
    store = SQLiteStore(str(db_path), sync=sync)
    await store.open()
    try:
        # journal_mode=WAL is persistent: another connection sees it in the file.
        assert db_rows(db_path, "PRAGMA journal_mode") == [("wal",)]
        # synchronous, foreign_keys and busy_timeout are per connection: ask the
        # store's own connections (no public accessor exists for them).
        for conn, busy_timeout in ((store._write, 0), (store._read, 5000)):
            assert conn is not None
            for pragma, value in (
                ("synchronous", level),
                ("foreign_keys", 1),
                # The writer waits for a lock itself (writer.begin).
                ("busy_timeout", busy_timeout),
                ("journal_mode", "wal"),
            ):
                async with conn.execute(f"PRAGMA {pragma}") as cursor:
                    assert await cursor.fetchone() == (value,)
    finally:
        await store.close()


# -- accept -------------------------------------------------------------------------------


def test_message_id_text_form() -> None:
    assert format_message_id(255) == "msg_00000000000000ff"
    assert parse_message_id("msg_00000000000000ff") == 255
    for text in ("", "msg_", "msg_zzzzzzzzzzzzzzzz", "evt_0000000000000001", "msg_1"):
        assert parse_message_id(text) is None


async def test_a_large_commit_writes_every_row_with_its_own_values(db_path: Path) -> None:
    """The writer puts many rows in one INSERT (writer.py: insert_rows): 203 messages and
    then 77 outcomes, counts that need statements of several sizes, each row its own."""
    opened = SQLiteStore(str(db_path))
    await opened.open()
    await opened.close()
    now = time.time()
    messages = [new_message(body=b"%d" % n, received_at=now + n) for n in range(203)]
    with raw(db_path) as conn:
        conn.isolation_level = None
        ids = list(range(1000, 1203))
        inserted = commit_batch(conn, messages, ids, [])
        delivery_ids = [d.id for d in inserted.deliveries["orders"]]
        outcomes = [
            record(delivery_ids[n], state="delivered", status=200 + n, error=None)
            for n in range(77)
        ]
        commit_batch(conn, [], [], outcomes)
    assert [a.message_id for a in inserted.accepted] == [format_message_id(i) for i in ids]
    assert db_rows(db_path, "SELECT id, body, received_at FROM messages ORDER BY id") == [
        (i, b"%d" % n, now + n) for n, i in enumerate(ids)
    ]
    assert db_rows(db_path, "SELECT id, message_id FROM deliveries ORDER BY id") == list(
        zip(delivery_ids, ids, strict=True)
    )
    assert db_rows(db_path, "SELECT delivery_id, status FROM attempts ORDER BY id") == [
        (delivery_ids[n], 200 + n) for n in range(77)
    ]
    assert db_rows(db_path, "SELECT state, count(*) FROM deliveries GROUP BY 1") == [
        ("delivered", 77),
        ("pending", 126),
    ]


async def test_answers_held_for_the_next_commit_never_wait_for_another_writers_lock(
    db_path: Path,
) -> None:
    """The writer answers a commit once the next batch's rows are written (writer.py:
    ``_commit_while_queued``); while another connection (an operator's ``sqlite3``)
    holds the write lock, it answers before waiting for that lock, not after it."""
    opened = SQLiteStore(str(db_path))
    await opened.open()
    await opened.close()
    answered: list[float] = []
    operator = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    with raw(db_path) as conn, contextlib.closing(operator):
        conn.isolation_level = None
        conn.execute("PRAGMA busy_timeout = 0")  # as the store's write connection
        operator.execute("BEGIN IMMEDIATE")

        def release_later() -> None:
            time.sleep(0.5)
            operator.execute("COMMIT")

        releaser = threading.Thread(target=release_later)
        releaser.start()
        started = time.monotonic()
        try:
            inserted = commit_batch(
                conn,
                [new_message()],
                [1],
                [],
                answer_first=lambda: answered.append(time.monotonic() - started),
            )
        finally:
            releaser.join()
        waited = time.monotonic() - started
        # Asked to answer at once (and again before the COMMIT: answering is done only
        # once by the writer), then the commit waited for the lock and went through.
        assert answered[0] < 0.4
        assert waited >= 0.5
        assert [a.duplicate for a in inserted.accepted] == [False]
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (0,)
    assert db_rows(db_path, "SELECT count(*) FROM messages") == [(1,)]


# -- dedup ---------------------------------------------------------------------------------


# -- due deliveries and attempts ----------------------------------------------------------


# -- claims on the event loop's thread ----------------------------------------------------


def run_without_suspending(coro: Coroutine[Any, Any, T]) -> T:
    """``coro``'s result if it finishes without giving the event loop a turn, else fail."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast("T", done.value)
    coro.close()
    pytest.fail("the coroutine waited for the event loop (a trip to another thread)")


async def test_a_small_claim_reads_on_the_event_loop_thread(store: SQLiteStore) -> None:
    """No trip to the claims thread and back: under load that trip was most of a claim."""
    await store.accept(new_message(destinations=("orders",)))
    claimed = run_without_suspending(store.claim_due("orders", time.time(), 16))
    assert len(claimed) == 1
    # Leased like any claim: the next one skips it.
    assert run_without_suspending(store.claim_due("orders", time.time(), 16)) == []
    await store.release([claimed[0].id])
    head = run_without_suspending(store.head_deliveries("orders", 16))
    assert [d.id for d in head] == [claimed[0].id]


async def test_a_claim_that_would_wait_for_a_lock_reads_on_the_claims_thread(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """The event loop never waits for a lock: a read that would gets its answer elsewhere.

    A WAL reader of hookgate's own database hardly ever meets a lock, so the loop's
    connection is pointed at a file that another connection holds exclusively: its
    read fails at once (SQLITE_BUSY), and the claim is read on the claims thread.
    """
    await store.accept(new_message(destinations=("orders",)))
    locked = tmp_path / "locked.db"
    with contextlib.closing(sqlite3.connect(locked, isolation_level=None)) as locker:
        locker.execute("BEGIN EXCLUSIVE")
        own, store._claims_here = store._claims_here, connect_here(str(locked))
        try:
            claim = asyncio.ensure_future(store.claim_due("orders", time.time(), 16))
            await asyncio.sleep(0)  # its first step: the loop's read, refused
            assert not claim.done()
            claimed = await claim
        finally:
            assert store._claims_here is not None
            store._claims_here.close()
            store._claims_here = own
    assert len(claimed) == 1


async def test_a_large_claim_reads_on_the_claims_thread(store: SQLiteStore) -> None:
    """A page too large to read on the loop goes to the claims thread, leased the same."""
    for _ in range(3):
        await store.accept(new_message(destinations=("orders",)))
    claim = asyncio.ensure_future(store.claim_due("orders", time.time(), 1000))
    await asyncio.sleep(0)
    assert not claim.done()
    assert len(await claim) == 3
    assert await store.claim_due("orders", time.time(), 16) == []


# -- query plans -----------------------------------------------------------------------------


async def test_claim_query_uses_due_index(store: SQLiteStore, db_path: Path) -> None:
    for i in range(50):
        await store.accept(new_message(destinations=("orders", "audit", f"d{i % 5}")))
    with raw(db_path) as conn:
        conn.execute("ANALYZE")
    plan = query_plan(
        db_path, sqlite_store.QUERIES["select_due"], ("orders", time.time(), "[]", 100)
    )
    assert any("USING INDEX deliveries_due" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    next_plan = query_plan(
        db_path, sqlite_store.QUERIES["select_next_due"], ("orders", time.time())
    )
    assert any("deliveries_due" in step for step in next_plan), next_plan
    assert not any("TEMP B-TREE" in step for step in next_plan), next_plan


# -- lifecycle ---------------------------------------------------------------------------


# -- retention and pause -----------------------------------------------------------------
