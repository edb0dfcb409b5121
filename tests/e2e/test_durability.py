"""End to end: the core promise survives SIGKILL.

"A 2xx to the provider means the webhook is on disk, and it will be delivered at
least once to every matching destination." Here the daemon is killed with SIGKILL
(no flush, no shutdown, no answer) while clients are sending and deliveries are in
flight, restarted on the same config and database, and every message id that ever
got a 2xx must reach the downstream. Duplicates are allowed and counted.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from .conftest import Daemon, Downstream, Reply, free_port, post, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]
MakeDownstream = Callable[..., Awaitable[Downstream]]

TOTAL = 1500
CLIENTS = 24
KILL_EVERY = 300  # acknowledged webhooks between two SIGKILLs
RETRIES = {"initial_backoff": "100ms", "max_backoff": "500ms", "timeout": "5s"}
# Errors a provider sees while the daemon is dead or dying; it retries the same event.
CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


def source_and_sink(url: str, **destination: Any) -> dict[str, Any]:
    return {
        "delivery": {**RETRIES, "max_attempts": 1000},
        "sources": {
            "load": {"path": "/hooks/load", "event_type": "json:type", "event_id": "json:id"}
        },
        "destinations": {"sink": {"url": url, "sources": ["load"], **destination}},
    }


class Provider:
    """Concurrent clients that send each event until it gets a 2xx, like a real provider."""

    def __init__(self, daemon: Daemon, total: int) -> None:
        self.daemon = daemon
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(total):
            self.queue.put_nowait(n)
        self.acked: dict[str, str] = {}  # event id → message id from the 2xx
        self.answers: dict[str, int] = {}  # event id → 200 or 202
        self.retries = 0

    async def run(self, clients: int) -> None:
        connector = aiohttp.TCPConnector(limit=clients)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._client(session) for _ in range(clients)))

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self.queue.empty():
            n = self.queue.get_nowait()
            event_id = f"evt_{n:05d}"
            body = json.dumps({"id": event_id, "type": "load.test", "n": n}).encode()
            await self._send(session, event_id, body)

    async def _send(self, session: aiohttp.ClientSession, event_id: str, body: bytes) -> None:
        url = self.daemon.url("/hooks/load")
        while True:
            try:
                status, answer = await post(session, url, body)
            except CONNECTION_ERRORS:
                status, answer = 0, {}
            if status in (200, 202):
                assert MESSAGE_ID_LENGTH == len(answer["id"]), answer
                if status == 200:
                    assert answer.get("duplicate") is True, answer
                self.acked[event_id] = answer["id"]
                self.answers[event_id] = status
                return
            # 0: no answer (the daemon died mid-request); 503: shutting down or busy.
            assert status in (0, 503), (status, answer)
            self.retries += 1
            await asyncio.sleep(0.02)


MESSAGE_ID_LENGTH = len("msg_0123456789abcdef")


@pytest.mark.slow  # killed and restarted under load, several times
async def test_no_acknowledged_webhook_is_lost_across_sigkills(
    start_daemon: StartDaemon, downstream: Downstream
) -> None:
    daemon = await start_daemon(**source_and_sink(downstream.url(), concurrency=32))
    provider = Provider(daemon, TOTAL)
    sending = asyncio.create_task(provider.run(CLIENTS))

    def acknowledged_at_least(threshold: int) -> Callable[[], bool]:
        return lambda: len(provider.acked) >= threshold or sending.done()

    kills = 0
    for threshold in range(KILL_EVERY, TOTAL, KILL_EVERY):
        # A generous deadline: it bounds a hang, it does not measure speed.
        await wait_for(
            acknowledged_at_least(threshold),
            60,
            message=lambda: f"{len(provider.acked)} acknowledged",
        )
        if sending.done():
            break
        daemon.kill()
        kills += 1
        await daemon.start()
    await sending  # raises if a client saw an unexpected answer
    assert kills >= 3, f"the load finished before {kills + 1} kills; raise TOTAL"

    acknowledged = set(provider.acked.values())
    assert len(provider.acked) == TOTAL

    def missing() -> set[str]:
        return acknowledged - downstream.ids()

    def explain() -> str:
        lost = sorted(missing())
        states = {}
        for message_id in lost:
            for _, state, attempts, _ in daemon.delivery_rows(message_id):
                key = f"{state} after {attempts} attempts"
                states[key] = states.get(key, 0) + 1
        return f"{len(lost)} acknowledged ids never arrived downstream; in the db: {states}"

    await wait_for(lambda: not missing(), 30, message=explain)
    losses = missing()
    received = [r.webhook_id for r in downstream.requests]
    duplicates = len(received) - len(set(received))
    redelivered = sum(1 for r in downstream.requests if r.attempt > 1)
    print(
        f"\ndurability: {TOTAL} events, {kills} SIGKILLs, {provider.retries} client retries,"
        f" {sum(1 for s in provider.answers.values() if s == 200)} answered as duplicates,"
        f" {len(received)} POSTs downstream for {len(set(received))} ids,"
        f" {duplicates} duplicate deliveries ({redelivered} with Hookgate-Attempt > 1),"
        f" losses {len(losses)}"
    )
    assert losses == set()

    # Each event is one message: dedup held across the kills (a retry after a lost
    # answer got the original id back, not a second message).
    assert len(acknowledged) == TOTAL
    stored = {
        event: f"msg_{number:016x}"
        for event, number in daemon.query("SELECT event_id, id FROM messages")
    }
    assert daemon.query("SELECT count(*) FROM messages")[0][0] == TOTAL
    assert stored == provider.acked
    await wait_for(
        lambda: (
            daemon.query("SELECT count(*) FROM deliveries WHERE state != 'delivered'")[0][0] == 0
        )
    )
    assert downstream.ids() <= acknowledged  # nothing that was never accepted went out
    assert "Traceback" not in daemon.stderr()


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
async def test_deliveries_pending_while_down_are_delivered_after_restart(
    start_daemon: StartDaemon,
    downstream_factory: MakeDownstream,
    client: aiohttp.ClientSession,
    stop: str,
) -> None:
    """A backlog (more than `concurrency` deliveries) built while the downstream was down."""
    port = free_port()  # the downstream is down: nothing listens here yet
    daemon = await start_daemon(**source_and_sink(f"http://127.0.0.1:{port}/hook", concurrency=8))
    ids = []
    for n in range(25):
        body = json.dumps({"id": f"evt_{n}", "type": "load.test"}).encode()
        status, answer = await post(client, daemon.url("/hooks/load"), body)
        assert status == 202, answer
        ids.append(answer["id"])
    # Attempts have failed and been recorded: the deliveries are really pending.
    await wait_for(lambda: daemon.query("SELECT count(*) FROM attempts")[0][0] >= 1)
    if stop == "SIGKILL":
        daemon.kill()
    else:
        assert await daemon.stop() == 0
    assert daemon.delivery_states() == {"pending": 25}

    sink = await downstream_factory(port)
    await daemon.start()
    await wait_for(
        lambda: sink.ids() == set(ids),
        message=lambda: f"{len(sink.ids())} of 25 arrived; db: {daemon.delivery_states()}",
    )
    await wait_for(lambda: daemon.delivery_states() == {"delivered": 25})


@pytest.mark.slow
async def test_attempt_in_flight_at_sigkill_is_made_again(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    """Nothing on disk says "in flight": after a crash the delivery is simply due again."""
    daemon = await start_daemon(**source_and_sink(downstream.url(), timeout="60s"))
    downstream.reply(Reply(hang=True))
    status, answer = await post(
        client, daemon.url("/hooks/load"), b'{"id": "evt_hang", "type": "load.test"}'
    )
    assert status == 202, answer
    await downstream.wait_count(1)  # the first attempt is in flight, and hangs
    daemon.kill()
    await daemon.start()

    first, second = await downstream.wait_count(2)
    assert first.webhook_id == second.webhook_id == answer["id"]
    assert second.body == first.body
    await wait_for(lambda: daemon.delivery_rows(answer["id"])[0][1] == "delivered")


async def test_sigterm_lets_an_attempt_in_flight_finish(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(**source_and_sink(downstream.url()))
    downstream.reply(Reply(delay=1.0))
    status, answer = await post(
        client, daemon.url("/hooks/load"), b'{"id": "evt_slow", "type": "load.test"}'
    )
    assert status == 202, answer
    await downstream.wait_count(1)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit() == 0
    # The answer came within the grace period and its result was recorded.
    assert daemon.delivery_rows(answer["id"]) == [("sink", "delivered", 1, 200)]
    assert len(downstream.requests) == 1
