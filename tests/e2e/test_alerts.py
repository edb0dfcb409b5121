"""The alert rules on the real daemon: real traffic (or silence) in, signed alerts out.

For each rule: the alert arrives at a receiver, signed (checked with the official
Standard Webhooks library), with the figures that triggered it; then it clears; and
after a few more evaluations each of the two was sent exactly once. Windows and the
evaluation interval are short so that each test takes seconds; nothing asserts how
long anything took.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from .conftest import Daemon, Downstream, Reply, post, wait_for

pytestmark = pytest.mark.slow

ALERT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLc4v"
SOURCE_SECRET = "shop-secret"


def alerts(ops: Downstream, **settings: object) -> dict[str, object]:
    return {"url": ops.url("/ops"), "secret": ALERT_SECRET, "interval": "200ms", **settings}


def signed(body: bytes, secret: str = SOURCE_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={digest}"}


SHOP = {
    "path": "/hooks/shop",
    "event_type": "json:type",
    "verify": {
        "scheme": "hmac",
        "header": "X-Signature",
        "prefix": "sha256=",
        "secrets": [SOURCE_SECRET],
    },
}


async def send(client: aiohttp.ClientSession, daemon: Daemon, n: int = 0) -> int:
    body = json.dumps({"type": "order.created", "n": n}).encode()
    status, _ = await post(client, daemon.url("/hooks/shop"), body, signed(body))
    return status


def received(ops: Downstream, kind: str) -> list[dict[str, Any]]:
    """The alerts of ``kind`` the receiver got, each verified as Standard Webhooks signs."""
    verifier = Webhook(ALERT_SECRET)
    events = []
    for request in ops.requests:
        event: dict[str, Any] = verifier.verify(request.body, dict(request.headers))
        assert request.headers["Hookgate-Source"] == "hookgate"
        if event["type"] == kind:
            events.append(event)
    return events


async def arrival(ops: Downstream, kind: str) -> dict[str, Any]:
    """Wait for the first alert of ``kind``; return its data."""
    events = await wait_for(lambda: received(ops, kind), message=f"a {kind} alert")
    data: dict[str, Any] = events[0]["data"]
    return data


async def evaluations(client: aiohttp.ClientSession, daemon: Daemon) -> float:
    async with client.get(daemon.admin_url("/metrics")) as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hookgate_alert_evaluations_total":
                return sample.value
    return 0.0


async def after_more_evaluations(
    client: aiohttp.ClientSession,
    daemon: Daemon,
    count: int = 3,
    meanwhile: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Wait until the rules were evaluated ``count`` more times (running ``meanwhile``
    between looks): what they were going to send by then is in the outbox."""
    start = await evaluations(client, daemon)

    async def done() -> bool:
        if meanwhile is not None:
            await meanwhile()
        return await evaluations(client, daemon) >= start + count

    await wait_for(done, interval=0.1, message="more alert evaluations")


async def sent_exactly_once(
    client: aiohttp.ClientSession, daemon: Daemon, ops: Downstream, *kinds: str
) -> None:
    """Each of ``kinds`` was queued once and arrived once, a few evaluations later."""
    stored = daemon.query(
        "SELECT event_type, count(*) FROM messages WHERE source = 'hookgate' GROUP BY 1"
    )
    counts = dict(stored)
    assert {kind: counts.get(kind) for kind in kinds} == dict.fromkeys(kinds, 1)
    total = sum(counts.values())
    await wait_for(lambda: len(ops.requests) >= total, message="every alert delivered")
    assert {kind: len(received(ops, kind)) for kind in kinds} == dict.fromkeys(kinds, 1)


async def test_failure_rate_alerts_once_and_recovers_once(
    start_daemon: Callable[..., Awaitable[Daemon]],
    downstream_factory: Callable[..., Awaitable[Downstream]],
    client: aiohttp.ClientSession,
) -> None:
    broken = await downstream_factory()
    broken.default = Reply(status=500)
    ops = await downstream_factory()
    daemon = await start_daemon(
        sources={"shop": SHOP},
        destinations={
            "orders": {
                "url": broken.url(),
                "sources": ["shop"],
                "max_attempts": 1,
                "circuit_failures": 1000,
            }
        },
        alerts=alerts(ops, failure_rate=0.5, failure_window="2s", failure_min_attempts=4),
    )
    for i in range(4):
        assert await send(client, daemon, i) == 202
    failing = await arrival(ops, "destination.failing")
    assert failing["destination"] == "orders"
    assert failing["rate"] == 1.0
    assert failing["attempts"] == failing["failures"] >= 4
    assert (failing["window_s"], failing["threshold"], failing["min_attempts"]) == (2.0, 0.5, 4)
    assert received(ops, "destination.recovered") == []

    broken.default = Reply(status=200)

    async def recovered() -> list[dict[str, Any]]:
        await send(client, daemon)
        return received(ops, "destination.recovered")

    await wait_for(recovered, interval=0.1, message="destination.recovered")
    data = received(ops, "destination.recovered")[0]["data"]
    assert data["destination"] == "orders"
    assert data["attempts"] > 0 and data["rate"] <= 0.5
    await after_more_evaluations(client, daemon, meanwhile=lambda: send(client, daemon))
    await sent_exactly_once(client, daemon, ops, "destination.failing", "destination.recovered")


