"""Operating the real daemon: metrics, alerts, and a live reload under load."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
from collections.abc import Awaitable, Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from .conftest import Daemon, Downstream, Reply, post, to_toml, wait_for

ALERT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLc4v"


def sign(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={digest}"}


def hmac_source(*secrets: str) -> dict[str, object]:
    return {
        "path": "/hooks/shop",
        "event_type": "json:type",
        "verify": {
            "scheme": "hmac",
            "header": "X-Signature",
            "prefix": "sha256=",
            "secrets": list(secrets),
        },
    }


async def scrape(
    client: aiohttp.ClientSession, daemon: Daemon
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with client.get(daemon.admin_url("/metrics")) as response:
        assert response.status == 200
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_parse_and_move_with_the_traffic(
    start_daemon: Callable[..., Awaitable[Daemon]],
    downstream: Downstream,
    client: aiohttp.ClientSession,
) -> None:
    downstream.reply(Reply(status=500))  # the first attempt fails, its retry succeeds
    daemon = await start_daemon(
        sources={"shop": hmac_source("s3cret")},
        destinations={
            "orders": {
                "url": downstream.url(),
                "sources": ["shop"],
                "initial_backoff": "50ms",
                "max_backoff": "100ms",
            }
        },
    )
    before = await scrape(client, daemon)
    for i in range(3):
        body = json.dumps({"type": "order.created", "n": i}).encode()
        status, _ = await post(client, daemon.url("/hooks/shop"), body, sign("s3cret", body))
        assert status == 202
    status, _ = await post(client, daemon.url("/hooks/shop"), b"{}", sign("wrong", b"{}"))
    assert status == 401
    await downstream.wait_count(4)
    after = await wait_for(
        lambda: _delivered(client, daemon, 3),
        message="3 deliveries counted as delivered and none pending",
    )

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("hookgate_webhooks_received_total", source="shop") == 3
    assert moved("hookgate_webhooks_rejected_total", source="shop", reason="invalid_signature") == 1
    assert (
        moved("hookgate_delivery_attempts_total", destination="orders", outcome="http_error") == 1
    )
    assert moved("hookgate_delivery_attempts_total", destination="orders", outcome="success") == 3
    assert moved("hookgate_deliveries_delivered_total", destination="orders") == 3
    assert moved("hookgate_delivery_attempt_seconds_count", destination="orders") == 4
    assert after[("hookgate_queue_pending", (("destination", "orders"),))] == 0
    assert after[("hookgate_circuit_state", (("destination", "orders"),))] == 0
    assert moved("hookgate_group_commit_webhooks_sum") == 3


async def _delivered(
    client: aiohttp.ClientSession, daemon: Daemon, count: int
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    """A scrape that counts ``count`` deliveries and shows the queue drained.

    The queue gauges are read from the store when a scrape starts and the counters
    when it ends, so the scrape that first counts the last delivery may still show
    it pending: wait for one that shows both.
    """
    samples = await scrape(client, daemon)
    delivered = samples.get(("hookgate_deliveries_delivered_total", (("destination", "orders"),)))
    pending = samples.get(("hookgate_queue_pending", (("destination", "orders"),)))
    return samples if (delivered or 0) >= count and pending == 0 else None


async def test_alerts_are_signed_webhooks_through_the_outbox(
    start_daemon: Callable[..., Awaitable[Daemon]],
    downstream_factory: Callable[..., Awaitable[Downstream]],
    client: aiohttp.ClientSession,
) -> None:
    broken = await downstream_factory()
    broken.default = Reply(status=404)
    ops = await downstream_factory()
    daemon = await start_daemon(
        sources={"shop": {"path": "/hooks/shop", "event_type": "json:type"}},
        destinations={
            "orders": {
                "url": broken.url(),
                "sources": ["shop"],
                "max_attempts": 1,
                "circuit_failures": 2,
                "circuit_cooldown": "1h",
            }
        },
        alerts={"url": ops.url("/ops"), "secret": ALERT_SECRET, "interval": "200ms"},
    )
    ids = []
    for i in range(2):
        status, answer = await post(
            client, daemon.url("/hooks/shop"), json.dumps({"type": "x", "n": i})
        )
        assert status == 202
        ids.append(answer["id"])
    alerts = await wait_for(lambda: _alert_types(ops) >= {"delivery.dead", "circuit.opened"})
    assert alerts
    verifier = Webhook(ALERT_SECRET)
    seen_dead: list[str] = []
    for request in ops.requests:
        event = verifier.verify(request.body, dict(request.headers))
        assert request.headers["Hookgate-Source"] == "hookgate"
        if event["type"] == "delivery.dead":
            assert event["data"]["destination"] == "orders"
            seen_dead += event["data"]["message_ids"]
        if event["type"] == "circuit.opened":
            assert event["data"] == {"destination": "orders"}
    assert sorted(seen_dead) == sorted(ids)

    # Alerts are messages like any other: visible and retryable. Each is recorded
    # delivered once its answer is back, a moment after the receiver got it.
    def delivered_alerts() -> int:
        states = dict(
            daemon.query(
                "SELECT destination, count(*) FROM deliveries WHERE state = 'delivered' GROUP BY 1"
            )
        )
        return int(states.get("_alerts", 0))

    await wait_for(
        lambda: delivered_alerts() == len(ops.requests),
        message=lambda: f"{delivered_alerts()} alerts delivered, {len(ops.requests)} received",
    )
    assert len({r.headers["webhook-id"] for r in ops.requests}) == len(ops.requests)


def _alert_types(ops: Downstream) -> set[str]:
    return {json.loads(r.body)["type"] for r in ops.requests}


async def test_reload_under_load_drops_and_loses_nothing(
    start_daemon: Callable[..., Awaitable[Daemon]],
    downstream_factory: Callable[..., Awaitable[Downstream]],
    client: aiohttp.ClientSession,
) -> None:
    kept = await downstream_factory()
    removed = await downstream_factory()
    added = await downstream_factory()
    daemon = await start_daemon(
        sources={"shop": hmac_source("old-secret")},
        destinations={
            "kept": {"url": kept.url(), "sources": ["shop"]},
            "removed": {"url": removed.url(), "sources": ["shop"]},
        },
    )
    accepted: list[str] = []
    failures: list[str] = []
    secret = {"current": "old-secret"}
    stop = asyncio.Event()

    async def load() -> None:
        n = 0
        while not stop.is_set():
            body = json.dumps({"type": "order.created", "n": n}).encode()
            n += 1
            try:
                status, answer = await post(
                    client, daemon.url("/hooks/shop"), body, sign(secret["current"], body)
                )
            except aiohttp.ClientError as exc:
                failures.append(repr(exc))
                continue
            if status == 202:
                accepted.append(answer["id"])
            else:
                failures.append(f"{status} {answer}")

    senders = [asyncio.create_task(load()) for _ in range(4)]
    await wait_for(lambda: len(accepted) >= 100)

    # Add a destination, remove another, rotate the source secret: all at once.
    new_config = dict(daemon.config)
    new_config["sources"] = {"shop": hmac_source("new-secret", "old-secret")}
    new_config["destinations"] = {
        "kept": {"url": kept.url(), "sources": ["shop"]},
        "added": {"url": added.url(), "sources": ["shop"]},
    }
    daemon.config_path.write_text(to_toml(new_config), encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    await wait_for(lambda: any(e.get("event") == "config.reloaded" for e in daemon.log_events()))
    secret["current"] = "new-secret"
    reloaded_at = len(accepted)
    await wait_for(lambda: len(accepted) >= reloaded_at + 100)
    stop.set()
    await asyncio.gather(*senders)

    assert failures == []
    await wait_for(lambda: kept.ids() >= set(accepted), message="every accepted id at 'kept'")
    # Everything accepted after the reload goes to the added destination too.
    await wait_for(lambda: added.ids() >= set(accepted[reloaded_at:]))
    assert removed.ids() <= set(accepted)
    # What the removed destination had not received stays in the store, pending and visible.
    rows = daemon.query(
        "SELECT d.message_id, d.state FROM deliveries d WHERE d.destination = 'removed'"
    )
    states = {f"msg_{number:016x}": state for number, state in rows}
    assert states, "the removed destination had deliveries before the reload"
    for message_id, state in states.items():
        assert message_id in removed.ids() or state == "pending", (message_id, state)
