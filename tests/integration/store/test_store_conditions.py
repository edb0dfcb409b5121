"""The outbox under production conditions: grown tables, readers beside claims, faults.

Each test here failed on the first version of the store: a full scan per group
commit, claims that ran in a stale snapshot while someone read the admin API, a
re-send loop when results could not be written, one bad write failing the
webhooks of its transaction, two processes on one database, a database deleted
behind the daemon's back, and start-up errors that left a thread running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

import hookgate.store.sqlite
from hookgate import config
from hookgate.errors import StoreError
from hookgate.store import Accepted, MessageFilter, parse_message_id
from hookgate.store.sqlite import QUERIES, SQLiteStore
from hookgate.store.sqlite.writer import dedup_lookup

from ..harness import (
    WAIT,
    Downstream,
    Relay,
    db_rows,
    new_message,
    query_plan,
    record,
    wait_for,
)

ORDERS = """
[destinations.orders]
url = "{url}"
sources = ["stripe"]
"""


# -- every hot query is an index lookup, whatever the table's size ------------------------

# Each query the hot paths run (ingest, claim, settle, stats, health, retention), with
# parameters of the right types.
HOT_QUERIES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "dedup lookup": (dedup_lookup(3), ("stripe", "a", "b", "c")),
    "dedup expiry": (QUERIES["expire_dedup_key"], ("stripe", "a", 0.0)),
    "claim due": (QUERIES["select_due"], ("orders", 0.0, "[1, 2]", 100)),
    "claim head": (QUERIES["select_head"], ("orders", 100)),
    "next due": (QUERIES["select_next_due"], ("orders", 0.0)),
    "last delivery id": (QUERIES["select_max_delivery_id"], ()),
    "new deliveries": (QUERIES["insert_deliveries"], ('[[1000000, 1, "orders", 0.0]]',)),
    "settle": (
        QUERIES["settle_deliveries"],
        (
            '[[1, "delivered", 1, 0.0, 200, null, null],'
            ' [2, "pending", 1, 9.5, 503, "HTTP 503", null]]',
            0.0,
        ),
    ),
    "oldest pending": (QUERIES["select_oldest_pending"], ("orders",)),
    "delivery counts": (QUERIES["select_delivery_counts"], ()),
    "message count": (QUERIES["select_message_count"], ()),
    "heartbeat": (QUERIES["heartbeat"], ("0",)),
    "prune": (QUERIES["prune"], (1 << 40, 500)),
}


async def grow(store: SQLiteStore, count: int) -> None:
    """Fill the tables the way ingest does: many concurrent accepts, group committed."""
    for start in range(0, count, 500):
        batch = range(start, min(count, start + 500))
        await asyncio.gather(*(store.accept(new_message(event_id=f"evt_{i}")) for i in batch))


@pytest.mark.parametrize("name", sorted(HOT_QUERIES))
async def test_hot_query_never_scans_messages_or_deliveries(
    store: SQLiteStore, tmp_path: Path, name: str
) -> None:
    await grow(store, 2000)
    sql, params = HOT_QUERIES[name]
    plan = query_plan(tmp_path / "hookgate.db", sql, params)
    scans = [
        step
        for step in plan
        if step.startswith("SCAN") and step.split()[1] in {"messages", "deliveries", "m", "d"}
    ]
    assert not scans, (sqlite3.sqlite_version, plan)


async def test_dedup_lookup_uses_the_unique_index(store: SQLiteStore, tmp_path: Path) -> None:
    sql, params = HOT_QUERIES["dedup lookup"]
    plan = query_plan(tmp_path / "hookgate.db", sql, params)
    assert any(s.startswith("SEARCH") and "INDEX messages_dedup" in s for s in plan), plan


async def test_dedup_still_holds_across_chunks_and_sources(store: SQLiteStore) -> None:
    messages = [new_message(event_id=f"evt_{i}") for i in range(900)]
    first = await asyncio.gather(*(store.accept(m) for m in messages))
    again = await asyncio.gather(*(store.accept(m) for m in messages))
    other = await store.accept(new_message(event_id="evt_1", source="github"))  # other source
    assert not any(a.duplicate for a in first)
    assert all(a.duplicate for a in again)
    assert [a.message_id for a in again] == [a.message_id for a in first]
    assert not other.duplicate


# -- counters instead of counting -----------------------------------------------------------


async def test_counts_follow_every_change(store: SQLiteStore, tmp_path: Path) -> None:
    await asyncio.gather(
        *(store.accept(new_message(destinations=("orders", "audit"))) for _ in range(5))
    )
    due = await store.due_deliveries("orders", time.time(), 10)
    await store.record_attempt(record(due[0].id, state="delivered", status=200, error=None))
    await store.record_attempt(record(due[1].id, state="dead"))
    await store.retry_delivery(due[1].id)
    await store.record_attempt(record(due[2].id, state="dead"))
    assert await store.delivery_counts() == {
        "orders": {"pending": 3, "delivered": 1, "dead": 1},
        "audit": {"pending": 5},
    }
    assert await store.totals() == (5, {"pending": 8, "delivered": 1, "dead": 1})
    # The counters agree with counting the rows, after retention too.
    assert await store.prune(time.time() + 1, 100) == 0  # everything still has a pending one
    rows = db_rows(
        tmp_path / "hookgate.db",
        "SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2",
    )
    counted: dict[str, dict[str, int]] = {}
    for destination, state, count in rows:
        counted.setdefault(destination, {})[state] = count
    assert await store.delivery_counts() == counted


# -- claims never run in a stale snapshot -----------------------------------------------------


async def test_admin_reads_beside_claims_never_duplicate_a_delivery(
    relay: Relay, downstream: Downstream
) -> None:
    await relay.start(ORDERS + "concurrency = 8\n")
    assert relay.store is not None
    store = relay.store
    stop = asyncio.Event()

    async def monitor() -> int:
        # What /readyz, /metrics and the API do, as fast as the loop allows.
        reads = 0
        while not stop.is_set():
            await relay.store.queue_stats() if relay.store else None
            await store.list_messages(MessageFilter(), 20)
            reads += 1
        return reads

    watcher = asyncio.create_task(monitor())
    try:
        ids = await asyncio.gather(*(relay.accept() for _ in range(1500)))
        await relay.run_until_idle()
    finally:
        stop.set()
        reads = await watcher
    sent = Counter(r.headers["webhook-id"] for r in downstream.received)
    assert set(sent) == set(ids)
    assert [i for i, n in sent.items() if n > 1] == []
    assert {r.headers["Hookgate-Attempt"] for r in downstream.received} == {"1"}
    assert reads > 0


# -- results that cannot be written are held, not re-sent ---------------------------------------


async def test_result_not_recorded_is_held_and_never_resent(
    tmp_path: Path, relay: Relay, downstream: Downstream
) -> None:
    await relay.start(ORDERS)
    ids = [await relay.accept() for _ in range(5)]
    await relay.run_until_idle()
    await relay.stop()
    # A second process holds the write lock: recording waits busy_timeout, then fails.
    locker = sqlite3.connect(relay.db, isolation_level=None, timeout=0)
    relay2 = Relay(tmp_path, downstream)
    await relay2.start(ORDERS)
    try:
        new = await relay2.accept()
        locker.execute("BEGIN IMMEDIATE")
        # The delivery reaches the downstream; its result cannot be written for now.
        await wait_for(lambda: any(r.headers["webhook-id"] == new for r in downstream.received))
        assert relay2.store is not None
        await wait_for(lambda: relay2.store is not None and relay2.store.failure, timeout=20)
        locker.execute("ROLLBACK")
        await relay2.wait_state(new, "delivered")
    finally:
        with contextlib.suppress(sqlite3.Error):
            locker.execute("ROLLBACK")
        locker.close()
        await relay2.stop()
    sent = Counter(r.headers["webhook-id"] for r in downstream.received)
    assert sent[new] == 1
    assert all(sent[i] == 1 for i in ids)
    assert relay2.attempts(new)[0][0] == 200
    assert len(relay2.attempts(new)) == 1


# -- an unexpected error is a failed attempt, not a spin -------------------------------------


async def test_request_that_cannot_be_sent_fails_with_backoff_and_dies(
    relay: Relay, downstream: Downstream
) -> None:
    cfg = await relay.start(
        ORDERS + 'max_attempts = 2\ninitial_backoff = "50ms"\nmax_backoff = "100ms"\n'
    )
    # A header value that aiohttp refuses to send (config validation rejects it too;
    # here it is forced past validation to exercise the dispatcher's own guard).
    await relay.stop()
    bad = config.DestinationConfig(
        **{
            **{
                f: getattr(cfg.destinations["orders"], f)
                for f in cfg.destinations["orders"].__struct_fields__
            },
            "headers": {"X-Bad": "a\nb"},
        }
    )
    await relay.wire(SQLiteStore(str(relay.db)), [bad])
    message_id = await relay.accept()
    _, attempts, status, error = await relay.wait_state(message_id, "dead")
    assert attempts == 2
    assert status is None
    assert "ValueError" in error or "internal error" in error
    assert len(relay.attempts(message_id)) == 2
    assert downstream.received == []
    (reason,) = db_rows(
        relay.db,
        "SELECT dead_reason FROM deliveries WHERE message_id = ?",
        (parse_message_id(message_id),),
    )[0]
    assert reason == "max_attempts"


# -- one bad write fails only itself ------------------------------------------------------------


async def test_failing_write_call_does_not_fail_webhooks_in_its_commit(
    store: SQLiteStore,
) -> None:
    async def orphan_delivery(conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "INSERT INTO deliveries (message_id, destination, state, next_attempt_at, updated_at)"
            " VALUES (42, 'orders', 'pending', 0, 0)"
        )

    webhooks = [asyncio.ensure_future(store.accept(new_message())) for _ in range(3)]
    bad = asyncio.create_task(store.write_call(orphan_delivery))
    more = [asyncio.ensure_future(store.accept(new_message())) for _ in range(3)]
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        await bad
    accepted = await asyncio.gather(*webhooks, *more)
    assert len({a.message_id for a in accepted}) == 6
    assert store.failure is None
    assert (await store.delivery_counts())["orders"] == {"pending": 6}


async def test_write_call_is_committed_while_webhooks_keep_coming(store: SQLiteStore) -> None:
    """The SQLite thread commits webhooks batch after batch while more are queued; a write
    call queued meanwhile (it runs through the event loop) must still get its commit."""
    stop = asyncio.Event()
    accepted: list[asyncio.Future[Accepted]] = []
    not_taken = store._writer._pending.messages  # what the drain has not taken yet

    async def keep_sending() -> None:
        # More webhooks whenever the drain has taken what was queued, whether they
        # committed or not: the SQLite thread finds some queued after every commit. A
        # few at a time: a sender that never waited outran the commits, doubled every
        # batch and took minutes on a slow machine.
        while not stop.is_set():
            if len(not_taken) < 20:
                accepted.append(store.accept(new_message()))
            await asyncio.sleep(0)

    sender = asyncio.create_task(keep_sending())
    try:
        await wait_for(lambda: sum(f.done() for f in accepted) >= 100)
        # Bounded: a drain that never stops for the call keeps it waiting for ever.
        await asyncio.wait_for(store.set_paused("orders", True), WAIT)
    finally:
        stop.set()
        await sender
    results = await asyncio.gather(*accepted)
    assert await store.paused_destinations() == {"orders"}
    assert db_rows(store.path, "SELECT count(*) FROM messages") == [(len(results),)]


async def test_a_failed_batch_never_takes_the_answers_of_the_commit_before_it(
    store: SQLiteStore,
) -> None:
    """The SQLite thread hands a commit's answers to the event loop once the next batch's
    rows are written (writer.py: ``_commit_while_queued``). When that next batch fails, a
    real SQLite error here, the commit before it still answers its callers, as committed,
    and only the failed batch's callers get the error; then the writer goes on."""

    async def poison(conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN new.body = x'706f69736f6e'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )

    await store.write_call(poison)
    not_taken = store._writer._pending.messages  # what the drain has not taken yet

    async def taken() -> None:
        while not_taken:
            await asyncio.sleep(0)

    for _ in range(10):
        # A large batch, then, once the SQLite thread took it, a poisoned one queued
        # while the large one's rows are still being written: the next batch.
        good = [asyncio.ensure_future(store.accept(new_message())) for _ in range(200)]
        await asyncio.wait_for(taken(), WAIT)
        poisoned = asyncio.ensure_future(store.accept(new_message(body=b"poison")))
        with pytest.raises(StoreError, match="poisoned"):
            await asyncio.wait_for(poisoned, WAIT)
        accepted = await asyncio.wait_for(asyncio.gather(*good), WAIT)
        numbers = [parse_message_id(a.message_id) for a in accepted]
        stored = {row[0] for row in db_rows(store.path, "SELECT id FROM messages")}
        assert set(numbers) <= stored
    assert db_rows(store.path, "SELECT count(*) FROM messages") == [(2000,)]
    assert (await store.accept(new_message())).duplicate is False


