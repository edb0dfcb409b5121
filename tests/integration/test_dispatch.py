"""The dispatcher against a real SQLite outbox and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDict
from standardwebhooks.webhooks import Webhook

from hookgate import __version__, config
from hookgate.outbound.alerts import Alerter
from hookgate.outbound.dispatcher import Dispatcher
from hookgate.store import DueDelivery, NewMessage, parse_message_id
from hookgate.store.sqlite import SQLiteStore

HOST = "127.0.0.1"
WAIT = 10.0  # a bound for waiting, not an expectation of speed
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Received:
    path: str
    headers: CIMultiDict[str]
    body: bytes


Handler = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


async def ok(request: web.Request, number: int) -> web.StreamResponse:
    return web.Response(status=200, text="thanks")


@dataclass
class Downstream:
    """A recording HTTP server; ``handler`` answers each request."""

    handler: Handler = ok
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://{HOST}:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            self.received.append(Received(request.path, CIMultiDict(request.headers), body))
            return await self.handler(request, len(self.received))
        finally:
            self.in_flight -= 1


async def wait_for(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def db_rows(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


@dataclass
class Relay:
    """A store and a dispatcher wired as the daemon wires them."""

    tmp_path: Path
    downstream: Downstream
    store: SQLiteStore | None = None
    dispatcher: Dispatcher | None = None

    @property
    def db(self) -> Path:
        return self.tmp_path / "hookgate.db"

    async def start(self, destination_toml: str) -> config.Config:
        path = self.tmp_path / "hookgate.toml"
        path.write_text(
            textwrap.dedent(
                """
                [sources.stripe]
                path = "/hooks/stripe"
                """
            )
            + textwrap.dedent(destination_toml).replace("{url}", self.downstream.url()),
            encoding="utf-8",
        )
        cfg = config.load(path, {})
        self.store = SQLiteStore(cfg.storage.path, sync=cfg.storage.sync)
        await self.store.open()
        self.dispatcher = Dispatcher(
            cfg.destinations.values(), self.store, Alerter(self.store, None)
        )
        self.store.on_commit(self.dispatcher.wake)
        await self.dispatcher.start()
        return cfg

    async def stop(self) -> None:
        """Stop the dispatcher (its requests in flight end first), then the store; idempotent."""
        dispatcher, self.dispatcher = self.dispatcher, None
        store, self.store = self.store, None
        if dispatcher is not None:
            await dispatcher.stop(grace=1.0)
        if store is not None:
            await store.close()

    async def settle(self) -> str:
        """Accept a marker, wait until its delivery is attempted, then stop; its id.

        Instead of sleeping before asserting that something was *not* sent: a worker
        claims one step at a time, so once the marker (accepted last) has been
        attempted, every claim made before has started its requests, and stopping
        waits for those to end. Whatever was going to be sent has been sent.
        """
        marker = await self.accept(b'{"type":"marker"}')
        await wait_for(lambda: self.delivery(marker)[0] != "pending")
        await self.stop()
        return marker

    async def accept(
        self,
        body: bytes = b'{"type":"charge.succeeded"}',
        *,
        destinations: tuple[str, ...] = ("orders",),
        headers: dict[str, str] | None = None,
        event_type: str | None = "charge.succeeded",
    ) -> str:
        assert self.store is not None
        stored = {"content-type": "application/json", **(headers or {})}
        accepted = await self.store.accept(
            NewMessage(
                source="stripe",
                received_at=time.time(),
                event_type=event_type,
                event_id=None,
                dedup_window=86400,
                headers=orjson.dumps(stored),
                body=body,
                destinations=destinations,
            )
        )
        return accepted.message_id

    def delivery(self, message_id: str) -> tuple[Any, ...]:
        """(state, attempts, last_status, last_error) of the message's only delivery."""
        (row,) = db_rows(
            self.db,
            "SELECT state, attempts, last_status, last_error FROM deliveries WHERE message_id = ?",
            (parse_message_id(message_id),),
        )
        return row

    def attempts(self, message_id: str) -> list[tuple[Any, ...]]:
        return db_rows(
            self.db,
            "SELECT a.status, a.error, a.response_snippet, a.started_at, a.duration_ms"
            " FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
            " WHERE d.message_id = ? ORDER BY a.id",
            (parse_message_id(message_id),),
        )

    async def wait_state(self, message_id: str, state: str) -> tuple[Any, ...]:
        await wait_for(lambda: self.delivery(message_id)[0] == state)
        return self.delivery(message_id)


