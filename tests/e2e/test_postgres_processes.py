"""End to end: three ``hookgate serve`` processes share one PostgreSQL database.

Each daemon is the real CLI in a subprocess, on its own ports, with ``storage.url``
naming one database of the session's private server. One of them is SIGKILLed and
restarted under load: every acknowledged webhook must still reach the receiver, no
two processes may attempt the same delivery at once, an ordered destination keeps
its order across a kill of the process that holds it, and a rate limit is the
destination's total across the processes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psycopg
import pytest

from hookgate.store.postgres import QUERIES

from .conftest import Daemon, Downstream, post, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]

# Short, so that a killed process's deliveries come back soon; renewed every third of it.
LEASE = "5s"
RETRIES = {"initial_backoff": "100ms", "max_backoff": "500ms", "timeout": "5s"}
CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


def shared_config(pg_url: str, sink: str, **destination: Any) -> dict[str, Any]:
    return {
        "storage": {"url": pg_url, "lease": LEASE},
        "delivery": {**RETRIES, "max_attempts": 1000},
        "sources": {
            "load": {"path": "/hooks/load", "event_type": "json:type", "event_id": "json:id"}
        },
        "destinations": {"sink": {"url": sink, "sources": ["load"], **destination}},
    }


async def start_three(start_daemon: StartDaemon, config: dict[str, Any]) -> list[Daemon]:
    return [await start_daemon(**config) for _ in range(3)]


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql.encode())
        return cursor.fetchall() if cursor.description else []


class Provider:
    """Clients that send each event round-robin to the daemons until one answers 2xx."""

    def __init__(self, daemons: list[Daemon], total: int) -> None:
        self.daemons = daemons
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(total):
            self.queue.put_nowait(n)
        self.acked: dict[str, str] = {}  # event id → message id from the 2xx
        self.retries = 0

    async def run(self, clients: int) -> None:
        connector = aiohttp.TCPConnector(limit=clients)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._client(session) for _ in range(clients)))

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self.queue.empty():
            await self.send(session, self.queue.get_nowait())

    async def send(self, session: aiohttp.ClientSession, n: int) -> None:
        event_id = f"evt_{n:05d}"
        body = json.dumps({"id": event_id, "type": "load.test", "n": n}).encode()
        for attempt in itertools.count():
            daemon = self.daemons[(n + attempt) % len(self.daemons)]
            try:
                status, answer = await post(session, daemon.url("/hooks/load"), body)
            except CONNECTION_ERRORS:
                status, answer = 0, {}
            if status in (200, 202):
                self.acked[event_id] = answer["id"]
                return
            # 0: no answer (that daemon died mid-request); 503: shutting down.
            assert status in (0, 503), (status, answer)
            self.retries += 1
            await asyncio.sleep(0.02)


def overlapping_attempts(pg_url: str) -> int:
    """Pairs of recorded attempts of one delivery whose times overlap."""
    return int(
        rows(
            pg_url,
            "SELECT count(*) FROM attempts a JOIN attempts b"
            " ON b.delivery_id = a.delivery_id AND b.id > a.id"
            " WHERE b.started_at < a.started_at + a.duration_ms / 1000"
            " AND a.started_at < b.started_at + b.duration_ms / 1000",
        )[0][0]
    )


@pytest.mark.slow  # 10,000 webhooks through three daemons, one killed several times
async def test_three_processes_lose_nothing_across_sigkills(
    start_daemon: StartDaemon, downstream: Downstream, postgres_url: str
) -> None:
    total, kill_every, concurrency = 10_000, 2_000, 16
    daemons = await start_three(
        start_daemon, shared_config(postgres_url, downstream.url(), concurrency=concurrency)
    )
    provider = Provider(daemons, total)
    sending = asyncio.create_task(provider.run(48))
    victim = daemons[0]
    kills = 0
    for threshold in range(kill_every, total, kill_every):
        await wait_for(
            lambda t=threshold: len(provider.acked) >= t or sending.done(),  # type: ignore[misc]
            120,
            message=lambda: f"{len(provider.acked)} acknowledged",
        )
        if sending.done():
            break
        victim.kill()
        kills += 1
        await victim.start()
    await sending
    assert kills >= 3, f"the load finished before {kills + 1} kills; raise the total"
    assert len(provider.acked) == total

    acknowledged = set(provider.acked.values())

    def missing() -> set[str]:
        return acknowledged - downstream.ids()

    await wait_for(lambda: not missing(), 120, message=lambda: f"{len(missing())} missing")
    received = [r.webhook_id for r in downstream.requests]
    duplicates = len(received) - len(set(received))
    overlaps = overlapping_attempts(postgres_url)
    print(
        f"\n3 processes: {total} events, {kills} SIGKILLs, {provider.retries} client retries,"
        f" {len(received)} POSTs for {len(set(received))} ids, {duplicates} duplicates,"
        f" {overlaps} overlapping attempts"
    )
    assert missing() == set()
    assert overlaps == 0
    # Duplicates only from kills: at most what the killed process had in flight.
    assert duplicates <= kills * concurrency
    assert rows(postgres_url, "SELECT count(*) FROM messages")[0][0] == total
    # The counts (sums of the triggers' rows of changes) are the rows', kills and all,
    # once the last outcome is committed.
    pending = "SELECT count(*) FROM deliveries WHERE state = 'pending'"
    await wait_for(lambda: rows(postgres_url, pending)[0][0] == 0, 60)
    by_rows = "SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2"
    counts = rows(postgres_url, QUERIES["select_delivery_counts"])
    assert sorted(counts) == sorted(rows(postgres_url, by_rows))
    assert rows(postgres_url, QUERIES["select_message_count"]) == [(total,)]
    # Every process delivered a share: the claims were shared, not one process's.
    attempted_by = rows(postgres_url, "SELECT count(DISTINCT attempted_by) FROM attempts")
    assert attempted_by[0][0] >= 3
    for daemon in daemons:
        assert "Traceback" not in daemon.stderr()


def order_holder(daemons: list[Daemon]) -> Daemon | None:
    """The running daemon whose log says it took the ordered destination last."""
    holders = [
        d
        for d in daemons
        if d.running and any(e.get("event") == "store.order_taken" for e in d.log_events()[-200:])
    ]
    return holders[-1] if len(holders) == 1 else None


@pytest.mark.slow  # sequential sends, an ordered line, a kill of its holder
async def test_ordered_destination_keeps_order_across_a_kill_of_its_holder(
    start_daemon: StartDaemon, downstream: Downstream, postgres_url: str
) -> None:
    total = 300
    daemons = await start_three(
        start_daemon, shared_config(postgres_url, downstream.url(), ordered=True)
    )
    provider = Provider(daemons, total)
    async with aiohttp.ClientSession() as session:
        # One at a time, so that the store's order is the sending order.
        for n in range(total // 2):
            await provider.send(session, n)
        await downstream.wait_count(total // 4, timeout=60)
        holder = await wait_for(lambda: order_holder(daemons), 30, message="no single holder")
        holder.kill()
        for n in range(total // 2, total):
            await provider.send(session, n)
        await holder.start()
    acknowledged = set(provider.acked.values())
    await wait_for(lambda: acknowledged <= downstream.ids(), 120, message="not all delivered")

    first_arrivals: list[int] = []
    seen: set[str] = set()
    for request in downstream.requests:
        if request.webhook_id not in seen:
            seen.add(request.webhook_id)
            first_arrivals.append(json.loads(request.body)["n"])
    violations = sum(1 for a, b in itertools.pairwise(first_arrivals) if b < a)
    print(f"\nordered, 3 processes, holder killed: {len(downstream.requests)} POSTs")
    assert violations == 0, first_arrivals
    assert sorted(first_arrivals) == list(range(total))


@pytest.mark.slow  # 200 deliveries at 50/s
async def test_rate_limit_is_the_total_across_processes(
    start_daemon: StartDaemon, downstream: Downstream, postgres_url: str
) -> None:
    total, rate = 200, 50
    daemons = await start_three(
        start_daemon,
        shared_config(postgres_url, downstream.url(), rate_limit=rate, concurrency=64),
    )
    provider = Provider(daemons, total)
    await provider.run(24)
    await downstream.wait_count(total, timeout=60)
    arrivals = sorted(r.at for r in downstream.requests)
    busiest = max(
        sum(1 for t in arrivals[i:] if t < start + 1.0) for i, start in enumerate(arrivals)
    )
    by_process = Counter(row[0] for row in rows(postgres_url, "SELECT attempted_by FROM attempts"))
    print(f"\nrate {rate}/s, 3 processes: busiest second {busiest}, by process {by_process}")
    assert busiest <= rate
    assert len(by_process) >= 2  # the limit was shared, not met by one process alone
