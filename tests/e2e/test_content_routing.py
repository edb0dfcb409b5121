"""End to end: content filters route by header and by body, transforms reshape what a
real receiver gets, and a broken transform is fixed by a reload and a retry."""

from __future__ import annotations

import json
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Daemon, Downstream, post, run_cli, to_toml, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]

# The README's version question: consumers of version 2 get it, by header or by body.
VERSION_2 = {"$or": [{"headers": {"X-Webhook-Version": "2"}}, {"body": {"version": "2.0"}}]}
RESHAPE_V2 = '{body: {event: .body.type, order: .body.data.id}, headers: {"X-Schema": "v2"}}'


def routes(downstream: Downstream, broken: str) -> dict[str, Any]:
    return {
        "sources": {"shop": {"path": "/hooks/shop", "event_type": "json:type"}},
        "destinations": {
            "v2": {
                "url": downstream.url("/v2"),
                "sources": ["shop"],
                "filter": json.dumps(VERSION_2),  # as JSON text
                "transform": RESHAPE_V2,
            },
            "v1": {
                "url": downstream.url("/v1"),
                "sources": ["shop"],
                "filter": {"$not": VERSION_2},  # as a table
            },
            "audit": {
                "url": downstream.url("/audit"),
                "sources": ["shop"],
                "filter": {"body": {"type": {"$startsWith": "audit."}}},
                "transform": broken,
            },
        },
    }


async def message(client: aiohttp.ClientSession, daemon: Daemon, message_id: str) -> Any:
    async with client.get(daemon.admin_url(f"/api/v1/messages/{message_id}")) as response:
        assert response.status == 200
        return await response.json()


async def test_filters_route_and_transforms_reshape(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(**routes(downstream, broken="{body: .body}"))
    order = {"type": "order.paid", "data": {"id": "ord_9"}}

    status, by_header = await post(
        client, daemon.url("/hooks/shop"), json.dumps(order), {"X-Webhook-Version": "2"}
    )
    assert status == 202
    status, by_body = await post(
        client, daemon.url("/hooks/shop"), json.dumps({**order, "version": "2.0"})
    )
    assert status == 202
    status, plain = await post(client, daemon.url("/hooks/shop"), json.dumps(order))
    assert status == 202
    await downstream.wait_count(3)

    paths = {r.webhook_id: r.path for r in downstream.requests}
    assert paths == {by_header["id"]: "/v2", by_body["id"]: "/v2", plain["id"]: "/v1"}
    (v2,) = downstream.for_id(by_header["id"])
    assert json.loads(v2.body) == {"event": "order.paid", "order": "ord_9"}
    assert v2.headers["X-Schema"] == "v2"
    (v1,) = downstream.for_id(plain["id"])
    assert json.loads(v1.body) == order  # no transform: byte for byte
    assert "X-Schema" not in v1.headers

    shown = await message(client, daemon, by_header["id"])
    assert [d["destination"] for d in shown["deliveries"]] == ["v2"]
    assert sorted((s["destination"], s["reason"]) for s in shown["skipped"]) == [
        ("audit", "filter"),
        ("v1", "filter"),
    ]
    assert json.loads(shown["body"]) == order  # the original body stays stored

    # The CLI shows what the transform makes of a stored message, without sending it.
    ran = run_cli(
        "transform", "-c", str(daemon.config_path), "--destination", "v2", "--message",
        plain["id"], "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    shown_request = json.loads(ran.stdout)
    assert json.loads(shown_request["body"]) == {"event": "order.paid", "order": "ord_9"}
    assert shown_request["headers"]["X-Schema"] == "v2"
    assert len(downstream.requests) == 3  # nothing was sent

    # A replay goes where the message would go now: its filters are applied again.
    async with client.post(
        daemon.admin_url(f"/api/v1/messages/{by_body['id']}/replay")
    ) as response:
        assert response.status == 200
        replayed = await response.json()
    assert [d["destination"] for d in replayed["deliveries"]] == ["v2"]


async def transform_failures(client: aiohttp.ClientSession, daemon: Daemon) -> dict[str, float]:
    async with client.get(daemon.admin_url("/metrics")) as response:
        text = await response.text()
    return {
        sample.labels["destination"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "hookgate_transform_failures_total"
    }


async def test_a_broken_transform_is_fixed_by_reload_and_retry(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(**routes(downstream, broken='{body: (.body.n + "x")}'))
    status, accepted = await post(
        client, daemon.url("/hooks/shop"), json.dumps({"type": "audit.login", "n": 1})
    )
    assert status == 202

    async def dead_delivery() -> Any:
        shown = await message(client, daemon, accepted["id"])
        audit = [d for d in shown["deliveries"] if d["destination"] == "audit"]
        return audit[0] if audit and audit[0]["state"] == "dead" else None

    dead = await wait_for(dead_delivery)
    assert dead["dead_reason"] == "transform"
    assert dead["last_error"] == (
        'transform failed: jq: number (1) and string ("x") cannot be added'
    )
    assert dead["attempt_log"][0]["error"] == dead["last_error"]
    assert await transform_failures(client, daemon) == {"audit": 1.0}
    tried = run_cli(
        "transform", "-c", str(daemon.config_path), "--destination", "audit", "--message",
        accepted["id"],
    )  # fmt: skip
    assert tried.returncode == 1
    assert "cannot be added" in tried.stderr

    fixed = routes(downstream, broken="{body: {n: (.body.n + 1)}}")
    daemon.config_path.write_text(to_toml({**daemon.config, **fixed}), encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    await wait_for(lambda: any(e.get("event") == "config.reloaded" for e in daemon.log_events()))
    retried = run_cli("retry", "-c", str(daemon.config_path), str(dead["id"]))
    assert retried.returncode == 0, retried.stderr

    def audit_requests() -> list[Any]:
        return [r for r in downstream.requests if r.path == "/audit"]

    (got,) = await wait_for(audit_requests)
    assert json.loads(got.body) == {"n": 2}