@pytest.fixture
async def downstream() -> AsyncIterator[Downstream]:
    server = Downstream()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def relay(tmp_path: Path, downstream: Downstream) -> AsyncIterator[Relay]:
    relay = Relay(tmp_path, downstream)
    try:
        yield relay
    finally:
        await relay.stop()


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
    await wait_for(lambda: len(downstream.received) >= 5)
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
        state = await relay.wait_state(message_id, "delivered")
        assert state == ("delivered", 1, 200, None)
        ((status, error, snippet, started_at, duration_ms),) = relay.attempts(message_id)
        assert (status, error, snippet) == (200, None, b"thanks")
        assert started_at <= time.time()
        assert duration_ms >= 0


async def test_failing_twice_then_succeeding_takes_three_attempts(
    relay: Relay, downstream: Downstream
) -> None:
    async def flaky(request: web.Request, number: int) -> web.StreamResponse:
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


async def test_concurrency_limit_respected(relay: Relay, downstream: Downstream) -> None:
    async def slow(request: web.Request, number: int) -> web.StreamResponse:
        await asyncio.sleep(0.1)
        return web.Response(status=200)

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
    for message_id in ids:
        await relay.wait_state(message_id, "delivered")
    assert len(downstream.received) == 8
    assert downstream.max_in_flight == 2  # reached, never exceeded


async def test_each_destination_has_its_own_limit(relay: Relay, downstream: Downstream) -> None:
    async def slow(request: web.Request, number: int) -> web.StreamResponse:
        await asyncio.sleep(0.1)
        return web.Response(status=200)

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
    await wait_for(lambda: len(downstream.received) == 12)
    for message_id in ids:
        await wait_for(
            lambda m=message_id: (
                db_rows(  # type: ignore[misc]
                    relay.db,
                    "SELECT count(*) FROM deliveries WHERE message_id = ? AND state = 'delivered'",
                    (parse_message_id(m),),
                )
                == [(2,)]
            )
        )
    assert downstream.max_in_flight == 4


async def test_gone_is_dead_at_once(relay: Relay, downstream: Downstream) -> None:
    async def gone(request: web.Request, number: int) -> web.StreamResponse:
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
    async def redirect(request: web.Request, number: int) -> web.StreamResponse:
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
    async def failing(request: web.Request, number: int) -> web.StreamResponse:
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
    async def throttled(request: web.Request, number: int) -> web.StreamResponse:
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
    ((next_attempt_at, attempt_started),) = db_rows(
        relay.db,
        "SELECT d.next_attempt_at, a.started_at FROM deliveries d"
        " JOIN attempts a ON a.delivery_id = d.id WHERE d.message_id = ?",
        (parse_message_id(message_id),),
    )
    assert 119 <= next_attempt_at - attempt_started <= 125
    assert relay.delivery(message_id) == ("pending", 1, 429, "HTTP 429")


async def test_connection_refused_and_timeout_are_recorded(
    relay: Relay, downstream: Downstream
) -> None:
    async def hang(request: web.Request, number: int) -> web.StreamResponse:
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


