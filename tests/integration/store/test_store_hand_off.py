"""A commit's new deliveries handed to the workers straight from the commit (SQLite).

``SQLiteStore.claim_committed`` leases, during a commit's announcement, the deliveries
that commit inserted, without reading them: they must be what a claim would read for
the same rows, field by field, and no delivery may be leased twice, by a hand-off and
a claim that raced it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

import hookgate.store.sqlite
from hookgate.store import DueDelivery, SkippedDestination, format_message_id
from hookgate.store.sqlite import SQLiteStore

from ..harness import db_rows, new_message

T = TypeVar("T")

DESTINATIONS = ("orders", "audit", "ledger")


class HandOffs:
    """An ``on_commit`` listener that takes every destination's new deliveries (up to
    ``limit``) from each commit, as a worker would."""

    def __init__(self, store: SQLiteStore, limit: int = 1000) -> None:
        self.store = store
        self.limit = limit
        self.taken: dict[int, DueDelivery] = {}
        self.answers: list[tuple[str, tuple[list[DueDelivery], bool] | None]] = []

    def __call__(self, destinations: frozenset[str]) -> None:
        for destination in sorted(destinations):
            handed = self.store.claim_committed(destination, self.limit)
            self.answers.append((destination, handed))
            for delivery in handed[0] if handed else ():
                assert delivery.id not in self.taken
                self.taken[delivery.id] = delivery


def varied_messages() -> list[Any]:
    """Messages that differ in every field a delivery carries."""
    now = time.time()
    return [
        new_message(event_id="evt_1", destinations=("orders", "audit")),
        new_message(
            event_id=None,
            event_type=None,
            body=b"\x00\xff\xfe not utf-8 \x80",
            content_type="application/octet-stream",
            headers={"x-name": "Zoë ✓", "x-empty": ""},
            destinations=("audit",),
            skipped=(SkippedDestination("orders", "filter"),),
        ),
        new_message(source="github", event_id="evt_1", body=b"", destinations=("ledger",)),
        new_message(event_id="evt_1", destinations=("orders",)),  # a duplicate: no delivery
        new_message(
            event_id="evt_2",
            body=b'{"big":"' + b"x" * 70_000 + b'"}',
            received_at=now - 3.25,
            destinations=DESTINATIONS,
            skipped=(),
        ),
        new_message(event_type="a.b", received_at=now - 0.000123456789, destinations=("orders",)),
        new_message(destinations=()),  # routed nowhere: stored, nothing to deliver
    ]


async def test_handed_deliveries_are_what_a_claim_reads(store: SQLiteStore) -> None:
    handoffs = HandOffs(store)
    store.on_commit(handoffs)
    messages = varied_messages()
    accepted = await asyncio.gather(*(store.accept(m) for m in messages))  # one commit or a few

    # Each new message's deliveries are exactly the destinations the insert made rows for.
    rows = db_rows(Path(store.path), "SELECT id, message_id, destination FROM deliveries")
    assert sorted(handoffs.taken) == sorted(r[0] for r in rows)
    assert {(d.id, d.message_id, d.destination) for d in handoffs.taken.values()} == {
        (r[0], format_message_id(r[1]), r[2]) for r in rows
    }
    new = [(m, a) for m, a in zip(messages, accepted, strict=True) if not a.duplicate]
    assert len(new) == len(messages) - 1  # the duplicate made no delivery of its own
    for message, answer in new:
        made = [d.destination for d in handoffs.taken.values() if d.message_id == answer.message_id]
        assert sorted(made) == sorted(message.destinations)

    # Released, the same rows are claimed from the database: field by field the same.
    await store.release(list(handoffs.taken))
    claimed: dict[int, DueDelivery] = {}
    for destination in DESTINATIONS:
        for delivery in await store.claim_due(destination, time.time() + 1, 100):
            claimed[delivery.id] = delivery
    assert sorted(claimed) == sorted(handoffs.taken)
    for delivery_id, from_db in claimed.items():
        handed = msgspec.structs.asdict(handoffs.taken[delivery_id])
        read = msgspec.structs.asdict(from_db)
        for name, value in read.items():
            assert handed[name] == value, (name, handed[name], value)
            assert type(handed[name]) is type(value), name


async def test_nothing_is_handed_outside_a_commits_announcement(store: SQLiteStore) -> None:
    handoffs = HandOffs(store, limit=2)
    store.on_commit(handoffs)
    await asyncio.gather(*(store.accept(new_message()) for _ in range(5)))
    assert store.claim_committed("orders", 100) is None
    # A listener that takes 2 of a commit's deliveries hears whether that was all.
    for _, answer in handoffs.answers:
        assert answer is not None
        assert len(answer[0]) <= 2
    # What was not taken stays pending and unleased: the next claim finds exactly it.
    rest = await store.claim_due("orders", time.time() + 1, 100)
    assert len(rest) + len(handoffs.taken) == 5
    assert not {d.id for d in rest} & set(handoffs.taken)
    complete = all(answer is not None and answer[1] for _, answer in handoffs.answers)
    assert complete == (not rest)


async def test_a_claim_on_the_claims_thread_and_a_commit_never_lease_a_delivery_twice(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's leased set is sent before the commit; its read runs after it, and sees
    the commit's rows. The commit's announcement comes while that claim is out: what
    the claim returns is not handed over too (and the reverse)."""
    read_in_one_trip = hookgate.store.sqlite.read_in_one_trip
    claim_sent = asyncio.Event()
    commit_announced = asyncio.Event()

    async def read_after_the_commit(conn: Any, work: Callable[[Any], T], health: Any) -> T:
        claim_sent.set()
        await commit_announced.wait()
        return await read_in_one_trip(conn, work, health)

    monkeypatch.setattr(hookgate.store.sqlite, "read_in_one_trip", read_after_the_commit)
    handoffs = HandOffs(store)
    store.on_commit(handoffs)
    store.on_commit(lambda _: commit_announced.set())

    # More than the loop's page: this claim reads on the claims thread.
    claim = asyncio.ensure_future(store.claim_due("orders", time.time() + 60, 65))
    await claim_sent.wait()
    await asyncio.gather(*(store.accept(new_message()) for _ in range(3)))
    claimed = await claim
    handed = list(handoffs.taken)
    assert sorted([d.id for d in claimed] + handed) == sorted(
        r[0] for r in db_rows(Path(store.path), "SELECT id FROM deliveries")
    )
    assert not set(handed) & {d.id for d in claimed}
    assert ("orders", None) in handoffs.answers  # refused while the claim was out

    # Once the claim is back, the next commit's deliveries are handed over again.
    monkeypatch.setattr(hookgate.store.sqlite, "read_in_one_trip", read_in_one_trip)
    await store.accept(new_message())
    assert len(handoffs.taken) == len(handed) + 1
    assert await store.claim_due("orders", time.time() + 60, 65) == []
