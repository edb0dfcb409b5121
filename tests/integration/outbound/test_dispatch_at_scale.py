"""Delivery at scale against a real SQLite outbox and real HTTP servers on 127.0.0.1.

Batches (one request, the envelope, full versus waiting), strict ordering through
failures, the claim queries' indexes, and retention. Nothing is mocked: the
dispatcher is wired to the store as the daemon wires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from hookgate.store import parse_message_id, retention
from hookgate.store.sqlite import QUERIES, SQLiteStore

from ..harness import DAY, Downstream, Received, Relay, db_rows, new_message, record, wait_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST_RETRIES = 'initial_backoff = "20ms"\nmax_backoff = "50ms"\n'
ORDERS = """
[storage]
sync = "normal"

[destinations.orders]
url = "{url}"
sources = ["stripe"]
"""


async def start_orders(relay: Relay, keys: str, *, paused: bool = False) -> None:
    """Start the relay with one destination, "orders", and these keys of it.

    ``paused``: durably, as the admin API does it, so that its worker starts paused
    and the deliveries accepted meanwhile are all waiting when it resumes.
    """
    await relay.start(ORDERS + keys, paused={"orders"} if paused else ())


def event(n: int) -> bytes:
    return b'{"type":"charge.succeeded","n":%d}' % n


def numbers(received: list[Received]) -> list[int]:
    """The ``n`` of each event, in the order the downstream got them."""
    found = []
    for request in received:
        for item in request.events:
            payload = item["payload"]
            found.append((json.loads(payload) if isinstance(payload, bytes) else payload)["n"])
    return found


# -- batches ------------------------------------------------------------------------


async def test_batch_is_one_signed_request_with_the_envelope(
    relay: Relay, downstream: Downstream
) -> None:
    await start_orders(
        relay,
        f'batch_max = 5\nbatch_wait = "5s"\nsign = "standard"\nsecret = "{SECRET}"\n',
        paused=True,
    )
    bodies = [event(n) for n in range(5)]
    bodies[2] = b'{ "type": "charge.succeeded",  "n": 2, "nested": {"k": [1, 2.50]} }'
    ids = [await relay.accept(body) for body in bodies]
    await relay.resume()
    await relay.run_until_idle()
    (request,) = downstream.received
    envelope = Webhook(SECRET).verify(request.body, dict(request.headers))
    assert request.headers["webhook-id"] == envelope["batch_id"]
    assert request.headers["Hookgate-Batch-Size"] == "5"
    assert request.headers["Content-Type"] == "application/json"
    assert [e["id"] for e in envelope["events"]] == ids
    assert [e["payload"] for e in envelope["events"]] == [json.loads(b) for b in bodies]
    assert bodies[2] in request.body  # the inbound JSON as is
    assert {e["source"] for e in envelope["events"]} == {"stripe"}
    assert {e["type"] for e in envelope["events"]} == {"charge.succeeded"}
    # Each member is delivered after one attempt, recorded against its own delivery.
    assert (
        db_rows(relay.db, "SELECT state, attempts, last_status FROM deliveries")
        == [("delivered", 1, 200)] * 5
    )
    assert db_rows(relay.db, "SELECT count(*) FROM attempts") == [(5,)]


async def test_full_batch_leaves_at_once_and_partial_one_after_batch_wait(
    relay: Relay, downstream: Downstream
) -> None:
    batch_wait = 1.0
    await start_orders(relay, f'batch_max = 4\nbatch_wait = "{int(batch_wait * 1000)}ms"\n')
    started = time.monotonic()
    await asyncio.gather(*(relay.accept(event(n)) for n in range(4)))
    await wait_for(lambda: downstream.received)
    full_after = downstream.received[0].at - started
    assert len(downstream.received[0].events) == 4
    assert full_after < batch_wait / 2, full_after  # full: no waiting for batch_wait

    started = time.monotonic()
    await asyncio.gather(*(relay.accept(event(n)) for n in range(4, 6)))
    await wait_for(lambda: len(downstream.received) == 2)
    partial_after = downstream.received[1].at - started
    assert len(downstream.received[1].events) == 2
    # Not full: it waits for more, about batch_wait, then leaves as it is.
    assert batch_wait - 0.05 <= partial_after <= batch_wait + 1.0, partial_after
    await relay.wait_delivered(6)


async def test_non_json_bodies_go_alone(relay: Relay, downstream: Downstream) -> None:
    await start_orders(relay, 'batch_max = 10\nbatch_wait = "10ms"\n', paused=True)
    plain = b"amount=42&currency=eur"
    broken = b'{"type": "charge.succeeded", "n": '
    json_ids = [await relay.accept(event(0)), await relay.accept(event(1))]
    plain_id = await relay.accept(plain, "application/x-www-form-urlencoded")
    json_ids.append(await relay.accept(event(3)))
    broken_id = await relay.accept(broken)
    await relay.resume()
    await relay.run_until_idle()
    assert list(relay.states().values()) == ["delivered"] * 5
    batches = [r for r in downstream.received if "Hookgate-Batch-Size" in r.headers]
    singles = {r.headers["webhook-id"]: r for r in downstream.received if r not in batches}
    in_batches = [e["id"] for b in batches for e in b.events]
    # The JSON ones travel in batches (how they are grouped is the dispatcher's
    # choice); the others each in a request of their own, never inside an envelope.
    assert batches
    assert sorted(in_batches + [i for i in singles if i in json_ids]) == sorted(json_ids)
    assert plain_id not in in_batches
    assert broken_id not in in_batches
    assert len(downstream.received) == len(batches) + len(singles)
    assert singles[plain_id].body == plain
    assert singles[plain_id].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert singles[broken_id].body == broken


async def test_retried_batch_of_the_same_set_keeps_its_batch_id(
    relay: Relay, downstream: Downstream
) -> None:
    """A failed batch comes back whole (batch_wait is longer than the backoff): same id.

    Receivers deduplicate on ``webhook-id``; a new id for the same events would
    make them process the batch twice.
    """

    async def fail_first(received: Received, number: int) -> web.Response:
        return web.Response(status=500 if number == 1 else 200)

    downstream.handler = fail_first
    await start_orders(
        relay,
        'batch_max = 8\nbatch_wait = "600ms"\ninitial_backoff = "100ms"\nmax_backoff = "100ms"\n',
        paused=True,
    )
    ids = [await relay.accept(event(n)) for n in range(8)]
    await relay.resume()
    await relay.wait_delivered(8)
    first, second = downstream.received
    assert sorted(e["id"] for e in second.events) == sorted(ids)  # the whole set again
    assert second.headers["Hookgate-Attempt"] == "2"
    assert second.headers["webhook-id"] == first.headers["webhook-id"]


# -- strict ordering ----------------------------------------------------------------


async def test_ordered_delivery_stays_in_order_through_failures(
    relay: Relay, downstream: Downstream
) -> None:
    tries_of_3 = 0

    async def fail_3_twice(received: Received, number: int) -> web.Response:
        nonlocal tries_of_3
        await asyncio.sleep(0.005)  # give a second request the chance to overlap
        if json.loads(received.body)["n"] == 3:
            tries_of_3 += 1
            if tries_of_3 <= 2:
                return web.Response(status=500)
        return web.Response(status=200)

    downstream.handler = fail_3_twice
    await start_orders(relay, "ordered = true\nconcurrency = 8\n" + FAST_RETRIES)
    for n in range(1, 11):
        await relay.accept(event(n))
    await relay.wait_delivered(10)
    assert numbers(downstream.received) == [1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9, 10]
    assert downstream.max_in_flight == 1  # one at a time, whatever the concurrency


async def test_ordered_batches_keep_order_around_a_non_json_body(
    relay: Relay, downstream: Downstream
) -> None:
    """A non-JSON body goes alone, but in its place in the line, not ahead of it."""
    await start_orders(relay, 'ordered = true\nbatch_max = 10\nbatch_wait = "10ms"\n', paused=True)
    ids = [
        await relay.accept(event(1)),
        await relay.accept(event(2)),
        await relay.accept(b"n=3", "application/x-www-form-urlencoded"),
        await relay.accept(event(4)),
        await relay.accept(event(5)),
    ]
    await relay.resume()
    await relay.run_until_idle()
    assert relay.states() == dict.fromkeys(ids, "delivered")
    assert downstream.event_ids() == ids


async def test_ordered_batch_retried_after_failures_stays_in_order(
    relay: Relay, downstream: Downstream
) -> None:
    async def fail_twice(received: Received, number: int) -> web.Response:
        return web.Response(status=500 if number <= 2 else 200)

    downstream.handler = fail_twice
    await start_orders(
        relay,
        'ordered = true\nbatch_max = 10\nbatch_wait = "10ms"\n'
        'initial_backoff = "200ms"\nmax_backoff = "200ms"\n',
        paused=True,
    )
    ids = [await relay.accept(event(n)) for n in range(10)]
    await relay.resume()
    await relay.wait_delivered(10)
    delivered = [e["id"] for r in downstream.received[2:] for e in r.events]
    assert delivered == ids
    for request in downstream.received:  # every request, failed or not, in order
        sent = [e["id"] for e in request.events]
        assert sent == sorted(sent, key=ids.index)
        assert sent == ids[ids.index(sent[0]) : ids.index(sent[0]) + len(sent)]


# -- the claim queries use their indexes ---------------------------------------------


def plan(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> str:
    rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return "\n".join(row[-1] for row in rows)


async def fill(db: Path, destinations: int, per_destination: int, pending_every: int) -> None:
    """Messages with deliveries to several destinations, most of them delivered."""
    store = SQLiteStore(str(db), sync="normal")
    await store.open()
    await store.close()
    now = time.time()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        for n in range(per_destination):
            conn.execute(
                "INSERT INTO messages (id, source, received_at, headers, body)"
                " VALUES (?, 'stripe', ?, x'7b7d', x'7b7d')",
                (n + 1, now),
            )
            for d in range(destinations):
                state = "pending" if n % pending_every == 0 else "delivered"
                conn.execute(
                    "INSERT INTO deliveries (message_id, destination, state, next_attempt_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?)",
                    (n + 1, f"dest{d}", state, now + n % 7, now),
                )


@pytest.mark.parametrize("analyzed", [False, True])
async def test_claim_queries_use_their_indexes(tmp_path: Path, analyzed: bool) -> None:
    db = tmp_path / "hookgate.db"
    await fill(db, destinations=4, per_destination=3000, pending_every=50)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        if analyzed:  # with statistics the planner could prefer another path
            conn.execute("ANALYZE")
        due = plan(conn, QUERIES["select_due"], ("dest1", time.time(), "[1, 2]", 100))
        head = plan(conn, QUERIES["select_head"], ("dest1", 100))
        next_due = plan(conn, QUERIES["select_next_due"], ("dest1", time.time()))
    assert "SEARCH d USING INDEX deliveries_due (destination=? AND next_attempt_at<?)" in due
    assert "SEARCH d USING INDEX deliveries_fifo (destination=?)" in head
    assert "INDEX deliveries_due (destination=? AND next_attempt_at>?)" in next_due
    for text in (due, head):
        assert "SEARCH m USING INTEGER PRIMARY KEY (rowid=?)" in text, text
    for text in (due, head, next_due):
        # Nothing reads a whole table or index; only the short in-flight list is scanned.
        scans = [line for line in text.splitlines() if "SCAN" in line]
        assert all("json_each VIRTUAL TABLE" in line for line in scans), text
        assert "TEMP B-TREE" not in text, text  # the index gives the order too


# -- retention ----------------------------------------------------------------------


async def accept_at(store: SQLiteStore, received_at: float, destinations: tuple[str, ...]) -> int:
    accepted = await store.accept(
        new_message(received_at=received_at, destinations=destinations, body=b"{}")
    )
    number = parse_message_id(accepted.message_id)
    assert number is not None
    return number


async def settle(
    store: SQLiteStore, db: Path, messages: list[int], destination: str, state: str
) -> None:
    """Record one final attempt for each message's delivery to ``destination``."""
    marks = ",".join("?" * len(messages))
    delivery_ids = db_rows(
        db,
        f"SELECT id FROM deliveries WHERE destination = ? AND message_id IN ({marks})",  # noqa: S608
        (destination, *messages),
    )
    assert len(delivery_ids) == len(messages)
    delivered = state == "delivered"
    await asyncio.gather(
        *(
            store.record_attempt(
                record(
                    delivery_id,
                    state=state,
                    status=200 if delivered else 410,
                    error=None if delivered else "HTTP 410",
                    next_attempt_at=time.time(),
                )
            )
            for (delivery_id,) in delivery_ids
        )
    )