async def test_a_silent_source_alerts_once_and_resumes_once(
    start_daemon: Callable[..., Awaitable[Daemon]],
    downstream_factory: Callable[..., Awaitable[Downstream]],
    client: aiohttp.ClientSession,
) -> None:
    ops = await downstream_factory()
    quiet = {"path": "/hooks/quiet", "event_type": "json:type"}
    daemon = await start_daemon(
        sources={"shop": {**SHOP, "expect_every": "1s"}, "quiet": quiet},
        alerts=alerts(ops),
    )
    silent = await arrival(ops, "source.silent")
    assert silent["source"] == "shop"
    assert silent["expect_every_s"] == 1.0
    assert silent["silent_for_s"] > 1.0
    assert silent["silent_since"].endswith("Z")
    assert received(ops, "source.resumed") == []

    assert await send(client, daemon) == 202
    resumed = await arrival(ops, "source.resumed")
    assert resumed["source"] == "shop"
    assert resumed["silent_since"] == silent["silent_since"]
    assert resumed["silent_for_s"] > 1.0 and resumed["resumed_at"] > resumed["silent_since"]
    # Webhooks keep coming while the rules run on: no new silence.
    await after_more_evaluations(client, daemon, meanwhile=lambda: send(client, daemon))
    await sent_exactly_once(client, daemon, ops, "source.silent", "source.resumed")
    # Only the source that set expect_every is watched.
    assert all(e["data"]["source"] == "shop" for e in received(ops, "source.silent"))


async def test_a_traffic_spike_alerts_once_and_clears_once(
    start_daemon: Callable[..., Awaitable[Daemon]],
    downstream_factory: Callable[..., Awaitable[Downstream]],
    client: aiohttp.ClientSession,
) -> None:
    ops = await downstream_factory()
    daemon = await start_daemon(
        sources={"shop": SHOP},
        alerts=alerts(
            ops,
            traffic_window="2s",
            traffic_baseline="1m",
            traffic_spike_factor=5,
            traffic_floor=20,
        ),
    )

    async def steady() -> None:
        """The usual traffic, a few webhooks a second, from start to end."""
        while True:
            await send(client, daemon)
            await asyncio.sleep(0.2)

    usual = asyncio.create_task(steady())
    try:
        # Two full windows of usual traffic: the baseline is set, and nothing fired.
        await after_more_evaluations(client, daemon, count=20)
        assert received(ops, "source.traffic_spike") == []
        statuses = await asyncio.gather(*(send(client, daemon, i) for i in range(150)))
        assert set(statuses) == {202}
        spike = await arrival(ops, "source.traffic_spike")
        assert spike["source"] == "shop"
        assert (spike["window_s"], spike["factor"], spike["floor"]) == (2.0, 5.0, 20.0)
        # It fires at the first evaluation that sees the condition: maybe mid-burst.
        assert spike["count"] >= spike["floor"] * spike["window_s"]
        assert spike["baseline"] > 0
        assert spike["rate"] >= 20 and spike["rate"] > 5 * spike["baseline"]

        normal = await arrival(ops, "source.traffic_normal")
        assert normal["source"] == "shop"
        assert normal["rate"] <= 5 * normal["baseline"] or normal["rate"] < 20
        await after_more_evaluations(client, daemon)
    finally:
        usual.cancel()
        await asyncio.gather(usual, return_exceptions=True)
    await sent_exactly_once(client, daemon, ops, "source.traffic_spike", "source.traffic_normal")


# With ingest processes, each signature failure is reported by a child to the daemon.
@pytest.mark.parametrize("ingest_processes", [0, 2])
async def test_rejected_signatures_alert_once_and_clear_once(
    start_daemon: Callable[..., Awaitable[Daemon]],
    downstream_factory: Callable[..., Awaitable[Downstream]],
    client: aiohttp.ClientSession,
    ingest_processes: int,
) -> None:
    ops = await downstream_factory()
    daemon = await start_daemon(
        server={"ingest_processes": ingest_processes},
        sources={"shop": SHOP},
        alerts=alerts(ops, signature_failures=5, signature_window="2s"),
    )
    assert await send(client, daemon) == 202  # a good signature does not count
    for i in range(6):
        body = json.dumps({"type": "probe", "n": i}).encode()
        status, answer = await post(
            client, daemon.url("/hooks/shop"), body, signed(body, "guessed")
        )
        assert (status, answer["error"]) == (401, "invalid_signature")
    failures = await arrival(ops, "source.signature_failures")
    assert failures["source"] == "shop"
    assert failures["count"] >= 5
    assert (failures["window_s"], failures["threshold"]) == (2.0, 5)

    # Nothing more is sent; once the failures leave the window, it clears.
    normal = await arrival(ops, "source.signature_normal")
    assert normal["source"] == "shop" and normal["count"] < 5
    await after_more_evaluations(client, daemon)
    await sent_exactly_once(
        client, daemon, ops, "source.signature_failures", "source.signature_normal"
    )
