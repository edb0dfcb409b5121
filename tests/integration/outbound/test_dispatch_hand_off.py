"""Workers given a commit's new deliveries straight from the commit (SQLite).

A worker whose last claim found nothing more due takes the deliveries a commit
inserted from the commit's announcement: it starts them, or keeps them in ``ready``
(no more than a claim's page), without a claim. These tests hold the downstream's
answers so that what the worker holds can be looked at, and check that pausing,
stopping and reloading give those deliveries back as they do claimed ones, that a
commit during a reload reaches the new worker or stays in the store, and that each
delivery is sent once.
"""

from __future__ import annotations

import asyncio
import random
import time

import msgspec
from aiohttp import web

from hookgate.outbound.worker import DestinationWorker
from hookgate.store import DueDelivery

from ..harness import Downstream, Received, Relay, new_message, wait_for


class NoJitter(random.Random):
    """Backoff at its ceiling: a retry comes due exactly when the policy says."""

    def uniform(self, a: float, b: float) -> float:
        return b


ORDERS = '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\nconcurrency = 1\n'


def hold_answers(downstream: Downstream) -> asyncio.Event:
    """Make the downstream answer only once the returned event is set."""
    gate = asyncio.Event()

    async def held(received: Received, number: int) -> web.StreamResponse:
        await gate.wait()
        return web.Response(status=200)

    downstream.handler = held
    return gate


class Spy:
    """Counts the worker's claims and the deliveries it was handed by commits."""

    def __init__(self, relay: Relay) -> None:
        store = relay.store
        assert store is not None
        self.claims = 0
        self.handed: list[int] = []
        claim_due, claim_committed = store.claim_due, store.claim_committed
        claim_due_at_once = store.claim_due_at_once

        async def counted(destination: str, now: float, limit: int) -> list[DueDelivery]:
            self.claims += 1
            return await claim_due(destination, now, limit)

        def counted_at_once(
            destination: str, now: float, limit: int
        ) -> tuple[list[DueDelivery], float | None] | None:
            self.claims += 1
            return claim_due_at_once(destination, now, limit)

        def handed(destination: str, limit: int) -> tuple[list[DueDelivery], bool] | None:
            taken = claim_committed(destination, limit)
            self.handed.extend(d.id for d in (taken[0] if taken else ()))
            return taken

        store.claim_due = counted  # type: ignore[method-assign]
        store.claim_due_at_once = counted_at_once  # type: ignore[method-assign]
        store.claim_committed = handed  # type: ignore[method-assign]


async def start_holding(relay: Relay, downstream: Downstream) -> tuple[DestinationWorker, Spy]:
    """A relay of one destination (concurrency 1) whose first delivery is in flight,
    held by the downstream, and whose worker has found nothing more due."""
    await relay.start(ORDERS)
    assert relay.dispatcher is not None
    worker = relay.dispatcher.workers["orders"]
    await relay.run_until_idle()  # its first claim found nothing
    spy = Spy(relay)
    await relay.accept()
    await wait_for(lambda: downstream.in_flight == 1)
    return worker, spy


async def accept_many(relay: Relay, count: int) -> list[str]:
    """``count`` messages accepted one after the other (a commit each)."""
    return [await relay.accept() for _ in range(count)]


def sent_once(downstream: Downstream, ids: list[str]) -> bool:
    sent = [r.headers["webhook-id"] for r in downstream.received]
    return sorted(sent) == sorted(ids)