async def test_writes_wait_for_a_write_lock_another_connection_holds(
    store: SQLiteStore,
) -> None:
    """The write connection's busy_timeout is 0 (the writer waits itself: writer.begin),
    so a lock held elsewhere, an operator's ``sqlite3`` for a moment, must still be
    waited for, by a webhook's commit and by a write call, not fail them at once."""
    operator = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    try:
        operator.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.5, operator.execute, ("COMMIT",))
        timer.start()
        started = time.monotonic()
        accepted, _ = await asyncio.wait_for(
            asyncio.gather(store.accept(new_message()), store.set_paused("orders", True)), WAIT
        )
        assert time.monotonic() - started >= 0.4
        timer.join()
    finally:
        operator.close()
    assert accepted.duplicate is False
    assert await store.paused_destinations() == {"orders"}
    assert store.failure is None


async def test_replay_of_a_pruned_message_creates_nothing(store: SQLiteStore) -> None:
    accepted = await store.accept(new_message(destinations=()))
    assert await store.prune(time.time() + 1, 10) == 1
    assert await store.replay(accepted.message_id, ["orders"]) == []


# -- one process per database -------------------------------------------------------------------


async def test_second_store_on_the_same_database_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "hookgate.db")
    first = SQLiteStore(path)
    await first.open()
    try:
        threads = threading.active_count()
        second = SQLiteStore(path)
        with pytest.raises(StoreError, match=rf"in use by another hookgate \(pid {os.getpid()}\)"):
            await second.open()
        assert threading.active_count() == threads  # it opened no connection
        await first.accept(new_message())  # the holder goes on
    finally:
        await first.close()
    reopened = SQLiteStore(path)  # released on close
    await reopened.open()
    await reopened.close()