async def test_prune_removes_old_delivered_and_dead_never_pending(
    store: SQLiteStore, tmp_path: Path
) -> None:
    db = tmp_path / "hookgate.db"
    old = time.time() - 10 * DAY
    kept: set[int] = set()
    pending: set[int] = set()
    # Ids follow arrival (the store keeps them increasing), so arrive in time order.
    for i in range(7):
        delivered = await accept_at(store, old + i, ("orders",))
        await settle(store, db, [delivered], "orders", "delivered")
        dead = await accept_at(store, old + i + 0.1, ("orders",))
        await settle(store, db, [dead], "orders", "dead")
        await accept_at(store, old + i + 0.2, ())  # matched no destination
        pending.add(await accept_at(store, old + i + 0.3, ("orders",)))
        half_done = await accept_at(store, old + i + 0.4, ("orders", "audit"))
        await settle(store, db, [half_done], "orders", "delivered")  # audit still pending
        kept.add(half_done)
    for _ in range(7):
        recent = await accept_at(store, time.time(), ("orders",))
        await settle(store, db, [recent], "orders", "delivered")
        kept.add(recent)
    kept |= pending

    cutoff = time.time() - 7 * DAY
    batches = []
    while deleted := await store.prune(cutoff, 2):
        batches.append(deleted)
    assert batches == [2] * 10 + [1]  # small batches, each its own transaction
    assert {m for (m,) in db_rows(db, "SELECT id FROM messages")} == kept
    # Deliveries and attempts went with their messages; nothing dangles.
    assert db_rows(
        db, "SELECT count(*) FROM deliveries WHERE message_id NOT IN (SELECT id FROM messages)"
    ) == [(0,)]
    assert db_rows(
        db, "SELECT count(*) FROM attempts WHERE delivery_id NOT IN (SELECT id FROM deliveries)"
    ) == [(0,)]
    # The pending deliveries are still there and claimable.
    due = await store.due_deliveries("orders", time.time(), 100)
    assert {parse_message_id(d.message_id) for d in due} == pending
    assert len(await store.due_deliveries("audit", time.time(), 100)) == 7