async def test_a_commits_deliveries_wait_in_ready_without_a_claim(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    gate = hold_answers(downstream)
    worker, spy = await start_holding(sqlite_relay, downstream)
    first = sqlite_relay.states()
    ids = [*first, *await accept_many(sqlite_relay, 5)]
    assert len(worker.ready) == 5
    assert spy.claims == 0
    assert len(spy.handed) == 6
    store = sqlite_relay.store
    assert store is not None
    assert await store.claim_due("orders", time.time() + 1, 100) == []  # all leased
    gate.set()
    await sqlite_relay.run_until_idle()
    assert spy.claims == 1  # this test's own
    assert sent_once(downstream, ids)


async def test_more_than_a_page_stays_in_the_store_for_a_claim(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    """``ready`` holds no more than a claim's page: the rest stays pending, unleased,
    and the worker claims it once there is room."""
    gate = hold_answers(downstream)
    worker, spy = await start_holding(sqlite_relay, downstream)
    store = sqlite_relay.store
    assert store is not None
    ids = list(sqlite_relay.states())
    for _ in range(3):
        accepted = await asyncio.gather(*(store.accept(new_message()) for _ in range(40)))
        ids.extend(a.message_id for a in accepted)
        assert len(worker.ready) <= 64
    assert len(worker.ready) == 64  # a full page; 120 - 64 wait in the store
    gate.set()
    await sqlite_relay.run_until_idle()
    assert spy.claims >= 1
    assert sent_once(downstream, ids)


async def test_pause_gives_back_what_a_commit_handed_over(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    gate = hold_answers(downstream)
    worker, _ = await start_holding(sqlite_relay, downstream)
    ids = [*sqlite_relay.states(), *await accept_many(sqlite_relay, 5)]
    assert len(worker.ready) == 5
    dispatcher, store = sqlite_relay.dispatcher, sqlite_relay.store
    assert dispatcher is not None and store is not None
    await dispatcher.set_paused("orders", True)
    await wait_for(lambda: not worker.ready)
    # Released: due and unleased again (this claim leases them; given back at once).
    released = await store.claim_due("orders", time.time() + 1, 100)
    assert len(released) == 5
    await store.release([d.id for d in released])
    # Paused, a commit hands nothing over: its delivery stays in the store.
    ids.append(await sqlite_relay.accept())
    assert not worker.ready
    gate.set()
    await dispatcher.set_paused("orders", False)
    await sqlite_relay.run_until_idle()
    assert sent_once(downstream, ids)


async def test_a_stop_gives_back_what_a_commit_handed_over(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    gate = hold_answers(downstream)
    worker, _ = await start_holding(sqlite_relay, downstream)
    await accept_many(sqlite_relay, 5)
    assert len(worker.ready) == 5
    dispatcher, store = sqlite_relay.dispatcher, sqlite_relay.store
    assert dispatcher is not None and store is not None
    stopping = asyncio.ensure_future(dispatcher.stop(grace=5.0))
    await wait_for(lambda: not worker.ready)
    gate.set()
    await stopping
    sqlite_relay.dispatcher = None  # stopped here; the relay closes the store
    released = await store.claim_due("orders", time.time() + 1, 100)
    assert len(released) == 5  # pending, and leased to no one
    assert len(downstream.received) == 1


async def test_a_reload_gives_back_the_handed_over_and_a_commit_meanwhile_waits_in_the_store(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    """The retired worker's ``ready`` is released; a commit while it drains reaches no
    worker (none is listed) and stays pending; the new worker claims all of it."""
    gate = hold_answers(downstream)
    worker, spy = await start_holding(sqlite_relay, downstream)
    ids = [*sqlite_relay.states(), *await accept_many(sqlite_relay, 5)]
    dispatcher = sqlite_relay.dispatcher
    assert dispatcher is not None
    changed = msgspec.structs.replace(worker.destination, headers={"X-New": "1"})
    handed = len(spy.handed)
    applying = asyncio.ensure_future(dispatcher.apply([changed], grace=5.0))
    await wait_for(lambda: "orders" not in dispatcher.workers and not worker.ready)
    ids.extend(await accept_many(sqlite_relay, 3))  # while the old worker drains
    assert len(spy.handed) == handed  # handed to no one
    gate.set()
    await applying
    assert dispatcher.workers["orders"] is not worker
    await sqlite_relay.run_until_idle()
    assert sent_once(downstream, ids)
    new = [r for r in downstream.received if r.headers.get("X-New") == "1"]
    assert len(new) == len(ids) - 1  # all but the one in flight went by the new worker


async def test_a_commit_for_a_worker_whose_circuit_is_open_stays_in_the_store(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    async def failing(received: Received, number: int) -> web.StreamResponse:
        return web.Response(status=503)

    downstream.handler = failing
    await sqlite_relay.start(
        ORDERS + 'circuit_failures = 1\ncircuit_cooldown = "60s"\ninitial_backoff = "60s"\n'
    )
    assert sqlite_relay.dispatcher is not None and sqlite_relay.store is not None
    worker = sqlite_relay.dispatcher.workers["orders"]
    await sqlite_relay.accept()
    await wait_for(lambda: worker.circuit.state == "open")
    await sqlite_relay.run_until_idle()
    spy = Spy(sqlite_relay)
    ids = await accept_many(sqlite_relay, 3)
    assert spy.handed == []
    assert not worker.ready
    due = await sqlite_relay.store.claim_due("orders", time.time() + 1, 100)
    # Pending and unleased. The first message's retry may be due within that second
    # too: its backoff has full jitter (anywhere from 0 to 60 s).
    assert sorted(d.message_id for d in due if d.message_id in ids) == sorted(ids)
    await sqlite_relay.store.release([d.id for d in due])
    assert len(downstream.received) == 1


async def test_a_claim_that_fills_every_slot_and_finds_nothing_more_still_counts_as_drained(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    """The retry, claimed when due, takes the only slot; its page was not full, so the
    next commit's delivery is handed over (into ``ready``) rather than claimed."""
    gate = asyncio.Event()

    async def fail_then_hold(received: Received, number: int) -> web.StreamResponse:
        if number == 1:
            return web.Response(status=503)
        await gate.wait()
        return web.Response(status=200)

    downstream.handler = fail_then_hold
    await sqlite_relay.start(ORDERS + 'initial_backoff = "300ms"\n')
    assert sqlite_relay.dispatcher is not None
    worker = sqlite_relay.dispatcher.workers["orders"]
    worker.rng = NoJitter()  # the retry comes due after its commit: the worker's own claim
    first = await sqlite_relay.accept()
    await wait_for(lambda: len(downstream.received) == 2)  # the retry, in the only slot
    spy = Spy(sqlite_relay)
    second = await sqlite_relay.accept()
    assert len(spy.handed) == 1
    assert len(worker.ready) == 1
    gate.set()
    await sqlite_relay.run_until_idle()
    assert spy.claims == 0
    assert sent_once(downstream, [first, first, second])


async def test_a_claim_between_a_commit_and_its_announcement_is_not_handed_over_again(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    """The commit's rows are readable once the SQLite thread commits, before the loop
    runs the announcement: a claim in that gap (here: a retry's or a release's
    ``work_arrived`` queued ahead of the announcement) leases them, and the
    announcement must not hand the same deliveries over a second time."""
    await sqlite_relay.start(ORDERS)
    assert sqlite_relay.dispatcher is not None and sqlite_relay.store is not None
    worker = sqlite_relay.dispatcher.workers["orders"]
    first = await sqlite_relay.accept()
    await sqlite_relay.run_until_idle()
    writer = sqlite_relay.store._writer
    announce = writer._committed

    def claim_first(*args: object) -> None:
        worker.work_arrived()  # claims at once: the committed row is due and unleased
        announce(*args)  # type: ignore[arg-type]

    writer._committed = claim_first  # type: ignore[method-assign]
    try:
        second = await sqlite_relay.accept()
    finally:
        writer._committed = announce  # type: ignore[method-assign]
    await sqlite_relay.run_until_idle()
    assert sent_once(downstream, [first, second])
