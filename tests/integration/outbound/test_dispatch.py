"""The dispatcher against a real outbox and a real HTTP server on 127.0.0.1.

Every test runs on each store backend (SQLite, then PostgreSQL): ``relay`` here is
the ``any_relay`` fixture.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from hookgate import __version__, config
from hookgate.errors import StoreError
from hookgate.outbound.client import HttpClient
from hookgate.store import AttemptRecord, DueDelivery, parse_message_id
from hookgate.store.sqlite import SQLiteStore

from ..harness import Downstream, Received, Relay, wait_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def relay(any_relay: Relay) -> Relay:
    return any_relay


FAST_RETRIES = """
initial_backoff = "10ms"
max_backoff = "50ms"
"""


async def test_accepted_messages_are_delivered(relay: Relay, downstream: Downstream) -> None:
    await relay.start(
        """
        [destinations.orders]
        url = "{url}"
        sources = ["stripe"]
        forward_headers = ["Stripe-Signature", "X-Not-Sent"]
        headers = { "X-Env" = "test", "webhook-id" = "cannot-override" }
        sign = "standard"
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        """
    )
    bodies = [b'{"type":"charge.succeeded","n":%d}' % i for i in range(5)]
    ids = [await relay.accept(b, headers={"stripe-signature": "t=1,v1=abc"}) for b in bodies]
    await relay.run_until_idle()
    by_id = {r.headers["webhook-id"]: r for r in downstream.received}
    assert set(by_id) == set(ids)
    for message_id, body in zip(ids, bodies, strict=True):
        request = by_id[message_id]
        assert request.path == "/hook"
        assert request.body == body  # byte for byte
        headers = request.headers
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"] == f"hookgate/{__version__}"
        assert headers["Hookgate-Source"] == "stripe"
        assert headers["Hookgate-Event-Type"] == "charge.succeeded"
        assert headers["Hookgate-Attempt"] == "1"
        assert headers["Stripe-Signature"] == "t=1,v1=abc"
        assert headers["X-Env"] == "test"
        assert "X-Not-Sent" not in headers
        assert headers.getall("webhook-id") == [message_id]
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        Webhook(SECRET).verify(request.body, dict(headers))
    for message_id in ids:
        assert relay.delivery(message_id) == ("delivered", 1, 200, None)
        ((status, error, snippet, started_at, duration_ms),) = relay.attempts(message_id)
        assert (status, error, snippet) == (200, None, b"thanks")
        assert started_at <= time.time()
        assert duration_ms >= 0


async def test_failing_twice_then_succeeding_takes_three_attempts(
    relay: Relay, downstream: Downstream
) -> None:
    async def flaky(received: Received, number: int) -> web.StreamResponse:
        if number == 1:
            return web.Response(status=500, text="boom")
        if number == 2:
            return web.Response(status=503, text="busy")
        return web.Response(status=204)

    downstream.handler = flaky
    await relay.start(
        """
        [destinations.orders]
        url = "{url}"
        sources = ["stripe"]
        """
        + FAST_RETRIES
    )
    message_id = await relay.accept()
    assert await relay.wait_state(message_id, "delivered") == ("delivered", 3, 204, None)
    attempts = relay.attempts(message_id)
    assert [(a[0], a[1], a[2]) for a in attempts] == [
        (500, "HTTP 500", b"boom"),
        (503, "HTTP 503", b"busy"),
        (204, None, b""),
    ]
    assert [a[3] for a in attempts] == sorted(a[3] for a in attempts)
    # The same idempotency key on every retry; the attempt number counts up.
    assert [r.headers["webhook-id"] for r in downstream.received] == [message_id] * 3
    assert [r.headers["Hookgate-Attempt"] for r in downstream.received] == ["1", "2", "3"]


async def slow(received: Received, number: int) -> web.StreamResponse:
    await asyncio.sleep(0.1)
    return web.Response(status=200)


async def test_concurrency_limit_respected(relay: Relay, downstream: Downstream) -> None:
    downstream.handler = slow
    await relay.start(
        """
        [destinations.orders]
        url = "{url}"
        sources = ["stripe"]
        concurrency = 2
        """
    )
    ids = await asyncio.gather(*(relay.accept(b'{"n":%d}' % i) for i in range(8)))
    await relay.run_until_idle()
    assert relay.states() == dict.fromkeys(ids, "delivered")
    assert len(downstream.received) == 8
    assert downstream.max_in_flight == 2  # reached, never exceeded


async def test_each_destination_has_its_own_limit(relay: Relay, downstream: Downstream) -> None:
    downstream.handler = slow
    await relay.start(
        """
        [destinations.orders]
        url = "{url}"
        sources = ["stripe"]
        concurrency = 1

        [destinations.audit]
        url = "{url}"
        sources = ["stripe"]
        concurrency = 3
        """
    )
    ids = await asyncio.gather(
        *(relay.accept(b'{"n":%d}' % i, destinations=("orders", "audit")) for i in range(6))
    )
    await relay.run_until_idle()
    assert len(downstream.received) == 12
    delivered = relay.rows(
        "SELECT message_id, count(*) FROM deliveries WHERE state = 'delivered' GROUP BY 1",
    )
    assert dict(delivered) == {parse_message_id(m): 2 for m in ids}
    assert downstream.max_in_flight == 4


async def test_gone_is_dead_at_once(relay: Relay, downstream: Downstream) -> None:
    async def gone(received: Received, number: int) -> web.StreamResponse:
        return web.Response(status=410, text="unsubscribed")

    downstream.handler = gone
    await relay.start('[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\n' + FAST_RETRIES)
    message_id = await relay.accept()
    assert await relay.wait_state(message_id, "dead") == ("dead", 1, 410, "HTTP 410")
    # Past the longest backoff here a retry, were one scheduled, is due; the marker,
    # accepted after that, is attempted only once the worker has claimed again.
    ((*_, started_at, duration_ms),) = relay.attempts(message_id)
    await wait_for(lambda: time.time() > started_at + duration_ms / 1000 + 0.05)
    marker = await relay.settle()
    assert relay.delivery(marker) == ("dead", 1, 410, "HTTP 410")
    assert [r.headers["webhook-id"] for r in downstream.received] == [message_id, marker]
    assert relay.delivery(message_id) == ("dead", 1, 410, "HTTP 410")


async def test_redirects_are_not_followed(relay: Relay, downstream: Downstream) -> None:
    async def redirect(received: Received, number: int) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    downstream.handler = redirect
    await relay.start(
        '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\nmax_attempts = 2\n'
        + FAST_RETRIES
    )
    message_id = await relay.accept()
    assert await relay.wait_state(message_id, "dead") == ("dead", 2, 302, "HTTP 302")
    assert [r.path for r in downstream.received] == ["/hook", "/hook"]


async def test_max_attempts_then_dead(relay: Relay, downstream: Downstream) -> None:
    async def failing(received: Received, number: int) -> web.StreamResponse:
        return web.Response(status=500, text="x" * 5000)

    downstream.handler = failing
    await relay.start(
        '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\nmax_attempts = 3\n'
        + FAST_RETRIES
    )
    message_id = await relay.accept()
    assert await relay.wait_state(message_id, "dead") == ("dead", 3, 500, "HTTP 500")
    attempts = relay.attempts(message_id)
    assert len(attempts) == 3
    assert all(a[2] == b"x" * 1024 for a in attempts)  # the first 1 KiB of the answer


async def test_retry_after_sets_next_attempt(relay: Relay, downstream: Downstream) -> None:
    async def throttled(received: Received, number: int) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": "120"})

    downstream.handler = throttled
    await relay.start(
        '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\n'
        + """
        initial_backoff = "10ms"
        max_backoff = "1h"
        """
    )
    message_id = await relay.accept()
    await wait_for(lambda: relay.delivery(message_id)[1] == 1)
    ((next_attempt_at, attempt_started),) = relay.rows(
        "SELECT d.next_attempt_at, a.started_at FROM deliveries d"
        " JOIN attempts a ON a.delivery_id = d.id WHERE d.message_id = ?",
        (parse_message_id(message_id),),
    )
    assert 119 <= next_attempt_at - attempt_started <= 125
    assert relay.delivery(message_id) == ("pending", 1, 429, "HTTP 429")


async def test_unparsable_retry_after_is_an_ordinary_backoff(
    relay: Relay, downstream: Downstream
) -> None:
    """ "Retry-After: \u00b2" once crashed the attempt, and the delivery was sent again at once."""

    async def odd(received: Received, number: int) -> web.StreamResponse:
        return web.Response(status=503, headers={"Retry-After": "\u00b2"})

    downstream.handler = odd
    await relay.start(
        '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\n'
        + """
        initial_backoff = "1h"
        max_backoff = "1h"
        """
    )
    message_id = await relay.accept()
    await wait_for(lambda: relay.delivery(message_id)[1] == 1)
    await relay.run_until_idle()
    assert relay.delivery(message_id) == ("pending", 1, 503, "HTTP 503")
    assert len(downstream.received) == 1


async def test_connection_refused_and_timeout_are_recorded(
    relay: Relay, downstream: Downstream
) -> None:
    async def hang(received: Received, number: int) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response(status=200)

    downstream.handler = hang
    # A port that was just free: nothing listens there.
    closed = Downstream()
    await closed.start()
    refused_url = closed.url()
    await closed.close()
    await relay.start(
        f"""
        [destinations.orders]
        url = "{{url}}"
        sources = ["stripe"]
        timeout = "200ms"
        max_attempts = 1

        [destinations.nowhere]
        url = "{refused_url}"
        sources = ["stripe"]
        max_attempts = 1
        """
    )
    slow_id = await relay.accept(destinations=("orders",))
    refused_id = await relay.accept(destinations=("nowhere",))
    assert await relay.wait_state(slow_id, "dead") == ("dead", 1, None, "timeout")
    state, attempts, status, error = await relay.wait_state(refused_id, "dead")
    assert (state, attempts, status) == ("dead", 1, None)
    assert error.startswith("ClientConnectorError")


async def test_retried_delivery_survives_restart(
    tmp_path: Path, relay: Relay, downstream: Downstream
) -> None:
    """A delivery pending in the file is picked up by a new dispatcher on the same file."""
    release = asyncio.Event()

    async def refuse_first(received: Received, number: int) -> web.StreamResponse:
        if number == 1:
            await release.wait()
            return web.Response(status=500)
        return web.Response(status=200)

    downstream.handler = refuse_first
    destination = """
        [destinations.orders]
        url = "{url}"
        sources = ["stripe"]
        initial_backoff = "300ms"
        max_backoff = "300ms"
        """
    await relay.start(destination)
    message_id = await relay.accept()
    await wait_for(lambda: downstream.received)
    assert relay.dispatcher is not None
    (worker,) = relay.dispatcher.workers.values()
    # The backoff is drawn from 0 to 300 ms: the first attempt fails only once its
    # worker has stopped claiming, so that its retry is left to the second relay.
    stopping = asyncio.create_task(relay.stop())
    await wait_for(lambda: worker.stopping)
    release.set()
    await stopping
    assert relay.delivery(message_id)[:2] == ("pending", 1)

    second = Relay(tmp_path, downstream, relay.backend)
    try:
        await second.start(destination)
        assert await second.wait_state(message_id, "delivered") == ("delivered", 2, 200, None)
    finally:
        await second.stop()
    assert [r.headers["webhook-id"] for r in downstream.received] == [message_id] * 2


async def test_paused_destination_keeps_deliveries_pending(
    relay: Relay, downstream: Downstream
) -> None:
    await relay.start(
        """
        [destinations.orders]
        url = "{url}"
        sources = ["stripe"]

        [destinations.audit]
        url = "{url}"
        sources = ["stripe"]
        """
    )
    assert relay.dispatcher is not None
    await relay.dispatcher.set_paused("orders", True)
    message_id = await relay.accept()
    # The commit woke the paused worker; a marker for another destination, accepted
    # after it, is delivered only once that worker has had its chance to send.
    marker = await relay.accept(destinations=("audit",))
    await relay.wait_state(marker, "delivered")
    assert [r.headers["webhook-id"] for r in downstream.received] == [marker]
    assert relay.delivery(message_id)[0] == "pending"
    await relay.dispatcher.set_paused("orders", False)
    assert (await relay.wait_state(message_id, "delivered"))[0] == "delivered"


async def test_each_delivery_is_sent_once_when_all_succeed(
    relay: Relay, downstream: Downstream
) -> None:
    """Many quick deliveries, arriving while others are in flight: each is sent once.

    Timing-dependent: on a dispatcher that re-claims attempts which ended during
    its claim query, this fails often but not always; the next test is the exact one.
    """

    async def quick(received: Received, number: int) -> web.StreamResponse:
        await asyncio.sleep(0.005 * (number % 3))
        return web.Response(status=200)

    downstream.handler = quick
    await relay.start(
        '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\nconcurrency = 4\n'
    )
    ids = []
    for i in range(150):
        ids.append(await relay.accept(b'{"n":%d}' % i))
        await asyncio.sleep(0.002)
    await relay.run_until_idle()
    delivered = relay.rows("SELECT count(*) FROM deliveries WHERE state = 'delivered'")
    assert delivered == [(150,)]
    ids.append(await relay.settle())  # a late second send of any of them is in by now
    sent = [r.headers["webhook-id"] for r in downstream.received]
    assert sorted(sent) == sorted(ids)  # every one, and each once
    assert relay.rows("SELECT count(*) FROM attempts") == [(151,)]


class LateReadStore(SQLiteStore):
    """The real store, whose claim answers reach the caller late.

    The snapshot is taken at query time, as always; only its arrival is delayed,
    as when the event loop is busy. An attempt that ends meanwhile is already
    recorded, yet still pending in that snapshot.
    """

    async def claim_due(self, destination: str, now: float, limit: int) -> list[DueDelivery]:
        due = await super().claim_due(destination, now, limit)
        await asyncio.sleep(0.1)
        return due

    def claim_due_at_once(
        self, destination: str, now: float, limit: int
    ) -> tuple[list[DueDelivery], float | None] | None:
        return None  # every claim is the late one


async def test_attempt_ending_during_a_claim_is_not_sent_again(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    relay = sqlite_relay  # LateReadStore is the SQLite store's

    async def quick(received: Received, number: int) -> web.StreamResponse:
        await asyncio.sleep(0.01)
        return web.Response(status=200)

    downstream.handler = quick
    await relay.start(
        """
        [destinations.orders]
        url = "{url}"
        sources = ["stripe"]
        concurrency = 2
        """,
        store_type=LateReadStore,
    )
    ids: list[str] = []
    for _ in range(3):
        # The first is in flight when the second's commit starts a claim; the
        # first ends (10 ms) long before that claim's answer arrives (100 ms).
        ids.append(await relay.accept())
        await wait_for(lambda: len(downstream.received) >= len(ids))
        ids.append(await relay.accept())
        for message_id in ids:
            await relay.wait_state(message_id, "delivered")
    # Rather than sleeping past a late claim answer (100 ms): a marker's claim comes
    # after any such claim has started its requests (run_until_idle cannot see a
    # claim still running).
    ids.append(await relay.settle())
    assert relay.delivery(ids[-1])[0] == "delivered"
    sent = [r.headers["webhook-id"] for r in downstream.received]
    assert sorted(sent) == sorted(ids)  # each once
    assert relay.rows("SELECT count(*) FROM attempts") == [(7,)]


async def test_a_request_that_ends_claims_nothing_unless_work_may_be_due(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    """No claim per answer or outcome, nor per commit that brought work.

    Once a claim found nothing more due, the end of a request frees its slot without
    a query, and a commit's new deliveries are handed over from the commit itself; a
    retry recorded or a release make the next claim look again.
    """
    relay = sqlite_relay
    await relay.start('[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\n' + FAST_RETRIES)
    assert relay.store is not None
    claims: list[float] = []
    claim_due = relay.store.claim_due
    claim_due_at_once = relay.store.claim_due_at_once

    async def counted(destination: str, now: float, limit: int) -> list[DueDelivery]:
        claims.append(now)
        return await claim_due(destination, now, limit)

    def counted_at_once(
        destination: str, now: float, limit: int
    ) -> tuple[list[DueDelivery], float | None] | None:
        claims.append(now)
        return claim_due_at_once(destination, now, limit)

    handed: list[int] = []
    claim_committed = relay.store.claim_committed

    def counted_hand_off(destination: str, limit: int) -> tuple[list[DueDelivery], bool] | None:
        taken = claim_committed(destination, limit)
        handed.extend(d.id for d in (taken[0] if taken else ()))
        return taken

    relay.store.claim_due = counted  # type: ignore[method-assign]
    relay.store.claim_due_at_once = counted_at_once  # type: ignore[method-assign]
    relay.store.claim_committed = counted_hand_off  # type: ignore[method-assign]
    await relay.wait_state(await relay.accept(), "delivered")
    await relay.run_until_idle()
    claims.clear()  # the worker's first look at the store may have come before
    handed.clear()
    for _ in range(10):
        await relay.wait_state(await relay.accept(), "delivered")
    await relay.run_until_idle()
    assert claims == []
    assert len(handed) == 10  # each commit's delivery, from the commit

    # A retry recorded is work: claimed again when due, without a commit to wake it.
    failures = iter([503, 503])

    async def flaky(received: Received, number: int) -> web.StreamResponse:
        return web.Response(status=next(failures, 200))

    downstream.handler = flaky
    await relay.wait_state(await relay.accept(), "delivered")
    assert len(downstream.received) == 14
    assert len(claims) >= 2  # each retry was claimed when it came due


async def test_a_commit_starts_its_deliveries_in_its_own_turn_of_the_loop(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    """With the store to itself, a worker that sleeps with nothing due is not woken to
    claim what a commit brought: the commit's notice claims it and starts its request
    at once, before the one who committed hears of the commit."""
    relay = sqlite_relay
    await relay.start('[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\n')
    assert relay.dispatcher is not None
    worker = relay.dispatcher.workers["orders"]
    ids = [await relay.accept()]
    for _ in range(5):
        await relay.wait_state(ids[-1], "delivered")
        await relay.run_until_idle()  # the worker sleeps, its last request ended
        ids.append(await relay.accept())
        assert len(worker.requests) == 1  # already started
    ids.append(await relay.settle())
    assert sorted(r.headers["webhook-id"] for r in downstream.received) == sorted(ids)


async def test_ordered_destination_delivers_everything_in_order(
    relay: Relay, downstream: Downstream
) -> None:
    await relay.start(
        '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\nordered = true\n'
    )
    ids = [await relay.accept(b'{"n":%d}' % i) for i in range(5)]
    await relay.run_until_idle()
    assert relay.states() == dict.fromkeys(ids, "delivered")
    assert [r.headers["webhook-id"] for r in downstream.received] == ids
    assert downstream.max_in_flight == 1


async def test_reload_closes_the_pool_of_a_deny_list_no_longer_used(relay: Relay) -> None:
    cfg = await relay.start(
        """
        [destinations.orders]
        url = "{url}"
        sources = ["stripe"]
        deny_networks = ["169.254.0.0/16"]

        [destinations.audit]
        url = "{url}"
        sources = ["stripe"]
        """
    )
    assert relay.dispatcher is not None
    client = relay.dispatcher.sender
    assert isinstance(client, HttpClient)
    narrow = client.pool("orders")
    shared = client.pool("audit")
    assert narrow is not shared
    # orders takes the default deny list: it now shares audit's pool, and its old one goes.
    default = config.DeliveryPolicy().deny_networks
    moved = msgspec.structs.replace(
        cfg.destinations["orders"],
        policy=msgspec.structs.replace(cfg.destinations["orders"].policy, deny_networks=default),
    )
    await relay.dispatcher.apply([moved, cfg.destinations["audit"]], grace=1.0)
    assert client.pool("orders") is shared
    assert narrow.closed
    assert not shared.closed
    message_id = await relay.accept(destinations=("orders",))
    await relay.wait_state(message_id, "delivered")


async def test_request_cut_off_by_a_reload_is_attempted_again(
    relay: Relay, downstream: Downstream
) -> None:
    """Its lease ends with the cut: the changed destination's new worker sends it again."""
    release = asyncio.Event()

    async def hang_first(received: Received, number: int) -> web.StreamResponse:
        if number == 1:
            await release.wait()
        return web.Response(status=200)

    downstream.handler = hang_first
    cfg = await relay.start('[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\n')
    message_id = await relay.accept()
    await wait_for(lambda: downstream.received)
    assert relay.dispatcher is not None
    changed = msgspec.structs.replace(cfg.destinations["orders"], headers={"X-New": "1"})
    await relay.dispatcher.apply([changed], grace=0.1)  # the hanging request is cancelled
    assert await relay.wait_state(message_id, "delivered") == ("delivered", 1, 200, None)
    release.set()
    assert [r.headers.get("X-New") for r in downstream.received] == [None, "1"]


