"""The store's behaviour, the same on every backend: each test runs on SQLite and PostgreSQL.

``backend`` (tests/integration/conftest.py) is each backend in turn, ``any_store`` a
store of it, open; ``backend.rows`` reads the database as another process sees it.
What only one backend has (SQLite's pragmas and lock file, PostgreSQL's processes
sharing one database) is tested beside it: test_store.py, test_postgres.py.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from hookgate.errors import ConflictError, StoreError
from hookgate.store import (
    Accepted,
    MessageFilter,
    SkippedDestination,
    Store,
    format_message_id,
    parse_message_id,
)

from ..harness import Backend, CommitSizes, new_message, record


def message_exists(backend: Backend, message_id: str) -> bool:
    number = parse_message_id(message_id)
    return bool(backend.rows("SELECT 1 FROM messages WHERE id = ?", (number,)))


async def test_accept_commits_message_and_one_delivery_per_destination(
    any_store: Store, backend: Backend
) -> None:
    received = time.time()
    message = new_message(
        event_id="evt_1", destinations=("orders", "audit", "crm"), received_at=received
    )
    accepted = await any_store.accept(message)
    assert accepted.duplicate is False
    number = parse_message_id(accepted.message_id)
    assert number is not None
    assert format_message_id(number) == accepted.message_id
    assert message_exists(backend, accepted.message_id)

    # Visible to another connection as soon as accept() returned: committed.
    assert backend.rows(
        "SELECT source, received_at, event_type, event_id, headers, body FROM messages"
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
    deliveries = backend.rows(
        "SELECT message_id, destination, state, attempts, next_attempt_at FROM deliveries"
        " ORDER BY destination",
    )
    assert deliveries == [
        (number, "audit", "pending", 0, received),
        (number, "crm", "pending", 0, received),
        (number, "orders", "pending", 0, received),
    ]


async def test_message_without_destinations_is_stored(any_store: Store, backend: Backend) -> None:
    accepted = await any_store.accept(new_message(destinations=()))
    assert message_exists(backend, accepted.message_id)
    assert backend.rows("SELECT count(*) FROM messages") == [(1,)]
    assert backend.rows("SELECT count(*) FROM deliveries") == [(0,)]


async def test_skipped_destinations_are_stored_only_when_there_are_some(
    any_store: Store, backend: Backend
) -> None:
    skips = (SkippedDestination("orders", "filter"), SkippedDestination("crm", "event_type"))
    plain = await any_store.accept(new_message(destinations=("orders",)))
    skipping = await any_store.accept(new_message(destinations=(), skipped=skips))
    found = await any_store.get_message(skipping.message_id)
    assert found is not None
    assert found[1].skipped == skips
    found = await any_store.get_message(plain.message_id)
    assert found is not None
    assert found[1].skipped == ()
    stored = backend.rows(
        "SELECT skipped FROM messages WHERE id = ?", (parse_message_id(plain.message_id),)
    )
    assert stored == [(None,)]  # the common case writes nothing more


async def test_concurrent_accepts_are_group_committed(any_store: Store, backend: Backend) -> None:
    commits: list[frozenset[str]] = []
    sizes = CommitSizes()
    any_store.on_commit(commits.append)
    results = await asyncio.gather(
        *(any_store.accept(new_message(event_id=f"evt_{i}", body=b"%d" % i)) for i in range(200))
    )
    assert all(not r.duplicate for r in results)
    ids = [parse_message_id(r.message_id) for r in results]
    assert len(set(ids)) == 200
    assert backend.rows("SELECT count(*) FROM messages") == [(200,)]
    assert backend.rows("SELECT count(*) FROM deliveries") == [(200,)]
    # Each commit calls the listener once: far fewer commits than calls.
    assert 1 <= len(commits) < 200
    batches, webhooks = sizes.commits_and_webhooks()
    assert batches == len(commits)
    assert webhooks == 200  # every webhook in exactly one commit
    assert batches < webhooks  # some commit carried more than one
    assert all(c == frozenset({"orders"}) for c in commits)


async def test_ids_increase_in_arrival_order(any_store: Store, backend: Backend) -> None:
    now = time.time()
    numbers = []
    # Even when received_at goes backwards, each id is larger than the last.
    for offset in (0, -100, -200, 50):
        accepted = await any_store.accept(new_message(received_at=now + offset))
        numbers.append(parse_message_id(accepted.message_id))
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)


async def test_duplicate_within_window_returns_first_id(any_store: Store, backend: Backend) -> None:
    first = await any_store.accept(new_message(event_id="evt_1"))
    commits: list[frozenset[str]] = []
    any_store.on_commit(commits.append)
    second = await any_store.accept(new_message(event_id="evt_1", body=b"{}"))
    third = await any_store.accept(new_message(event_id="evt_1"))
    assert first.duplicate is False
    assert second == Accepted(first.message_id, duplicate=True)
    assert third == Accepted(first.message_id, duplicate=True)
    assert backend.rows("SELECT count(*) FROM messages") == [(1,)]
    assert backend.rows("SELECT count(*) FROM deliveries") == [(1,)]
    assert commits == []  # nothing new to deliver, no dispatcher wake-up


async def test_duplicate_within_one_batch(any_store: Store, backend: Backend) -> None:
    sizes = CommitSizes()
    results = await asyncio.gather(
        any_store.accept(new_message(event_id="evt_same", destinations=("a", "b"))),
        any_store.accept(new_message(event_id="evt_other", destinations=("a", "b"))),
        any_store.accept(new_message(event_id="evt_same", destinations=("a", "b"))),
        any_store.accept(new_message(event_id="evt_same", destinations=("a", "b"))),
    )
    assert sizes.commits_and_webhooks() == (1, 4)  # one commit for the four
    assert [r.duplicate for r in results] == [False, False, True, True]
    assert results[2].message_id == results[0].message_id
    assert results[3].message_id == results[0].message_id
    assert results[1].message_id != results[0].message_id
    assert backend.rows("SELECT count(*) FROM messages") == [(2,)]
    assert backend.rows("SELECT count(*) FROM deliveries") == [(4,)]


async def test_same_event_id_after_window_is_new(any_store: Store, backend: Backend) -> None:
    now = time.time()
    old = await any_store.accept(
        new_message(event_id="evt_1", received_at=now - 100, dedup_window=60)
    )
    new = await any_store.accept(new_message(event_id="evt_1", received_at=now, dedup_window=60))
    assert new.duplicate is False
    assert new.message_id != old.message_id
    # Now the new message is the one that repeats are matched against.
    again = await any_store.accept(
        new_message(event_id="evt_1", received_at=now + 1, dedup_window=60)
    )
    assert again == Accepted(new.message_id, duplicate=True)
    assert backend.rows("SELECT count(*) FROM deliveries") == [(2,)]


async def test_same_event_id_after_window_within_one_batch(
    any_store: Store, backend: Backend
) -> None:
    """The old holder gives its key up to the batch's first copy, whose window starts
    after it; the later copies, the first's among them, are that copy's duplicates."""
    now = time.time()
    old = await any_store.accept(
        new_message(event_id="evt_1", received_at=now - 100, dedup_window=60)
    )
    sizes = CommitSizes()
    copies = await asyncio.gather(
        *(
            any_store.accept(new_message(event_id="evt_1", received_at=at, dedup_window=60))
            for at in (now - 50, now, now + 1)
        )
    )
    assert sizes.commits_and_webhooks() == (1, 3)
    assert [c.duplicate for c in copies] == [False, True, True]
    assert copies[0].message_id != old.message_id
    assert {c.message_id for c in copies} == {copies[0].message_id}
    assert backend.rows("SELECT count(*) FROM messages") == [(2,)]
    assert await any_store.message_count() == 2
    assert backend.rows("SELECT count(*) FROM deliveries") == [(2,)]


async def test_same_event_id_after_window_with_real_time(
    any_store: Store, backend: Backend
) -> None:
    # Both received (stamped) at once, before either commit: on a slow machine a commit
    # alone can outlast the 50 ms window, and the second must still fall inside it.
    received = [new_message(event_id="evt_t", dedup_window=0.05) for _ in range(2)]
    first = await any_store.accept(received[0])
    inside = await any_store.accept(received[1])
    await asyncio.sleep(0.1)  # the window passes (a lower bound: slower only helps)
    after = await any_store.accept(new_message(event_id="evt_t", dedup_window=0.05))
    assert inside == Accepted(first.message_id, duplicate=True)
    assert after.duplicate is False
    assert after.message_id != first.message_id


async def test_dedup_is_per_source(any_store: Store, backend: Backend) -> None:
    a = await any_store.accept(new_message(source="stripe", event_id="evt_1"))
    b = await any_store.accept(new_message(source="github", event_id="evt_1"))
    assert not a.duplicate
    assert not b.duplicate
    assert a.message_id != b.message_id
    assert backend.rows("SELECT count(*) FROM deliveries") == [(2,)]


async def test_messages_without_event_id_never_dedup(any_store: Store, backend: Backend) -> None:
    results = [await any_store.accept(new_message(event_id=None)) for _ in range(3)]
    results += await asyncio.gather(
        *(any_store.accept(new_message(event_id=None)) for _ in range(3))
    )
    assert not any(r.duplicate for r in results)
    assert len({r.message_id for r in results}) == 6
    assert backend.rows("SELECT count(*) FROM messages") == [(6,)]


async def test_due_deliveries_order_limit_and_cutoff(any_store: Store, backend: Backend) -> None:
    t0 = time.time() - 1000
    ids = {}
    for offset, name in ((3, "third"), (1, "first"), (2, "second"), (4, "fourth")):
        accepted = await any_store.accept(
            new_message(
                received_at=t0 + offset, destinations=("orders", "audit"), body=name.encode()
            )
        )
        ids[name] = accepted.message_id
    await any_store.accept(new_message(received_at=t0, destinations=("audit",)))

    due = await any_store.due_deliveries("orders", time.time(), 10)
    assert [d.body for d in due] == [b"first", b"second", b"third", b"fourth"]
    assert [d.message_id for d in due] == [ids[n] for n in ("first", "second", "third", "fourth")]
    assert all(d.destination == "orders" for d in due)
    assert [d.received_at for d in due] == [t0 + 1, t0 + 2, t0 + 3, t0 + 4]
    first = due[0]
    assert (first.attempts, first.source, first.event_type) == (0, "stripe", "charge.succeeded")
    assert orjson.loads(first.headers) == {"content-type": "application/json"}

    assert [d.body for d in await any_store.due_deliveries("orders", time.time(), 2)] == [
        b"first",
        b"second",
    ]
    # Only what is due at `now`.
    assert [d.body for d in await any_store.due_deliveries("orders", t0 + 2.5, 10)] == [
        b"first",
        b"second",
    ]
    assert len(await any_store.due_deliveries("audit", time.time(), 10)) == 5
    assert await any_store.due_deliveries("nobody", time.time(), 10) == []


async def test_next_due_at(any_store: Store, backend: Backend) -> None:
    t0 = time.time() + 1000  # in the future: not due yet
    for offset in (30, 10, 20):
        await any_store.accept(new_message(received_at=t0 + offset))
    assert await any_store.due_deliveries("orders", time.time(), 10) == []
    assert await any_store.next_due_at("orders", time.time()) == t0 + 10
    assert await any_store.next_due_at("orders", t0 + 10) == t0 + 20  # strictly after
    assert await any_store.next_due_at("orders", t0 + 30) is None
    assert await any_store.next_due_at("other", 0) is None


async def test_next_due_at_right_after_a_claim(any_store: Store) -> None:
    """What a worker asks after a page that was not full (SQLite reads it with the claim)."""
    now = time.time()
    await any_store.accept(new_message(received_at=now - 1))
    await any_store.accept(new_message(received_at=now + 1000))
    assert len(await any_store.claim_due("orders", now, 10)) == 1
    assert await any_store.next_due_at("orders", now) == now + 1000
    # Asked again, or after something was committed: read afresh.
    await any_store.accept(new_message(received_at=now + 500))
    assert await any_store.next_due_at("orders", now) == now + 500
    assert await any_store.next_due_at("orders", now + 600) == now + 1000
    assert await any_store.claim_due("orders", now, 10) == []
    assert await any_store.next_due_at("orders", now) == now + 500


async def test_record_attempt_updates_delivery_and_inserts_attempt(
    any_store: Store, backend: Backend
) -> None:
    await any_store.accept(new_message())
    (delivery,) = await any_store.due_deliveries("orders", time.time(), 10)
    started = time.time()
    retry_at = started + 3600

    await any_store.record_attempt(
        record(
            delivery.id, status=503, error="HTTP 503", next_attempt_at=retry_at, started_at=started
        )
    )
    assert await any_store.due_deliveries("orders", time.time(), 10) == []
    assert await any_store.next_due_at("orders", time.time()) == retry_at
    (due_later,) = await any_store.due_deliveries("orders", retry_at, 10)
    assert due_later.id == delivery.id
    assert due_later.attempts == 1
    assert backend.rows(
        "SELECT state, attempts, next_attempt_at, last_status, last_error FROM deliveries",
    ) == [("pending", 1, retry_at, 503, "HTTP 503")]
    assert backend.rows(
        "SELECT delivery_id, started_at, duration_ms, status, error, response_snippet"
        " FROM attempts",
    ) == [(delivery.id, started, 12.5, 503, "HTTP 503", b"oops")]

    await any_store.record_attempt(
        record(
            delivery.id, state="delivered", attempts=2, status=200, error=None, started_at=started
        )
    )
    assert await any_store.due_deliveries("orders", retry_at + 10, 10) == []
    assert backend.rows("SELECT state, attempts, last_status, last_error FROM deliveries") == [
        ("delivered", 2, 200, None)
    ]
    assert backend.rows("SELECT status FROM attempts ORDER BY id") == [(503,), (200,)]
    updated_at = backend.rows("SELECT updated_at FROM deliveries")[0][0]
    assert isinstance(updated_at, float)
    assert updated_at >= started


async def test_record_attempt_for_unknown_delivery_fails_and_store_survives(
    any_store: Store, backend: Backend
) -> None:
    with pytest.raises(StoreError):
        await any_store.record_attempt(record(987654))
    # The writer is still alive and takes new work.
    accepted = await any_store.accept(new_message())
    assert message_exists(backend, accepted.message_id)
    await any_store.check_writable()


async def test_queue_stats(any_store: Store, backend: Backend) -> None:
    empty = await any_store.queue_stats()
    assert (empty.pending, empty.oldest_pending_at, empty.dead, empty.destinations) == (
        0,
        None,
        0,
        {},
    )
    t0 = time.time() - 500
    await any_store.accept(new_message(received_at=t0 + 5, destinations=("orders", "audit")))
    await any_store.accept(new_message(received_at=t0 + 7, destinations=("audit",)))
    await any_store.accept(new_message(received_at=t0 + 9, destinations=("orders",)))
    due = await any_store.due_deliveries("orders", time.time(), 10)
    await any_store.record_attempt(record(due[0].id, state="dead", attempts=12))
    await any_store.record_attempt(record(due[1].id, state="delivered", status=200, error=None))

    stats = await any_store.queue_stats()
    assert stats.pending == 2
    assert stats.dead == 1
    # The age of the head of the line: the message of the delivery pending longest.
    assert stats.oldest_pending_at == t0 + 5
    assert set(stats.destinations) == {"audit"}
    assert stats.destinations["audit"].pending == 2
    assert stats.destinations["audit"].oldest_pending_at == t0 + 5


async def test_reopen_keeps_everything(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    first = await store.accept(new_message(event_id="evt_keep", destinations=("orders", "audit")))
    (delivery,) = await store.due_deliveries("orders", time.time(), 10)
    await store.record_attempt(record(delivery.id, next_attempt_at=time.time() - 1))
    await store.close()

    reopened = backend.make()
    await reopened.open()
    try:
        assert message_exists(backend, first.message_id)
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
    assert backend.rows("SELECT count(*) FROM attempts") == [(1,)]


async def test_closed_store_refuses_writes(backend: Backend) -> None:
    store = backend.make()
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


async def test_unopened_store_refuses_writes(backend: Backend) -> None:
    store = backend.make()
    with pytest.raises(StoreError):
        await store.accept(new_message())


async def test_close_drains_queued_writes(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    tasks = [asyncio.ensure_future(store.accept(new_message())) for _ in range(20)]
    await asyncio.sleep(0)  # every accept() has queued its message (it queues at once)
    await store.close()
    results = await asyncio.gather(*tasks)
    assert len({r.message_id for r in results}) == 20
    assert backend.rows("SELECT count(*) FROM messages") == [(20,)]


async def test_check_writable(any_store: Store, backend: Backend) -> None:
    await any_store.check_writable()
    assert any_store.writer_task is not None
    assert not any_store.writer_task.done()


async def test_prune_deletes_old_settled_messages_only(any_store: Store, backend: Backend) -> None:
    now = time.time()
    old_delivered = await any_store.accept(new_message(received_at=now - 1000, body=b"old-done"))
    old_dead = await any_store.accept(new_message(received_at=now - 900, body=b"old-dead"))
    old_pending = await any_store.accept(new_message(received_at=now - 800, body=b"old-pending"))
    old_bare = await any_store.accept(new_message(received_at=now - 700, destinations=()))
    recent = await any_store.accept(new_message(received_at=now - 10, body=b"recent-done"))
    due = {d.body: d for d in await any_store.due_deliveries("orders", now, 10)}
    for body, state in ((b"old-done", "delivered"), (b"recent-done", "delivered")):
        await any_store.record_attempt(record(due[body].id, state=state, status=200, error=None))
    await any_store.record_attempt(record(due[b"old-dead"].id, state="dead"))

    assert await any_store.prune(now - 100, limit=1) == 1  # in small batches
    assert await any_store.prune(now - 100, limit=100) == 2
    assert await any_store.prune(now - 100, limit=100) == 0
    remaining = {format_message_id(r[0]) for r in backend.rows("SELECT id FROM messages")}
    assert remaining == {old_pending.message_id, recent.message_id}
    assert old_delivered.message_id not in remaining
    assert old_dead.message_id not in remaining
    assert old_bare.message_id not in remaining
    # Their deliveries and attempts went with them.
    assert backend.rows("SELECT count(*) FROM deliveries") == [(2,)]
    assert backend.rows("SELECT count(*) FROM attempts") == [(1,)]


async def test_pause_is_durable(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    try:
        assert await store.paused_destinations() == set()
        await store.set_paused("orders", True)
        await store.set_paused("audit", True)
        await store.set_paused("audit", False)
        assert await store.paused_destinations() == {"orders"}
    finally:
        await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.paused_destinations() == {"orders"}
    finally:
        await reopened.close()


# -- admin: inspect, retry, replay, counts -------------------------------------------------


async def test_admin_listings_and_lookups(any_store: Store) -> None:
    now = time.time()
    first = await any_store.accept(
        new_message(source="stripe", event_type="a", received_at=now - 30, destinations=("x", "y"))
    )
    second = await any_store.accept(
        new_message(
            source="github", event_type="b", event_id="evt_two", received_at=now - 20, body=b"two"
        )
    )
    third = await any_store.accept(new_message(source="stripe", event_type="b", received_at=now))
    (x_delivery,) = await any_store.due_deliveries("x", now, 10)
    await any_store.record_attempt(record(x_delivery.id, state="dead", attempts=3))

    listed = await any_store.list_messages(MessageFilter(), 10)
    assert [m.id for m in listed] == [third.message_id, second.message_id, first.message_id]
    assert (listed[2].pending, listed[2].delivered, listed[2].dead) == (1, 0, 1)
    assert listed[1].size == 3
    only = await any_store.list_messages(MessageFilter(source="stripe", event_type="b"), 10)
    assert [m.id for m in only] == [third.message_id]
    dead = await any_store.list_messages(MessageFilter(state="dead"), 10)
    assert [m.id for m in dead] == [first.message_id]
    recent = await any_store.list_messages(MessageFilter(since=now - 25, until=now - 1), 10)
    assert [m.id for m in recent] == [second.message_id]
    page = await any_store.list_messages(MessageFilter(before_id=listed[0].number), 1)
    assert [m.id for m in page] == [second.message_id]
    by_event = await any_store.list_messages(MessageFilter(event_id="evt_two"), 10)
    assert [m.id for m in by_event] == [second.message_id]
    to_x_dead = await any_store.list_messages(MessageFilter(destination="x", state="dead"), 10)
    assert [m.id for m in to_x_dead] == [first.message_id]
    assert await any_store.list_messages(MessageFilter(destination="y", state="dead"), 10) == []
    to_y = await any_store.list_messages(MessageFilter(destination="y"), 10)
    assert [m.id for m in to_y] == [first.message_id]

    found = await any_store.get_message(second.message_id)
    assert found is not None
    row, content = found
    assert (row.source, row.event_type, content.body) == ("github", "b", b"two")
    assert await any_store.get_message("msg_0000000000000001") is None
    assert await any_store.get_message("nonsense") is None

    deliveries = await any_store.list_deliveries(message_id=first.message_id)
    assert sorted((d.destination, d.state) for d in deliveries) == [
        ("x", "dead"),
        ("y", "pending"),
    ]
    assert [d.id for d in await any_store.list_deliveries(destination="x", state="dead")] == [
        x_delivery.id
    ]
    got = await any_store.get_delivery(x_delivery.id)
    assert got is not None
    assert (got.state, got.attempts, got.last_status) == ("dead", 3, 500)
    assert await any_store.get_delivery(987654) is None
    (attempt,) = await any_store.attempts(x_delivery.id)
    assert (attempt.status, attempt.error, attempt.response_snippet) == (500, "HTTP 500", b"oops")


async def test_admin_retry_replay_and_counts(any_store: Store) -> None:
    accepted = await any_store.accept(new_message(destinations=("orders", "audit")))
    now = time.time()
    due = {
        d.destination: d
        for d in [
            *await any_store.due_deliveries("orders", now, 10),
            *await any_store.due_deliveries("audit", now, 10),
        ]
    }
    await any_store.record_attempt(record(due["orders"].id, state="dead", attempts=12))
    await any_store.record_attempt(
        record(due["audit"].id, state="delivered", status=200, error=None)
    )
    assert await any_store.delivery_counts() == {"orders": {"dead": 1}, "audit": {"delivered": 1}}
    assert await any_store.totals() == (1, {"pending": 0, "delivered": 1, "dead": 1})

    retried = await any_store.retry_delivery(due["orders"].id)
    assert retried is not None
    assert (retried.state, retried.attempts) == ("pending", 0)
    with pytest.raises(ConflictError):
        await any_store.retry_delivery(due["audit"].id)
    assert await any_store.retry_delivery(987654) is None

    await any_store.record_attempt(record(due["orders"].id, state="dead", attempts=12))
    assert await any_store.retry_dead("orders", since=None) == 1
    assert await any_store.retry_dead("orders", since=None) == 0
    assert await any_store.destination_counts() == {
        "orders": {"pending": 1},
        "audit": {"delivered": 1},
    }

    replayed = await any_store.replay(accepted.message_id, ["audit", "crm"])
    assert sorted((d.destination, d.state) for d in replayed) == [
        ("audit", "pending"),
        ("crm", "pending"),
    ]
    assert await any_store.replay("msg_0000000000000001", ["audit"]) == []
    assert await any_store.message_count() == 1
    assert (await any_store.totals())[1] == {"pending": 3, "delivered": 1, "dead": 0}


async def test_claims_lease_until_an_outcome_or_a_release(any_store: Store) -> None:
    """The claim interface, alike on both backends (one process here)."""
    await any_store.accept(new_message())
    await any_store.accept(new_message())
    now = time.time()
    first, second = await any_store.claim_due("orders", now, 10)
    assert await any_store.claim_due("orders", now, 10) == []  # leased
    assert await any_store.claim_listed([first, second]) == []
    await any_store.release([second.id])
    assert await any_store.claim_listed([first, second]) == [second]
    await any_store.record_attempt(record(first.id, next_attempt_at=now - 1))
    (again,) = await any_store.claim_due("orders", time.time(), 10)
    assert (again.id, again.attempts) == (first.id, 1)


async def test_a_claim_at_once_leases_like_any_claim_or_is_not_offered(
    any_store: Store, backend: Backend
) -> None:
    """SQLite claims a small page at once, with when the next comes due; a shared store
    (PostgreSQL) never does, and its workers claim as always."""
    await any_store.accept(new_message())
    await any_store.accept(new_message())
    now = time.time()
    first, second = await any_store.claim_due("orders", now, 10)
    retry_at = now + 60
    await any_store.record_attempt(record(second.id, next_attempt_at=retry_at))
    await any_store.release([first.id])
    claimed = any_store.claim_due_at_once("orders", time.time(), 10)
    if backend.kind != "sqlite":
        assert claimed is None
        return
    assert claimed is not None
    deliveries, next_due = claimed
    assert [d.id for d in deliveries] == [first.id]
    assert next_due == pytest.approx(retry_at)  # read in the same go
    assert any_store.claim_due_at_once("orders", time.time(), 10) == ([], next_due)  # leased
    assert await any_store.claim_due("orders", time.time(), 10) == []
    # A full page says nothing of the next: there may be more due.
    await any_store.release([first.id])
    assert any_store.claim_due_at_once("orders", time.time(), 1) == (deliveries, None)
