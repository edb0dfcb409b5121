"""End to end: `hookgate migrate --to postgresql://...` moves a SQLite daemon's outbox.

A real daemon on SQLite accepts webhooks that end delivered, dead and pending, one
destination is paused through the admin API, and one skips every message (its content
filter says no). While it runs, migrate refuses (its lock
file); once it stopped, migrate copies everything and prints the counts; a second run
copies nothing again; and a daemon on the PostgreSQL database then delivers what was
pending, and keeps the pause.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psycopg

from .conftest import Daemon, Downstream, Reply, post, run_cli, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]
TOKEN = "migrate-test-token"


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql.encode())
        return cursor.fetchall() if cursor.description else []


async def test_migrate_copies_a_stopped_sqlite_daemon_into_postgresql(
    start_daemon: StartDaemon,
    downstream_factory: Callable[..., Awaitable[Downstream]],
    client: aiohttp.ClientSession,
    postgres_url: str,
) -> None:
    sink, gone, later = [await downstream_factory() for _ in range(3)]
    gone.default = Reply(status=410)
    later.default = Reply(status=503)
    settings: dict[str, Any] = {
        "admin": {"token": TOKEN},
        "delivery": {"initial_backoff": "1h", "max_backoff": "1h", "circuit_failures": 1000},
        "sources": {"load": {"path": "/hooks/load", "event_type": "json:type"}},
        "destinations": {
            name: {"url": server.url(), "sources": ["load"]}
            for name, server in (("sink", sink), ("gone", gone), ("later", later), ("held", sink))
        },
    }
    settings["destinations"]["other"] = {
        "url": sink.url(),
        "sources": ["load"],
        "filter": {"body": {"type": "other"}},
    }
    sqlite = await start_daemon(**settings)
    async with client.post(
        sqlite.admin_url("/api/v1/destinations/held/pause"),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 200
    for n in range(20):
        status, _ = await post(client, sqlite.url("/hooks/load"), json.dumps({"type": "t", "n": n}))
        assert status == 202
    await sink.wait_count(20)
    await later.wait_count(20)
    await wait_for(lambda: sqlite.delivery_states() == {"delivered": 20, "dead": 20, "pending": 40})

    cwd = sqlite.folder
    refused = run_cli("migrate", "--to", postgres_url, "-c", str(sqlite.config_path), cwd=cwd)
    assert refused.returncode == 1
    assert "in use by another hookgate" in refused.stderr
    assert rows(postgres_url, "SELECT count(*) FROM pg_tables WHERE tablename = 'messages'") == [
        (0,)
    ]

    assert await sqlite.stop() == 0
    first = run_cli("migrate", "--to", postgres_url, "-c", str(sqlite.config_path), cwd=cwd)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[1:] == [
        "messages: 20 copied, 0 already there",
        "deliveries: 80 copied (pending 40, delivered 20, dead 20)",
        "attempts: 60 copied",
        "paused destinations: 1",
    ]
    again = run_cli("migrate", "--to", postgres_url, "-c", str(sqlite.config_path), cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:3] == [
        "messages: 0 copied, 20 already there",
        "deliveries: 0 copied (pending 0, delivered 0, dead 0)",
    ]
    assert rows(postgres_url, "SELECT count(*) FROM messages") == [(20,)]
    skipped = rows(postgres_url, "SELECT DISTINCT skipped FROM messages")
    assert [json.loads(s) for (s,) in skipped] == [[{"destination": "other", "reason": "filter"}]]
    copied = rows(postgres_url, "SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2")
    assert sorted(copied) == sorted(
        [
            ("sink", "delivered", 20),
            ("gone", "dead", 20),
            ("later", "pending", 20),
            ("held", "pending", 20),
        ]
    )

    # The copy runs: "later" now answers, and its pending deliveries (made due) go out;
    # "held" stays paused.
    later.default = Reply(status=200)
    rows(postgres_url, "UPDATE deliveries SET next_attempt_at = 0 WHERE state = 'pending'")
    postgres = await start_daemon(**settings, storage={"url": postgres_url})
    await later.wait_count(40)
    await wait_for(
        lambda: (
            rows(postgres_url, "SELECT count(*) FROM deliveries WHERE state = 'pending'") == [(20,)]
        )
    )
    assert (await postgres.readyz())["destinations"]["held"]["state"] == "paused"
    assert {r.webhook_id for r in later.requests[20:]} == {
        r.webhook_id for r in later.requests[:20]
    }
