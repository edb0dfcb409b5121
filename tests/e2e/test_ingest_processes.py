"""The ingest processes' guarantees, on the real daemon with ``server.ingest_processes``.

- A 2xx answered by an ingest process is committed: the daemon SIGKILLed under load
  keeps every webhook that got one.
- An ingest process killed is restarted, and the port keeps answering meanwhile (even
  with a single ingest process: the daemon holds the listening socket).
- SIGTERM stops the daemon and its ingest processes; so does SIGKILL. A request
  waiting for its commit when SIGTERM comes still gets its 2xx.
- A port in use fails the start before any ingest process runs.
- A reload reaches the ingest processes (a rotated secret).
- /metrics counts received, duplicate and rejected webhooks (by reason) once each,
  whichever process answered; /readyz says when an ingest process is not serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import HOST, Daemon, free_port, post, run_cli, to_toml, wait_for
from .test_delivery_processes import alive
from .test_store_unavailable import exclusive_lock

StartDaemon = Callable[..., Awaitable[Daemon]]
SECRET = "ingest-secret"


def source(secret: str = SECRET) -> dict[str, Any]:
    return {
        "path": "/hooks/shop",
        "event_type": "json:type",
        "event_id": "json:id",
        "verify": {
            "scheme": "hmac",
            "header": "X-Signature",
            "prefix": "sha256=",
            "secrets": [secret],
        },
    }


def config(processes: int = 2, secret: str = SECRET) -> dict[str, Any]:
    return {"server": {"ingest_processes": processes}, "sources": {"shop": source(secret)}}


def signed(payload: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Signature": f"sha256={digest}"}


async def send(
    client: aiohttp.ClientSession, daemon: Daemon, n: int, secret: str = SECRET
) -> tuple[int, dict[str, Any]]:
    body, headers = signed({"id": f"evt_{n}", "type": "order.created", "n": n}, secret)
    return await post(client, daemon.url("/hooks/shop"), body, headers)


def ingest_pids(daemon: Daemon) -> list[int]:
    """The ingest processes the daemon logged as started, in order."""
    return [e["pid"] for e in daemon.log_events() if e["event"] == "ingest_process.started"]


def stored_ids(daemon: Daemon) -> set[str]:
    return {f"msg_{row[0]:016x}" for row in daemon.query("SELECT id FROM messages")}


def fresh_client() -> aiohttp.ClientSession:
    """A client that opens a new connection per request (so that any ingest process,
    not the one a kept-alive connection belongs to, may answer)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def metric(client: aiohttp.ClientSession, daemon: Daemon, name: str) -> float:
    """The value of one sample line of /metrics (0 when absent)."""
    async with client.get(daemon.admin_url("/metrics")) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_every_2xx_is_committed_when_the_daemon_is_killed_under_load(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon(**config(2))
    acknowledged: set[str] = set()
    stop = asyncio.Event()

    async def provider(number: int) -> None:
        n = 0
        async with fresh_client() as session:
            while not stop.is_set():
                n += 1
                with contextlib.suppress(aiohttp.ClientError, ValueError):
                    status, answer = await send(session, daemon, number * 1_000_000 + n)
                    if status == 202:
                        acknowledged.add(answer["id"])

    providers = [asyncio.create_task(provider(i)) for i in range(8)]
    await wait_for(lambda: len(acknowledged) >= 200, 60)
    daemon.kill()
    stop.set()
    await asyncio.gather(*providers)
    missing = acknowledged - stored_ids(daemon)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged but not stored"


async def test_a_killed_ingest_process_is_restarted_and_the_port_keeps_answering(
    start_daemon: StartDaemon,
) -> None:
    # One ingest process: nothing else could answer while it is gone.
    daemon = await start_daemon(**config(1))
    (first,) = await wait_for(lambda: ingest_pids(daemon))
    os.kill(first, signal.SIGKILL)
    await wait_for(lambda: not alive(first))
    async with fresh_client() as session:
        # Sent while no ingest process runs: the daemon's socket holds the connection
        # until the restarted process accepts it.
        status, answer = await send(session, daemon, 1)
        assert status == 202, answer
        restarted = ingest_pids(daemon)[1:]
        assert restarted and restarted[0] != first and alive(restarted[0])
        for n in range(2, 12):
            assert (await send(session, daemon, n))[0] == 202
    exited = [e for e in daemon.log_events() if e["event"] == "ingest_process.exited"]
    assert [e["pid"] for e in exited] == [first]
    assert daemon.running
    assert (await daemon.readyz())["checks"]["ingress"] == "ok"
    assert len(stored_ids(daemon)) == 11


async def test_readiness_says_when_an_ingest_process_is_not_serving(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon(**config(2))
    ready = await daemon.readyz()
    assert ready["checks"]["ingress"] == "ok", ready
    first = (await wait_for(lambda: len(ingest_pids(daemon)) == 2 and ingest_pids(daemon)))[0]
    # Until its replacement has started (a delay, then an interpreter's start-up).
    os.kill(first, signal.SIGKILL)
    failing = await wait_for(
        lambda: _failing_ingress(daemon), message="readyz never showed the ingress failing"
    )
    assert failing.startswith("failing:"), failing
    await wait_for(lambda: len(ingest_pids(daemon)) == 3)
    await wait_for(lambda: _ingress_ok(daemon))


async def _failing_ingress(daemon: Daemon) -> str | None:
    check: str = (await daemon.readyz())["checks"]["ingress"]
    return check if check != "ok" else None


async def _ingress_ok(daemon: Daemon) -> bool:
    return bool((await daemon.readyz())["checks"]["ingress"] == "ok")


async def _equal(counted: Callable[[], Awaitable[dict[str, float]]], expected: Any) -> bool:
    return await counted() == expected


async def test_sigterm_stops_the_daemon_and_its_ingest_processes(
    start_daemon: StartDaemon, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(**config(2))
    children = await wait_for(lambda: len(ingest_pids(daemon)) == 2 and ingest_pids(daemon))
    answers = [await send(client, daemon, n) for n in range(5)]
    assert all(status == 202 for status, _ in answers)
    assert await daemon.stop() == 0
    await wait_for(lambda: not any(alive(pid) for pid in children))
    assert {a["id"] for _, a in answers} <= stored_ids(daemon)
    with contextlib.suppress(aiohttp.ClientError):
        await send(client, daemon, 99)
        raise AssertionError("the port still answers after the daemon stopped")


async def test_ingest_processes_die_with_a_killed_daemon(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(**config(2))
    children = await wait_for(lambda: len(ingest_pids(daemon)) == 2 and ingest_pids(daemon))
    daemon.kill()
    await wait_for(lambda: not any(alive(pid) for pid in children))


async def test_a_reload_rotates_the_secret_in_every_ingest_process(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon(**config(2, secret="old-secret"))
    await wait_for(lambda: len(ingest_pids(daemon)) == 2)
    async with fresh_client() as session:
        assert (await send(session, daemon, 1, "old-secret"))[0] == 202
        daemon.config_path.write_text(
            to_toml({**daemon.config, **config(2, secret="new-secret")}), encoding="utf-8"
        )
        daemon.signal(signal.SIGHUP)
        await wait_for(lambda: any(e["event"] == "config.reloaded" for e in daemon.log_events()))

        async def all_new() -> bool:
            # Fresh connections, several: each ingest process answers some of them.
            statuses = [(await send(session, daemon, 100 + n, "new-secret"))[0] for n in range(8)]
            return all(status == 202 for status in statuses)

        await wait_for(all_new)
        for n in range(8):
            status, answer = await send(session, daemon, 200 + n, "old-secret")
            assert (status, answer["error"]) == (401, "invalid_signature")


async def test_metrics_count_each_webhook_once_whichever_process_answered(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon(**config(2))
    await wait_for(lambda: len(ingest_pids(daemon)) == 2)
    async with fresh_client() as session:
        for n in range(10):
            assert (await send(session, daemon, n))[0] == 202
        for n in range(3):  # the same event ids again
            status, answer = await send(session, daemon, n)
            assert (status, answer.get("duplicate")) == (200, True)
        for n in range(4):
            status, _ = await send(session, daemon, 50 + n, "wrong-secret")
            assert status == 401
        for _ in range(2):
            status, _ = await post(session, daemon.url("/hooks/nowhere"), b"{}")
            assert status == 404
        async with session.get(daemon.url("/hooks/shop")) as response:
            assert response.status == 405

        async def counted() -> dict[str, float]:
            names = {
                "received": 'hookgate_webhooks_received_total{source="shop"}',
                "duplicate": 'hookgate_webhooks_duplicate_total{source="shop"}',
                "unsigned": 'hookgate_webhooks_rejected_total{reason="invalid_signature",'
                'source="shop"}',
                "not_found": 'hookgate_webhooks_rejected_total{reason="not_found",source=""}',
                "method": 'hookgate_webhooks_rejected_total{reason="method_not_allowed",'
                'source="shop"}',
            }
            return {key: await metric(session, daemon, name) for key, name in names.items()}

        expected = {"received": 10, "duplicate": 3, "unsigned": 4, "not_found": 2, "method": 1}
        # Rejections arrive in frames of their own: wait for the last, then compare all.
        await wait_for(lambda: _equal(counted, expected), message="the counts never matched")
        assert await counted() == expected


def test_a_port_in_use_fails_the_start_before_any_ingest_process(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        config_path = tmp_path / "hookgate.toml"
        settings = {
            **config(2),
            "admin": {"listen": f"{HOST}:{free_port()}"},
            "storage": {"path": "hookgate.db"},
        }
        settings["server"]["listen"] = f"{HOST}:{port}"
        config_path.write_text(to_toml(settings), encoding="utf-8")
        ran = run_cli("serve", "-c", str(config_path), timeout=30, cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr
    assert "cannot listen" in ran.stderr and "address already in use" in ran.stderr.lower()
    assert "Traceback" not in ran.stderr
    assert "ingest_process.started" not in ran.stdout


# Both ways the same: a request waiting for its commit when SIGTERM comes gets its 2xx.
@pytest.mark.parametrize("processes", [0, 1])
async def test_sigterm_lets_a_request_waiting_for_its_commit_finish(
    start_daemon: StartDaemon, processes: int
) -> None:
    daemon = await start_daemon(**config(processes))
    body, headers = signed({"id": "evt_waiting", "type": "order.created"})
    request = (
        "POST /hooks/shop HTTP/1.1\r\nHost: hookgate.test\r\nContent-Type: application/json\r\n"
        f"X-Signature: {headers['X-Signature']}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(HOST, daemon.ingress_port)
    try:
        # The daemon's writer cannot commit while this lock is held (it waits for it).
        with exclusive_lock(daemon.db_path):
            writer.write(request)
            await writer.drain()
            client_port = writer.get_extra_info("sockname")[1]
            await wait_for(lambda: _read_by_server(daemon.ingress_port, client_port))
            daemon.signal(signal.SIGTERM)
            await wait_for(
                lambda: any(e["event"] == "daemon.stopping" for e in daemon.log_events())
            )
        status_line = await asyncio.wait_for(reader.readline(), 20)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 202"), status_line
    assert await daemon.wait_exit() == 0
    assert daemon.query("SELECT event_id FROM messages") == [("evt_waiting",)]


def _read_by_server(server_port: int, client_port: int) -> bool:
    """Whether the server's end of the connection has read all that was sent to it
    (its receive queue in /proc/net/tcp is empty): the request is in its hands."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (
            int(local.split(":")[1], 16) == server_port
            and int(remote.split(":")[1], 16) == client_port
        ):
            return int(fields[4].split(":")[1], 16) == 0
    return False
