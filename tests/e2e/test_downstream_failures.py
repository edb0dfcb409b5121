"""End to end: what the dispatcher does when a destination misbehaves.

Backoffs are small ("100ms" .. "500ms") so retries come quickly; the assertions are
about behaviour (which attempt, which header, which state), never about speed. The
one timing assertion is a lower bound that Retry-After imposes.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from .conftest import Daemon, Downstream, Reply, free_port, post, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]
MakeDownstream = Callable[..., Awaitable[Downstream]]

FAST_RETRIES = {"initial_backoff": "100ms", "max_backoff": "500ms", "timeout": "5s"}


async def relay(
    start_daemon: StartDaemon, url: str, **destination: Any
) -> tuple[Daemon, Callable[[aiohttp.ClientSession], Awaitable[str]]]:
    """A daemon with source "src" → destination "dest" at ``url``; returns it and a sender."""
    daemon = await start_daemon(
        delivery=FAST_RETRIES,
        sources={"src": {"path": "/hooks/src", "event_type": "json:type"}},
        destinations={"dest": {"url": url, "sources": ["src"], **destination}},
    )

    async def send(client: aiohttp.ClientSession, body: bytes = b'{"type": "t.x"}') -> str:
        status, answer = await post(client, daemon.url("/hooks/src"), body)
        assert status == 202, answer
        return str(answer["id"])

    return daemon, send


async def settled(daemon: Daemon, message_id: str, state: str) -> tuple[Any, ...]:
    """Wait until the delivery of ``message_id`` is in ``state``; return its row."""

    def row() -> tuple[Any, ...] | None:
        rows = daemon.delivery_rows(message_id)
        return rows[0] if rows and rows[0][1] == state else None

    result: tuple[Any, ...] = await wait_for(
        row, message=lambda: f"{state}: {daemon.delivery_rows(message_id)}"
    )
    return result


def attempt_rows(daemon: Daemon, message_id: str) -> list[tuple[Any, ...]]:
    """(status, error, response_snippet) of each recorded attempt, in order."""
    number = int(message_id.removeprefix("msg_"), 16)
    return daemon.query(
        "SELECT a.status, a.error, a.response_snippet FROM attempts a"
        " JOIN deliveries d ON d.id = a.delivery_id WHERE d.message_id = ? ORDER BY a.id",
        (number,),
    )


async def test_server_errors_are_retried_with_same_webhook_id(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon, send = await relay(start_daemon, downstream.url())
    downstream.reply(Reply(500, body=b"e" * 5000), Reply(500))
    body = b'{"type": "t.x", "payload": "same bytes every time"}'
    message_id = await send(client, body)

    requests = await downstream.wait_count(3)
    assert [r.attempt for r in requests] == [1, 2, 3]
    assert {r.webhook_id for r in requests} == {message_id}
    assert {r.body for r in requests} == {body}
    assert await settled(daemon, message_id, "delivered") == ("dest", "delivered", 3, 200)
    attempts = attempt_rows(daemon, message_id)
    assert [status for status, _, _ in attempts] == [500, 500, 200]
    assert len(attempts[0][2]) == 1024  # the first 1 KiB of the response is kept
    assert len(downstream.requests) == 3


@pytest.mark.parametrize("status", [400, 404, 408, 502])
async def test_other_client_and_server_errors_are_retried(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession, status: int
) -> None:
    daemon, send = await relay(start_daemon, downstream.url())
    downstream.reply(Reply(status))
    message_id = await send(client)
    assert await settled(daemon, message_id, "delivered") == ("dest", "delivered", 2, 200)
    assert [r.attempt for r in downstream.for_id(message_id)] == [1, 2]


async def test_429_retry_after_seconds_sets_the_next_attempt(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    # Retry-After is capped at max_backoff, so give room above the 1 s asked for.
    daemon, send = await relay(start_daemon, downstream.url(), max_backoff="10s")
    downstream.reply(Reply(429, headers={"Retry-After": "1"}))
    message_id = await send(client)

    first, second = await downstream.wait_count(2)
    assert [first.attempt, second.attempt] == [1, 2]
    assert second.webhook_id == first.webhook_id == message_id
    gap = second.at - first.at
    assert gap >= 0.9, f"the retry came {gap:.3f}s after a 429 asking for 1s"
    assert await settled(daemon, message_id, "delivered") == ("dest", "delivered", 2, 200)


async def test_503_retry_after_http_date_sets_the_next_attempt(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon, send = await relay(start_daemon, downstream.url(), max_backoff="10s")
    # An HTTP date has whole seconds: 3 s ahead is at least 2 s after the answer.
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    downstream.reply(Reply(503, headers={"Retry-After": when}))
    message_id = await send(client)

    first, second = await downstream.wait_count(2)
    gap = second.at - first.at
    assert gap >= 1.5, f"the retry came {gap:.3f}s after a 503 asking for {when}"
    assert await settled(daemon, message_id, "delivered") == ("dest", "delivered", 2, 200)


async def test_retry_after_is_capped_at_max_backoff(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon, send = await relay(start_daemon, downstream.url())  # max_backoff 500ms
    downstream.reply(Reply(429, headers={"Retry-After": "3600"}))
    message_id = await send(client)
    # An hour is not waited: the retry comes well inside the test's deadline.
    assert await settled(daemon, message_id, "delivered") == ("dest", "delivered", 2, 200)


async def test_hang_beyond_timeout_is_retried(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon, send = await relay(start_daemon, downstream.url(), timeout="500ms")
    downstream.reply(Reply(hang=True))
    message_id = await send(client)

    first, second = await downstream.wait_count(2)
    assert [first.attempt, second.attempt] == [1, 2]
    assert second.webhook_id == message_id
    assert await settled(daemon, message_id, "delivered") == ("dest", "delivered", 2, 200)
    (timed_out, _), (ok, _) = [(s, e) for s, e, _ in attempt_rows(daemon, message_id)]
    assert timed_out is None
    assert ok == 200
    errors = [e for _, e, _ in attempt_rows(daemon, message_id)]
    assert errors[0] is not None
    assert "timeout" in errors[0].lower()


async def test_slow_destination_does_not_hold_up_another(
    start_daemon: StartDaemon, downstream_factory: MakeDownstream, client: aiohttp.ClientSession
) -> None:
    slow, fast = await downstream_factory(), await downstream_factory()
    slow.default = Reply(hang=True)
    daemon = await start_daemon(
        delivery=FAST_RETRIES,
        sources={"src": {"path": "/hooks/src"}},
        destinations={
            "slow": {"url": slow.url(), "sources": ["src"], "concurrency": 2, "timeout": "30s"},
            "fast": {"url": fast.url(), "sources": ["src"]},
        },
    )
    ids = []
    for n in range(10):
        status, answer = await post(client, daemon.url("/hooks/src"), f'{{"n": {n}}}'.encode())
        assert status == 202, answer
        ids.append(answer["id"])
    await wait_for(lambda: fast.ids() == set(ids))
    assert len(slow.requests) <= 2  # its concurrency: the rest wait their turn


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_not_followed_and_counts_as_failure(
    start_daemon: StartDaemon,
    downstream_factory: MakeDownstream,
    client: aiohttp.ClientSession,
    status: int,
) -> None:
    origin, elsewhere = await downstream_factory(), await downstream_factory()
    daemon, send = await relay(start_daemon, origin.url("/hook"))
    origin.reply(Reply(status, headers={"Location": elsewhere.url("/stolen")}))
    message_id = await send(client)

    assert await settled(daemon, message_id, "delivered") == ("dest", "delivered", 2, 200)
    assert [r.attempt for r in origin.requests] == [1, 2]
    assert [s for s, _, _ in attempt_rows(daemon, message_id)] == [status, 200]
    assert elsewhere.requests == []  # the redirect target never saw the webhook


async def test_410_gone_is_dead_after_one_attempt(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon, send = await relay(start_daemon, downstream.url())
    downstream.default = Reply(410)
    message_id = await send(client)

    assert await settled(daemon, message_id, "dead") == ("dest", "dead", 1, 410)
    ready = await daemon.readyz()
    assert ready["queue"]["dead"] == 1
    assert ready["queue"]["pending"] == 0
    assert len(downstream.requests) == 1


async def test_max_attempts_then_dead(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon, send = await relay(start_daemon, downstream.url(), max_attempts=3)
    downstream.default = Reply(500)
    message_id = await send(client)

    assert await settled(daemon, message_id, "dead") == ("dest", "dead", 3, 500)
    assert [r.attempt for r in downstream.requests] == [1, 2, 3]
    assert {r.webhook_id for r in downstream.requests} == {message_id}
    assert (await daemon.readyz())["queue"]["dead"] == 1
    assert len(attempt_rows(daemon, message_id)) == 3


async def test_connection_refused_is_retried_until_the_destination_comes_up(
    start_daemon: StartDaemon, downstream_factory: MakeDownstream, client: aiohttp.ClientSession
) -> None:
    port = free_port()  # nothing listens here yet
    daemon, send = await relay(start_daemon, f"http://127.0.0.1:{port}/hook", max_attempts=1000)
    message_id = await send(client)
    await wait_for(lambda: attempt_rows(daemon, message_id))
    assert daemon.delivery_rows(message_id)[0][1] == "pending"
    status, error, _ = attempt_rows(daemon, message_id)[0]
    assert status is None  # no HTTP answer at all
    assert error

    late = await downstream_factory(port)
    (received,) = await late.wait_count(1)
    assert received.webhook_id == message_id
    assert received.attempt >= 2
    row = await settled(daemon, message_id, "delivered")
    assert row[2] == received.attempt
