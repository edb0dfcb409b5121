"""End to end: delivery at scale through the real daemon.

Batches in one signed request, strict ordering across failures and a SIGKILL,
the rate limit as the downstream sees it, the circuit breaker, a durable pause,
and a hanging destination that must not hold up a healthy one. Times are bounds
for waiting; the only time-shaped assertions are the contracts themselves
(rate limit windows, circuit cooldown gaps).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from .conftest import Daemon, Downstream, Received, Reply, post, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]
MakeDownstream = Callable[..., Awaitable[Downstream]]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "e2e-admin-token"
SOURCE = {"shop": {"path": "/hooks/shop", "event_type": "json:type"}}


def relay_config(**destinations: dict[str, Any]) -> dict[str, Any]:
    return {
        "admin": {"token": TOKEN},
        "sources": SOURCE,
        "destinations": {
            name: {"sources": ["shop"], **table} for name, table in destinations.items()
        },
    }


async def send(client: aiohttp.ClientSession, daemon: Daemon, body: bytes) -> str:
    status, answer = await post(client, daemon.url("/hooks/shop"), body)
    assert status == 202, (status, answer)
    message_id: str = answer["id"]
    return message_id


async def send_many(
    client: aiohttp.ClientSession, daemon: Daemon, bodies: list[bytes], clients: int = 8
) -> list[str]:
    """POST every body (``clients`` at a time); the message ids in body order."""
    gate = asyncio.Semaphore(clients)

    async def one(body: bytes) -> str:
        async with gate:
            return await send(client, daemon, body)

    return list(await asyncio.gather(*(one(b) for b in bodies)))


def event(n: int, kind: str = "order.created") -> bytes:
    return json.dumps({"type": kind, "n": n}).encode()


def number_of(request: Received) -> int:
    n: int = json.loads(request.body)["n"]
    return n


async def delivered(daemon: Daemon, count: int, timeout: float = 15.0) -> None:
    await wait_for(
        lambda: daemon.delivery_states() == {"delivered": count},
        timeout,
        message=lambda: f"{count} delivered, got {daemon.delivery_states()}",
    )


async def admin_post(
    client: aiohttp.ClientSession, daemon: Daemon, path: str, token: str | None = TOKEN
) -> tuple[int, dict[str, Any]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with client.post(daemon.admin_url(path), headers=headers) as response:
        return response.status, await response.json()


async def state_of(daemon: Daemon, destination: str) -> str:
    state: str = (await daemon.readyz())["destinations"][destination]["state"]
    return state


# -- batches ------------------------------------------------------------------------


async def test_batch_arrives_as_one_signed_request_with_the_envelope(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(
        **relay_config(
            sink={
                "url": downstream.url(),
                "batch_max": 5,
                "batch_wait": "5s",  # full before that: it must leave at once
                "sign": "standard",
                "secret": SECRET,
            }
        )
    )
    bodies = [
        b'{"type": "order.created",   "n": 0, "items": [1, 2.50]}',
        b'{"n":1,"type":"order.paid"}',
        b'{\n  "type": "order.shipped",\n  "n": 2\n}',
        b'{"type":"order.created","n":3,"note":"caf\\u00e9 \xe2\x9c\x93"}',
        b'{"type":"refund.created","n":4,"nested":{"a":{"b":null}}}',
    ]
    ids = await send_many(client, daemon, bodies, clients=5)
    await delivered(daemon, 5)
    (request,) = downstream.requests
    envelope = Webhook(SECRET).verify(request.body, dict(request.headers))
    assert request.webhook_id == envelope["batch_id"]
    assert request.headers["Hookgate-Batch-Size"] == "5"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Hookgate-Source"] == "shop"
    assert list(envelope) == ["batch_id", "events"]
    by_id = {e["id"]: e for e in envelope["events"]}
    assert set(by_id) == set(ids)
    for message_id, body in zip(ids, bodies, strict=True):
        item = by_id[message_id]
        assert set(item) == {"id", "source", "type", "received_at", "payload"}
        assert item["payload"] == json.loads(body)
        assert item["type"] == json.loads(body)["type"]
        assert item["source"] == "shop"
        assert item["received_at"].endswith("Z")
        assert body in request.body  # the inbound JSON as is, not re-serialised
    # Event order in the envelope is arrival order.
    received = [e["received_at"] for e in envelope["events"]]
    assert received == sorted(received)


# -- strict ordering ----------------------------------------------------------------


async def test_ordered_delivery_survives_failures_and_a_sigkill(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(
        delivery={"initial_backoff": "50ms", "max_backoff": "100ms", "max_attempts": 100},
        **relay_config(sink={"url": downstream.url(), "ordered": True, "concurrency": 8}),
    )
    # Requests are answered in arrival order: 1 and 2 pass, then the 3rd webhook
    # fails twice (if the order holds, requests 3 and 4 are both the 3rd webhook).
    downstream.reply(Reply(), Reply(), Reply(500), Reply(500))
    downstream.default = Reply(delay=0.05)  # slow enough to be killed mid-stream
    for n in range(1, 21):
        await send(client, daemon, event(n))
    await downstream.wait_count(9)
    daemon.kill()
    at_kill = len(downstream.requests)
    assert daemon.delivery_states().get("pending", 0) >= 5  # killed mid-stream
    await daemon.start()
    for n in range(21, 26):
        await send(client, daemon, event(n))
    await delivered(daemon, 25, timeout=20)

    sequence = [number_of(r) for r in downstream.requests]
    assert sequence[:5] == [1, 2, 3, 3, 3]
    assert sequence == sorted(sequence), sequence  # never ahead of an earlier one
    assert set(sequence) == set(range(1, 26))
    # Beyond the two failures of 3, at most the request cut off by the SIGKILL
    # is repeated (at-least-once), and only right where the kill happened.
    repeats = [i for i in range(5, len(sequence)) if sequence[i] == sequence[i - 1]]
    assert len(repeats) <= 1 and all(abs(i - at_kill) <= 1 for i in repeats), (repeats, at_kill)


# -- rate limit ---------------------------------------------------------------------


def most_in_any_second(times: list[float]) -> int:
    """The most arrivals in any window [t, t + 1s); the busiest starts at an arrival."""
    times = sorted(times)
    most = 0
    end = 0
    for start, at in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] < at + 1.0:
            end += 1
        most = max(most, end - start)
    return most


@pytest.mark.slow  # 100 requests at 20 per second
async def test_rate_limit_holds_in_every_one_second_window_at_the_downstream(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    total, rate = 100, 20
    daemon = await start_daemon(**relay_config(sink={"url": downstream.url(), "rate_limit": rate}))
    # Queue them all first, so this process (which also runs the downstream) is idle
    # while they are delivered and the arrival times it records are not skewed.
    await admin_post(client, daemon, "/api/v1/destinations/sink/pause")
    await send_many(client, daemon, [event(n) for n in range(total)])
    await admin_post(client, daemon, "/api/v1/destinations/sink/resume")
    await downstream.wait_count(total, timeout=20)
    await delivered(daemon, total)
    arrivals = [r.at for r in downstream.requests]
    assert len(arrivals) == total  # each once: the limit delays, it does not fail
    assert most_in_any_second(arrivals) <= rate
    assert most_in_any_second(arrivals) >= rate * 0.8  # and the rate is used
    # 100 at 20/s: the first 20 at once, then 20 a second.
    assert max(arrivals) - min(arrivals) >= (total - rate) / rate - 0.2


# -- circuit breaker ----------------------------------------------------------------


@pytest.mark.slow  # waits out the circuit's cooldowns
async def test_open_circuit_makes_no_attempt_until_one_probe_after_cooldown(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    cooldown = 1.0
    daemon = await start_daemon(
        delivery={"initial_backoff": "10ms", "max_backoff": "20ms", "max_attempts": 1000},
        **relay_config(
            sink={
                "url": downstream.url(),
                "concurrency": 4,
                "circuit_failures": 3,
                "circuit_cooldown": "1s",
            }
        ),
    )
    downstream.default = Reply(500)
    await send_many(client, daemon, [event(n) for n in range(6)])
    await downstream.wait_count(3)
    assert await wait_for(lambda: _is(state_of(daemon, "sink"), "open"), 3.0)

    def probes_so_far() -> int:
        """Requests that came after a gap of more than half the cooldown: the probes."""
        arrivals = [r.at for r in downstream.requests]
        return sum(b - a > cooldown / 2 for a, b in itertools.pairwise(arrivals))

    # Room for two failed probes: wait until both have arrived (each reply is chosen
    # on arrival, so the second is answered 500 before the default changes).
    await wait_for(lambda: probes_so_far() >= 2, 10 * cooldown, message="two probes")
    downstream.default = Reply(200)
    switched = time.monotonic()
    await delivered(daemon, 6)

    arrivals = [r.at for r in downstream.requests]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    opened = next(i for i, gap in enumerate(gaps) if gap > cooldown / 2)
    burst, after = arrivals[: opened + 1], arrivals[opened + 1 :]
    assert len(burst) >= 3  # the failures that opened it (and those already in flight)
    probes = [t for t in after if t < switched]
    assert len(probes) >= 1
    # While open nothing goes; after each cooldown exactly one probe, and it fails.
    for previous, probe in zip([burst[-1], *probes], probes, strict=False):
        assert probe - previous >= cooldown * 0.95, (probe - previous, arrivals)
    first_success = next(r for r in downstream.requests if r.at >= switched)
    assert first_success.at - (probes[-1]) >= cooldown * 0.95
    # The successful probe closes it: the rest go at once, no cooldown between them.
    rest = [r.at for r in downstream.requests if r.at > first_success.at]
    assert len(rest) == 5
    assert max(rest) - first_success.at < cooldown * 0.9
    assert await state_of(daemon, "sink") == "ok"
    attempts = daemon.query("SELECT count(*) FROM attempts")[0][0]
    assert attempts == len(downstream.requests)  # no attempt that did not reach it


async def _is(awaitable: Awaitable[str], expected: str) -> bool:
    return await awaitable == expected


# -- pause --------------------------------------------------------------------------


async def test_paused_destination_receives_nothing_until_resumed_even_across_restart(
    start_daemon: StartDaemon,
    downstream: Downstream,
    downstream_factory: MakeDownstream,
    client: aiohttp.ClientSession,
) -> None:
    # The canary gets every webhook too and is never paused. The same commits wake both
    # workers, so once the canary's deliveries are recorded the paused sink has had its
    # chance to send: that, not a sleep, is when "nothing arrived" is asserted.
    canary = await downstream_factory()
    daemon = await start_daemon(
        **relay_config(sink={"url": downstream.url()}, canary={"url": canary.url()})
    )

    def states(destination: str) -> dict[str, int]:
        return dict(
            daemon.query(
                "SELECT state, count(*) FROM deliveries WHERE destination = ? GROUP BY state",
                (destination,),
            )
        )

    async def canary_delivered(count: int) -> None:
        await wait_for(
            lambda: states("canary") == {"delivered": count},
            message=lambda: f"canary: {count} delivered, got {states('canary')}",
        )

    status, _ = await admin_post(client, daemon, "/api/v1/destinations/sink/pause", token=None)
    assert status == 401
    status, answer = await admin_post(client, daemon, "/api/v1/destinations/sink/pause")
    assert (status, answer["state"], answer["paused"]) == (200, "paused", True)

    await send_many(client, daemon, [event(n) for n in range(5)])
    assert await state_of(daemon, "sink") == "paused"
    await canary_delivered(5)
    assert downstream.requests == []

    daemon.kill()  # the pause was durable before the API answered
    await daemon.start()
    assert await state_of(daemon, "sink") == "paused"
    await send_many(client, daemon, [event(n) for n in range(5, 8)])
    await canary_delivered(8)
    assert downstream.requests == []
    assert states("sink") == {"pending": 8}

    status, answer = await admin_post(client, daemon, "/api/v1/destinations/sink/resume")
    assert (status, answer["state"], answer["paused"]) == (200, "ok", False)
    await delivered(daemon, 16)  # the sink's 8 and the canary's 8
    assert sorted(number_of(r) for r in downstream.requests) == list(range(8))


# -- isolation ----------------------------------------------------------------------


async def test_hanging_destination_does_not_hold_up_a_healthy_one(
    start_daemon: StartDaemon, downstream_factory: MakeDownstream, client: aiohttp.ClientSession
) -> None:
    stuck = await downstream_factory()
    healthy = await downstream_factory()
    stuck.default = Reply(hang=True)
    total = 60
    daemon = await start_daemon(
        **relay_config(
            stuck={"url": stuck.url(), "timeout": "30s"},
            healthy={"url": healthy.url()},
        )
    )
    started = time.monotonic()
    await send_many(client, daemon, [event(n) for n in range(total)])
    await healthy.wait_count(total)
    took = time.monotonic() - started
    healthy_delivered = (
        "SELECT count(*) FROM deliveries WHERE destination = 'healthy' AND state = 'delivered'"
    )
    await wait_for(lambda: daemon.query(healthy_delivered) == [(total,)])
    # Every stuck request is still hanging (none answered, none timed out), its
    # concurrency is full, and the healthy destination got everything meanwhile.
    await stuck.wait_count(16)
    assert len(stuck.requests) == 16  # its default concurrency, and no more
    assert daemon.query(
        "SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
        " WHERE d.destination = 'stuck'"
    ) == [(0,)]
    assert took < 10, took  # a bound far below the stuck destination's 30 s timeout
    assert sorted(number_of(r) for r in healthy.requests) == list(range(total))