async def test_retried_delivery_survives_restart(tmp_path: Path, downstream: Downstream) -> None:
    """A delivery pending in the file is picked up by a new dispatcher on the same file."""

    async def refuse_first(request: web.Request, number: int) -> web.StreamResponse:
        return web.Response(status=500 if number == 1 else 200)

    downstream.handler = refuse_first
    destination = """
        [destinations.orders]
        url = "{url}"
        sources = ["stripe"]
        initial_backoff = "300ms"
        max_backoff = "300ms"
        """
    first = Relay(tmp_path, downstream)
    try:
        await first.start(destination)
        message_id = await first.accept()
        await wait_for(lambda: first.delivery(message_id)[1] == 1)
    finally:
        await first.stop()
    assert first.delivery(message_id)[0] == "pending"

    second = Relay(tmp_path, downstream)
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

    async def quick(request: web.Request, number: int) -> web.StreamResponse:
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
    await wait_for(
        lambda: (
            db_rows(relay.db, "SELECT count(*) FROM deliveries WHERE state = 'delivered'")
            == [(150,)]
        )
    )
    ids.append(await relay.settle())  # a late second send of any of them is in by now
    sent = [r.headers["webhook-id"] for r in downstream.received]
    assert sorted(sent) == sorted(ids)  # every one, and each once
    assert db_rows(relay.db, "SELECT count(*) FROM attempts") == [(151,)]


class LateReadStore(SQLiteStore):
    """The real store, whose claim answers reach the caller late.

    The snapshot is taken at query time, as always; only its arrival is delayed,
    as when the event loop is busy. An attempt that ends meanwhile is already
    recorded, yet still pending in that snapshot.
    """

    async def due_deliveries(
        self, destination: str, now: float, limit: int, exclude: Collection[int] = ()
    ) -> list[DueDelivery]:
        due = await super().due_deliveries(destination, now, limit, exclude)
        await asyncio.sleep(0.1)
        return due


async def test_attempt_ending_during_a_claim_is_not_sent_again(
    tmp_path: Path, downstream: Downstream
) -> None:
    async def quick(request: web.Request, number: int) -> web.StreamResponse:
        await asyncio.sleep(0.01)
        return web.Response(status=200)

    downstream.handler = quick
    (tmp_path / "hookgate.toml").write_text(
        textwrap.dedent(
            f"""
            [sources.stripe]
            path = "/hooks/stripe"
            [destinations.orders]
            url = "{downstream.url()}"
            sources = ["stripe"]
            concurrency = 2
            """
        ),
        encoding="utf-8",
    )
    cfg = config.load(tmp_path / "hookgate.toml", {})
    store = LateReadStore(cfg.storage.path)
    await store.open()
    dispatcher = Dispatcher(cfg.destinations.values(), store, Alerter(store, None))
    store.on_commit(dispatcher.wake)
    await dispatcher.start()
    relay = Relay(tmp_path, downstream, store, dispatcher)
    ids: list[str] = []
    try:
        for _ in range(3):
            # The first is in flight when the second's commit starts a claim; the
            # first ends (10 ms) long before that claim's answer arrives (100 ms).
            ids.append(await relay.accept())
            await wait_for(lambda: len(downstream.received) >= len(ids))
            ids.append(await relay.accept())
            for message_id in ids:
                await relay.wait_state(message_id, "delivered")
        # Rather than sleeping past a late claim answer (100 ms): a marker's claim
        # comes after any such claim has started its requests.
        ids.append(await relay.settle())
    finally:
        await relay.stop()
    assert relay.delivery(ids[-1])[0] == "delivered"
    sent = [r.headers["webhook-id"] for r in downstream.received]
    assert sorted(sent) == sorted(ids)  # each once
    assert db_rows(relay.db, "SELECT count(*) FROM attempts") == [(7,)]


async def test_ordered_destination_delivers_everything_in_order(
    relay: Relay, downstream: Downstream
) -> None:
    await relay.start(
        '[destinations.orders]\nurl = "{url}"\nsources = ["stripe"]\nordered = true\n'
    )
    ids = [await relay.accept(b'{"n":%d}' % i) for i in range(5)]
    for message_id in ids:
        await relay.wait_state(message_id, "delivered")
    assert [r.headers["webhook-id"] for r in downstream.received] == ids
    assert downstream.max_in_flight == 1