async def test_prune_once_works_through_a_backlog_in_batches(
    store: SQLiteStore, tmp_path: Path
) -> None:
    db = tmp_path / "hookgate.db"
    old = time.time() - 30 * DAY
    total = 2 * retention.BATCH + 37  # three batches
    messages = await asyncio.gather(
        *(accept_at(store, old + i * 0.001, ("orders",)) for i in range(total + 25))
    )
    pending = set(messages[::47])  # scattered through the backlog
    delivered = [m for m in messages if m not in pending][:total]
    await settle(store, db, delivered, "orders", "delivered")
    still = set(messages) - pending - set(delivered)
    ingested: list[int] = []

    async def ingest_meanwhile() -> None:  # ingest goes on while the backlog is pruned
        while True:
            ingested.append(await accept_at(store, time.time(), ()))
            await asyncio.sleep(0.01)

    ingest = asyncio.create_task(ingest_meanwhile())
    try:
        removed = await retention.prune_once(store, retention=7 * DAY)
    finally:
        ingest.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingest
    assert removed == total
    left = {m for (m,) in db_rows(db, "SELECT id FROM messages WHERE received_at < ?", (old + 60,))}
    assert left == pending | still
    assert ingested  # ingest committed while pruning ran
    assert await retention.prune_once(store, retention=7 * DAY) == 0