async def test_a_retry_scheduled_while_a_reload_drains_is_sent_by_the_new_worker(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    """The request in flight fails inside the reload's grace: its outcome (a retry) is
    committed before the new worker's first claim, which then knows when it comes due.
    Found in review: the drain returned before that commit, the retry's wake-up went to
    the retired worker, and the new one slept past it."""
    release = asyncio.Event()

    async def fail_first_slowly(received: Received, number: int) -> web.StreamResponse:
        if number == 1:
            await release.wait()
            return web.Response(status=500)
        return web.Response(status=200)

    downstream.handler = fail_first_slowly
    cfg = await sqlite_relay.start(
        '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\n'
        'initial_backoff = "10ms"\nmax_backoff = "50ms"\n'
    )
    message_id = await sqlite_relay.accept()
    await wait_for(lambda: downstream.received)
    dispatcher = sqlite_relay.dispatcher
    assert dispatcher is not None
    changed = msgspec.structs.replace(cfg.destinations["orders"], headers={"X-New": "1"})
    applying = asyncio.create_task(dispatcher.apply([changed], grace=5.0))
    await wait_for(lambda: "orders" not in dispatcher.workers)  # retired: draining next
    await asyncio.sleep(0.2)  # nothing observable marks the drain's start
    release.set()  # the request in flight ends (500) inside the grace
    await applying
    assert await sqlite_relay.wait_state(message_id, "delivered") == ("delivered", 2, 200, None)


class FailingOutcomeStore(SQLiteStore):
    """The real store, whose first ``failures`` outcome writes fail as a commit would."""

    failures = 2

    def record_attempt(self, record: AttemptRecord) -> asyncio.Future[None]:
        if self.failures:
            self.failures -= 1
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(StoreError("commit failed: disk I/O error"))
            return failed
        return super().record_attempt(record)


async def test_an_outcome_whose_commit_fails_is_written_again_not_sent_again(
    sqlite_relay: Relay, downstream: Downstream
) -> None:
    """The answered delivery stays in flight (leased) while its outcome cannot be
    committed, so no claim sends it again; the outcome is written once the store takes it."""
    relay = sqlite_relay
    await relay.start(
        '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\n',
        store_type=FailingOutcomeStore,
    )
    assert relay.dispatcher is not None
    worker = relay.dispatcher.workers["orders"]
    first = await relay.accept()
    await wait_for(lambda: len(downstream.received) == 1)
    # Other commits wake the worker meanwhile: none may claim the held delivery.
    others = [await relay.accept() for _ in range(3)]
    for message_id in [first, *others]:
        await relay.wait_state(message_id, "delivered")
    await relay.run_until_idle()
    assert not worker.inflight and not worker.recording and worker.unsettled == 0
    sent = [r.headers["webhook-id"] for r in downstream.received]
    assert sorted(sent) == sorted([first, *others])  # each once
    assert relay.rows("SELECT count(*) FROM attempts") == [(4,)]
