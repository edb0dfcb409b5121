"""The SQLite outbox against a real database file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from hookgate import metrics
from hookgate.errors import StoreError
from hookgate.store import Accepted, format_message_id, parse_message_id
from hookgate.store import sqlite as sqlite_store
from hookgate.store.sqlite import SQLiteStore

from ..harness import db_rows, new_message, query_plan, record


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


class CommitSizes:
    """Group commits seen by ``hookgate_group_commit_webhooks`` since this was made."""

    def __init__(self) -> None:
        self._start = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        name = "hookgate_group_commit_webhooks"
        get = metrics.REGISTRY.get_sample_value
        return get(f"{name}_count") or 0.0, get(f"{name}_sum") or 0.0

    def commits_and_webhooks(self) -> tuple[int, int]:
        """Commits that carried webhooks, and how many webhooks they carried in all."""
        count, total = self._now()
        return int(count - self._start[0]), int(total - self._start[1])


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
        for conn in (store._write, store._read):
            assert conn is not None
            for pragma, value in (
                ("synchronous", level),
                ("foreign_keys", 1),
                ("busy_timeout", 5000),
                ("journal_mode", "wal"),
            ):
                async with conn.execute(f"PRAGMA {pragma}") as cursor:
                    assert await cursor.fetchone() == (value,)
    finally:
        await store.close()


# -- accept -------------------------------------------------------------------------------


async def test_accept_commits_message_and_one_delivery_per_destination(
    store: SQLiteStore, db_path: Path
) -> None:
    received = time.time()
    message = new_message(
        event_id="evt_1", destinations=("orders", "audit", "crm"), received_at=received
    )
    accepted = await store.accept(message)
    assert accepted.duplicate is False
    number = parse_message_id(accepted.message_id)
    assert number is not None
    assert format_message_id(number) == accepted.message_id
    assert message_exists(db_path, accepted.message_id)

    # Visible to another connection as soon as accept() returned: committed.
    assert db_rows(
        db_path, "SELECT source, received_at, event_type, event_id, headers, body FROM messages"
    ) == [
        (
            "stripe",
            received,
            "charge.succeeded",
            "evt_1",
            b'{"content-type":"application/json"}',
            b'{"ok":true}',
        )
    ]
    deliveries = db_rows(
        db_path,
        "SELECT message_id, destination, state, attempts, next_attempt_at FROM deliveries"
        " ORDER BY destination",
    )
    assert deliveries == [
        (number, "audit", "pending", 0, received),
        (number, "crm", "pending", 0, received),
        (number, "orders", "pending", 0, received),
    ]


async def test_message_without_destinations_is_stored(store: SQLiteStore, db_path: Path) -> None:
    accepted = await store.accept(new_message(destinations=()))
    assert message_exists(db_path, accepted.message_id)
    assert db_rows(db_path, "SELECT count(*) FROM messages") == [(1,)]
    assert db_rows(db_path, "SELECT count(*) FROM deliveries") == [(0,)]


def test_message_id_text_form() -> None:
    assert format_message_id(255) == "msg_00000000000000ff"
    assert parse_message_id("msg_00000000000000ff") == 255
    for text in ("", "msg_", "msg_zzzzzzzzzzzzzzzz", "evt_0000000000000001", "msg_1"):
        assert parse_message_id(text) is None


async def test_concurrent_accepts_are_group_committed(store: SQLiteStore, db_path: Path) -> None:
    commits: list[frozenset[str]] = []
    sizes = CommitSizes()
    store.on_commit(commits.append)
    results = await asyncio.gather(
        *(store.accept(new_message(event_id=f"evt_{i}", body=b"%d" % i)) for i in range(200))
    )
    assert all(not r.duplicate for r in results)
    ids = [parse_message_id(r.message_id) for r in results]
    assert len(set(ids)) == 200
    assert db_rows(db_path, "SELECT count(*) FROM messages") == [(200,)]
    assert db_rows(db_path, "SELECT count(*) FROM deliveries") == [(200,)]
    # Each commit calls the listener once: far fewer commits than calls.
    assert 1 <= len(commits) < 200
    batches, webhooks = sizes.commits_and_webhooks()
    assert batches == len(commits)
    assert webhooks == 200  # every webhook in exactly one commit
    assert batches < webhooks  # some commit carried more than one
    assert all(c == frozenset({"orders"}) for c in commits)


async def test_ids_increase_in_arrival_order(store: SQLiteStore) -> None:
    now = time.time()
    numbers = []
    # Even when received_at goes backwards, each id is larger than the last.
    for offset in (0, -100, -200, 50):
        accepted = await store.accept(new_message(received_at=now + offset))
        numbers.append(parse_message_id(accepted.message_id))
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)


# -- dedup ---------------------------------------------------------------------------------


async def test_duplicate_within_window_returns_first_id(store: SQLiteStore, db_path: Path) -> None:
    first = await store.accept(new_message(event_id="evt_1"))
    commits: list[frozenset[str]] = []
    store.on_commit(commits.append)
    second = await store.accept(new_message(event_id="evt_1", body=b"{}"))
    third = await store.accept(new_message(event_id="evt_1"))
    assert first.duplicate is False
    assert second == Accepted(first.message_id, duplicate=True)
    assert third == Accepted(first.message_id, duplicate=True)
    assert db_rows(db_path, "SELECT count(*) FROM messages") == [(1,)]
    assert db_rows(db_path, "SELECT count(*) FROM deliveries") == [(1,)]
    assert commits == []  # nothing new to deliver, no dispatcher wake-up


async def test_duplicate_within_one_batch(store: SQLiteStore, db_path: Path) -> None:
    sizes = CommitSizes()
    results = await asyncio.gather(
        store.accept(new_message(event_id="evt_same", destinations=("a", "b"))),
        store.accept(new_message(event_id="evt_other", destinations=("a", "b"))),
        store.accept(new_message(event_id="evt_same", destinations=("a", "b"))),
        store.accept(new_message(event_id="evt_same", destinations=("a", "b"))),
    )
    assert sizes.commits_and_webhooks() == (1, 4)  # one commit for the four
    assert [r.duplicate for r in results] == [False, False, True, True]
    assert results[2].message_id == results[0].message_id
    assert results[3].message_id == results[0].message_id
    assert results[1].message_id != results[0].message_id
    assert db_rows(db_path, "SELECT count(*) FROM messages") == [(2,)]
    assert db_rows(db_path, "SELECT count(*) FROM deliveries") == [(4,)]


async def test_same_event_id_after_window_is_new(store: SQLiteStore, db_path: Path) -> None:
    now = time.time()
    old = await store.accept(new_message(event_id="evt_1", received_at=now - 100, dedup_window=60))
    new = await store.accept(new_message(event_id="evt_1", received_at=now, dedup_window=60))
    assert new.duplicate is False
    assert new.message_id != old.message_id
    # Now the new message is the one that repeats are matched against.
    again = await store.accept(new_message(event_id="evt_1", received_at=now + 1, dedup_window=60))
    assert again == Accepted(new.message_id, duplicate=True)
    assert db_rows(db_path, "SELECT count(*) FROM deliveries") == [(2,)]


async def test_same_event_id_after_window_with_real_time(store: SQLiteStore) -> None:
    # Both received (stamped) at once, before either commit: on a slow machine a commit
    # alone can outlast the 50 ms window, and the second must still fall inside it.
    received = [new_message(event_id="evt_t", dedup_window=0.05) for _ in range(2)]
    first = await store.accept(received[0])
    inside = await store.accept(received[1])
    await asyncio.sleep(0.1)  # the window passes (a lower bound: slower only helps)
    after = await store.accept(new_message(event_id="evt_t", dedup_window=0.05))
    assert inside == Accepted(first.message_id, duplicate=True)
    assert after.duplicate is False
    assert after.message_id != first.message_id


async def test_dedup_is_per_source(store: SQLiteStore, db_path: Path) -> None:
    a = await store.accept(new_message(source="stripe", event_id="evt_1"))
    b = await store.accept(new_message(source="github", event_id="evt_1"))
    assert not a.duplicate
    assert not b.duplicate
    assert a.message_id != b.message_id
    assert db_rows(db_path, "SELECT count(*) FROM deliveries") == [(2,)]


async def test_messages_without_event_id_never_dedup(store: SQLiteStore, db_path: Path) -> None:
    results = [await store.accept(new_message(event_id=None)) for _ in range(3)]
    results += await asyncio.gather(*(store.accept(new_message(event_id=None)) for _ in range(3)))
    assert not any(r.duplicate for r in results)
    assert len({r.message_id for r in results}) == 6
    assert db_rows(db_path, "SELECT count(*) FROM messages") == [(6,)]


# -- due deliveries and attempts ----------------------------------------------------------


async def test_due_deliveries_order_limit_and_cutoff(store: SQLiteStore) -> None:
    t0 = time.time() - 1000
    ids = {}
    for offset, name in ((3, "third"), (1, "first"), (2, "second"), (4, "fourth")):
        accepted = await store.accept(
            new_message(
                received_at=t0 + offset, destinations=("orders", "audit"), body=name.encode()
            )
        )
        ids[name] = accepted.message_id
    await store.accept(new_message(received_at=t0, destinations=("audit",)))

    due = await store.due_deliveries("orders", time.time(), 10)
    assert [d.body for d in due] == [b"first", b"second", b"third", b"fourth"]
    assert [d.message_id for d in due] == [ids[n] for n in ("first", "second", "third", "fourth")]
    assert all(d.destination == "orders" for d in due)
    assert [d.received_at for d in due] == [t0 + 1, t0 + 2, t0 + 3, t0 + 4]
    first = due[0]
    assert (first.attempts, first.source, first.event_type) == (0, "stripe", "charge.succeeded")
    assert orjson.loads(first.headers) == {"content-type": "application/json"}

    assert [d.body for d in await store.due_deliveries("orders", time.time(), 2)] == [
        b"first",
        b"second",
    ]
    # Only what is due at `now`.
    assert [d.body for d in await store.due_deliveries("orders", t0 + 2.5, 10)] == [
        b"first",
        b"second",
    ]
    assert len(await store.due_deliveries("audit", time.time(), 10)) == 5
    assert await store.due_deliveries("nobody", time.time(), 10) == []


async def test_next_due_at(store: SQLiteStore) -> None:
    t0 = time.time() + 1000  # in the future: not due yet
    for offset in (30, 10, 20):
        await store.accept(new_message(received_at=t0 + offset))
    assert await store.due_deliveries("orders", time.time(), 10) == []
    assert await store.next_due_at("orders", time.time()) == t0 + 10
    assert await store.next_due_at("orders", t0 + 10) == t0 + 20  # strictly after
    assert await store.next_due_at("orders", t0 + 30) is None
    assert await store.next_due_at("other", 0) is None


async def test_record_attempt_updates_delivery_and_inserts_attempt(
    store: SQLiteStore, db_path: Path
) -> None:
    await store.accept(new_message())
    (delivery,) = await store.due_deliveries("orders", time.time(), 10)
    started = time.time()
    retry_at = started + 3600

    await store.record_attempt(
        record(
            delivery.id, status=503, error="HTTP 503", next_attempt_at=retry_at, started_at=started
        )
    )
    assert await store.due_deliveries("orders", time.time(), 10) == []
    assert await store.next_due_at("orders", time.time()) == retry_at
    (due_later,) = await store.due_deliveries("orders", retry_at, 10)
    assert due_later.id == delivery.id
    assert due_later.attempts == 1
    assert db_rows(
        db_path,
        "SELECT state, attempts, next_attempt_at, last_status, last_error FROM deliveries",
    ) == [("pending", 1, retry_at, 503, "HTTP 503")]
    assert db_rows(
        db_path,
        "SELECT delivery_id, started_at, duration_ms, status, error, response_snippet"
        " FROM attempts",
    ) == [(delivery.id, started, 12.5, 503, "HTTP 503", b"oops")]

    await store.record_attempt(
        record(
            delivery.id, state="delivered", attempts=2, status=200, error=None, started_at=started
        )
    )
    assert await store.due_deliveries("orders", retry_at + 10, 10) == []
    assert db_rows(db_path, "SELECT state, attempts, last_status, last_error FROM deliveries") == [
        ("delivered", 2, 200, None)
    ]
    assert db_rows(db_path, "SELECT status FROM attempts ORDER BY id") == [(503,), (200,)]
    updated_at = db_rows(db_path, "SELECT updated_at FROM deliveries")[0][0]
    assert isinstance(updated_at, float)
    assert updated_at >= started


async def test_record_attempt_for_unknown_delivery_fails_and_store_survives(
    store: SQLiteStore, db_path: Path
) -> None:
    with pytest.raises(StoreError):
        await store.record_attempt(record(987654))
    # The writer is still alive and takes new work.
    accepted = await store.accept(new_message())
    assert message_exists(db_path, accepted.message_id)
    await store.check_writable()


async def test_queue_stats(store: SQLiteStore) -> None:
    empty = await store.queue_stats()
    assert (empty.pending, empty.oldest_pending_at, empty.dead, empty.destinations) == (
        0,
        None,
        0,
        {},
    )
    t0 = time.time() - 500
    await store.accept(new_message(received_at=t0 + 5, destinations=("orders", "audit")))
    await store.accept(new_message(received_at=t0 + 7, destinations=("audit",)))
    await store.accept(new_message(received_at=t0 + 9, destinations=("orders",)))
    due = await store.due_deliveries("orders", time.time(), 10)
    await store.record_attempt(record(due[0].id, state="dead", attempts=12))
    await store.record_attempt(record(due[1].id, state="delivered", status=200, error=None))

    stats = await store.queue_stats()
    assert stats.pending == 2
    assert stats.dead == 1
    # The age of the head of the line: the message of the delivery pending longest.
    assert stats.oldest_pending_at == t0 + 5
    assert set(stats.destinations) == {"audit"}
    assert stats.destinations["audit"].pending == 2
    assert stats.destinations["audit"].oldest_pending_at == t0 + 5


async def test_reopen_keeps_everything(db_path: Path) -> None:
    store = SQLiteStore(str(db_path))
    await store.open()
    first = await store.accept(new_message(event_id="evt_keep", destinations=("orders", "audit")))
    (delivery,) = await store.due_deliveries("orders", time.time(), 10)
    await store.record_attempt(record(delivery.id, next_attempt_at=time.time() - 1))
    await store.close()

    reopened = SQLiteStore(str(db_path))
    await reopened.open()
    try:
        assert message_exists(db_path, first.message_id)
        (again,) = await reopened.due_deliveries("orders", time.time(), 10)
        assert (again.id, again.attempts, again.message_id) == (delivery.id, 1, first.message_id)
        assert len(await reopened.due_deliveries("audit", time.time(), 10)) == 1
        # Dedup survives a restart.
        duplicate = await reopened.accept(new_message(event_id="evt_keep"))
        assert duplicate == Accepted(first.message_id, duplicate=True)
        # New ids are larger than every id before, even for an older received_at.
        later = await reopened.accept(new_message(received_at=time.time() - 3600))
        assert parse_message_id(later.message_id) > parse_message_id(first.message_id)  # type: ignore[operator]
    finally:
        await reopened.close()
    assert db_rows(db_path, "SELECT count(*) FROM attempts") == [(1,)]


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


async def test_closed_store_refuses_writes(db_path: Path) -> None:
    store = SQLiteStore(str(db_path))
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.accept(new_message())
    with pytest.raises(StoreError):
        await store.record_attempt(record(1))
    with pytest.raises(StoreError):
        await store.check_writable()
    with pytest.raises(StoreError):
        await store.due_deliveries("orders", time.time(), 1)


async def test_unopened_store_refuses_writes(db_path: Path) -> None:
    store = SQLiteStore(str(db_path))
    with pytest.raises(StoreError):
        await store.accept(new_message())


async def test_close_drains_queued_writes(db_path: Path) -> None:
    store = SQLiteStore(str(db_path))
    await store.open()
    tasks = [asyncio.create_task(store.accept(new_message())) for _ in range(20)]
    await asyncio.sleep(0)  # every accept() has queued its message
    await store.close()
    results = await asyncio.gather(*tasks)
    assert len({r.message_id for r in results}) == 20
    assert db_rows(db_path, "SELECT count(*) FROM messages") == [(20,)]


async def test_check_writable(store: SQLiteStore) -> None:
    await store.check_writable()
    assert store.writer_task is not None
    assert not store.writer_task.done()


# -- retention and pause -----------------------------------------------------------------


async def test_prune_deletes_old_settled_messages_only(store: SQLiteStore, db_path: Path) -> None:
    now = time.time()
    old_delivered = await store.accept(new_message(received_at=now - 1000, body=b"old-done"))
    old_dead = await store.accept(new_message(received_at=now - 900, body=b"old-dead"))
    old_pending = await store.accept(new_message(received_at=now - 800, body=b"old-pending"))
    old_bare = await store.accept(new_message(received_at=now - 700, destinations=()))
    recent = await store.accept(new_message(received_at=now - 10, body=b"recent-done"))
    due = {d.body: d for d in await store.due_deliveries("orders", now, 10)}
    for body, state in ((b"old-done", "delivered"), (b"recent-done", "delivered")):
        await store.record_attempt(record(due[body].id, state=state, status=200, error=None))
    await store.record_attempt(record(due[b"old-dead"].id, state="dead"))

    assert await store.prune(now - 100, limit=1) == 1  # in small batches
    assert await store.prune(now - 100, limit=100) == 2
    assert await store.prune(now - 100, limit=100) == 0
    remaining = {format_message_id(r[0]) for r in db_rows(db_path, "SELECT id FROM messages")}
    assert remaining == {old_pending.message_id, recent.message_id}
    assert old_delivered.message_id not in remaining
    assert old_dead.message_id not in remaining
    assert old_bare.message_id not in remaining
    # Their deliveries and attempts went with them.
    assert db_rows(db_path, "SELECT count(*) FROM deliveries") == [(2,)]
    assert db_rows(db_path, "SELECT count(*) FROM attempts") == [(1,)]


async def test_pause_is_durable(db_path: Path) -> None:
    store = SQLiteStore(str(db_path))
    await store.open()
    try:
        assert await store.paused_destinations() == set()
        await store.set_paused("orders", True)
        await store.set_paused("audit", True)
        await store.set_paused("audit", False)
        assert await store.paused_destinations() == {"orders"}
    finally:
        await store.close()
    reopened = SQLiteStore(str(db_path))
    await reopened.open()
    try:
        assert await reopened.paused_destinations() == {"orders"}
    finally:
        await reopened.close()