# -- the database's identity ---------------------------------------------------------------


async def test_database_deleted_while_open_is_never_acknowledged_into(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.db"
    store = SQLiteStore(str(path))
    await store.open()
    try:
        await store.accept(new_message())
        path.unlink()
        with pytest.raises(StoreError, match="deleted or replaced"):
            await store.accept(new_message())
        with pytest.raises(StoreError, match="deleted or replaced"):
            await store.check_writable()
        assert store.failure is not None
    finally:
        await store.close()


async def test_a_wal_index_that_takes_no_writes_is_left_alone_until_it_does(
    tmp_path: Path,
) -> None:
    # A write into the memory map of an immutable -shm would kill the process with
    # SIGBUS: with the file frozen, commits and reads fail as store errors instead.
    chattr = shutil.which("chattr")
    assert chattr is not None, "chattr (e2fsprogs) is needed: .ci/setup installs it"
    path = tmp_path / "hookgate.db"
    store = SQLiteStore(str(path))
    await store.open()
    try:
        kept = await store.accept(new_message(destinations=("orders",)))
        subprocess.run([chattr, "+i", f"{path}-shm"], check=True)
        try:
            with pytest.raises(StoreError, match="immutable"):
                await store.accept(new_message())
            with pytest.raises(StoreError, match="immutable"):
                await store.claim_due("orders", time.time() + 60, 10)
            with pytest.raises(StoreError, match="immutable"):
                await store.message_count()
            assert store.failure is not None
        finally:
            subprocess.run([chattr, "-i", f"{path}-shm"], check=True)
        after = await store.accept(new_message())
        assert store.failure is None
        due = await store.claim_due("orders", time.time() + 60, 10)
        assert [d.message_id for d in due] == [kept.message_id, after.message_id]
    finally:
        await store.close()


async def test_the_store_keeps_its_lock_on_the_wal_index(tmp_path: Path) -> None:
    # Checking the -shm for refuse_frozen_files must never close a descriptor of it:
    # that drops every POSIX lock of this process on the file, SQLite's too, and the
    # next process to open the database would take the WAL index for unused and
    # truncate it under this one's memory map (SIGBUS). SQLite holds a shared lock on
    # the -shm's byte 128 ("DMS") while a connection uses it: no other process may
    # take that byte exclusively.
    path = tmp_path / "hookgate.db"
    store = SQLiteStore(str(path))
    await store.open()
    try_lock = (
        "import fcntl, sys; f = open(sys.argv[1] + '-shm', 'r+b')\n"
        "try:\n fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128); print('taken')\n"
        "except OSError:\n print('held')"
    )
    try:
        for _ in range(3):
            await asyncio.gather(*(store.accept(new_message()) for _ in range(50)))
            await store.message_count()
            await store.claim_due("orders", time.time() + 60, 10)
            outside = subprocess.run(
                [sys.executable, "-c", try_lock, str(path)], capture_output=True, text=True
            )
            assert outside.stdout.strip() == "held", outside.stderr
        assert await store.message_count() == 150
    finally:
        await store.close()


async def test_missing_database_is_not_silently_recreated(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.db"
    store = SQLiteStore(str(path))
    await store.open()
    identity = store.identity
    await store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match=f"missing.*{identity}.*hookgate.db.lock"):
        await SQLiteStore(str(path)).open()
    assert not path.exists()
    # The operator's way to start afresh: remove the lock file.
    Path(f"{path}.lock").unlink()
    fresh = SQLiteStore(str(path))
    await fresh.open()
    assert fresh.identity != identity
    await fresh.close()


async def test_replaced_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.db"
    other = tmp_path / "other" / "hookgate.db"
    other.parent.mkdir()
    for where in (path, other):
        made = SQLiteStore(str(where))
        await made.open()
        await made.close()
    os.replace(other, path)
    with pytest.raises(StoreError, match="records database"):
        await SQLiteStore(str(path)).open()


async def test_database_replaced_while_open_turns_the_store_broken(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.db"
    store = SQLiteStore(str(path))
    await store.open()
    try:
        with contextlib.closing(sqlite3.connect(tmp_path / "new.db")) as conn:
            conn.execute("CREATE TABLE t (x)")
        os.replace(tmp_path / "new.db", path)
        with pytest.raises(StoreError, match="deleted or replaced"):
            await store.accept(new_message())
    finally:
        await store.close()


# -- start-up failures end cleanly ---------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing directory", "not a database", "newer schema"])
async def test_failed_open_leaves_no_thread(tmp_path: Path, case: str) -> None:
    path = tmp_path / "hookgate.db"
    if case == "missing directory":
        path = tmp_path / "nowhere" / "hookgate.db"
    elif case == "not a database":
        path.write_bytes(b"this is not a SQLite file at all, just text" * 200)
    else:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA user_version = 999")
    threads = threading.active_count()
    with pytest.raises(StoreError, match="cannot open database"):
        await SQLiteStore(str(path)).open()
    # Every connection was closed: their threads end, and the process can exit.
    await wait_for(lambda: threading.active_count() == threads)


async def test_open_interrupted_midway_closes_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal (or a bug) during a migration: no thread left running, the lock released."""

    class Interrupted(BaseException):
        pass

    async def interrupted(*_: object) -> None:
        raise Interrupted

    path = str(tmp_path / "hookgate.db")
    threads = threading.active_count()
    monkeypatch.setattr(hookgate.store.sqlite, "migrate", interrupted)
    with pytest.raises(Interrupted):
        await SQLiteStore(path).open()
    await wait_for(lambda: threading.active_count() == threads)
    monkeypatch.undo()
    reopened = SQLiteStore(path)  # the lock was released: a second open succeeds
    await reopened.open()
    await reopened.close()


async def test_corrupt_page_is_reported_as_store_error(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.db"
    store = SQLiteStore(str(path))
    await store.open()
    try:
        await grow(store, 3000)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
        with open(path, "r+b") as file:
            for page in range(pages // 4, pages - 1):
                file.seek(page * page_size)
                file.write(os.urandom(page_size))
        with pytest.raises(StoreError):
            for _ in range(3):  # the page cache may answer once from memory
                await store.list_messages(MessageFilter(), 5000)
                await store.queue_stats()
                await grow(store, 500)
        assert store.failure is not None
    finally:
        await store.close()
