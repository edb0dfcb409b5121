"""A destination that points back at hookgate's own ingress is a loop, refused with 508.

Outbound requests carry ``Via: 1.1 hookgate-<database identity>``; an ingress that finds
its own name there (or more relays than any sane chain has) answers 508 and stores
nothing. Before this, one POST to a source without event ids multiplied without end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from .conftest import Daemon, Downstream, post, to_toml, wait_for


# Ingest processes know the database's identity (the Via name) from the daemon.
@pytest.mark.parametrize("ingest_processes", [0, 2])
async def test_destination_pointing_at_own_ingress_is_refused_not_multiplied(
    tmp_path: Path, client: aiohttp.ClientSession, ingest_processes: int
) -> None:
    daemon = Daemon(
        tmp_path,
        {
            "server": {"ingest_processes": ingest_processes},
            "sources": {"open": {"path": "/hooks/open", "verify": {"scheme": "none"}}},
            "destinations": {
                "back": {
                    "url": "http://127.0.0.1:1/placeholder",
                    "sources": ["open"],
                    "max_attempts": 3,
                    "initial_backoff": "10ms",
                    "max_backoff": "50ms",
                }
            },
        },
    )
    daemon.config["destinations"]["back"]["url"] = daemon.url("/hooks/open")
    daemon.config_path.write_text(to_toml(daemon.config), encoding="utf-8")
    await daemon.start()
    try:
        status, answer = await post(client, daemon.url("/hooks/open"), b'{"n": 1}')
        assert status == 202, answer
        await wait_for(lambda: daemon.delivery_states().get("dead") == 1)
        assert daemon.query("SELECT count(*) FROM messages") == [(1,)]
        statuses = daemon.query("SELECT status FROM attempts")
        assert statuses == [(508,)] * 3
        rejected = [e for e in daemon.log_events() if e.get("event") == "webhook.rejected"]
        assert {e.get("reason") for e in rejected} == {"loop_detected"}
    finally:
        await daemon.close()


async def test_via_of_other_relays_passes_until_too_many_hops(
    start_daemon: Callable[..., Awaitable[Daemon]], client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(
        sources={"open": {"path": "/hooks/open", "verify": {"scheme": "none"}}}
    )
    url = daemon.url("/hooks/open")
    one_relay = {"Via": "1.1 hookgate-0123456789abcdef, 1.1 proxy.example"}
    status, _ = await post(client, url, b"{}", headers=one_relay)
    assert status == 202
    chain = ", ".join(f"1.1 hookgate-{n:016x}" for n in range(10))
    status, answer = await post(client, url, b"{}", headers={"Via": chain})
    assert (status, answer["error"]) == (508, "loop_detected")
    assert daemon.query("SELECT count(*) FROM messages") == [(1,)]


async def test_host_resolving_into_a_denied_network_is_never_contacted(
    start_daemon: Callable[..., Awaitable[Daemon]],
    downstream: Downstream,
    client: aiohttp.ClientSession,
) -> None:
    # "localhost" resolves to 127.0.0.1: deny loopback for this destination only, as the
    # default list denies cloud metadata and link-local addresses for every destination.
    daemon = await start_daemon(
        sources={"open": {"path": "/hooks/open", "verify": {"scheme": "none"}}},
        destinations={
            "internal": {
                "url": downstream.url("/hook").replace("127.0.0.1", "localhost"),
                "sources": ["open"],
                "deny_networks": ["127.0.0.0/8", "::1/128"],
                "max_attempts": 2,
                "initial_backoff": "10ms",
                "max_backoff": "20ms",
            },
            "allowed": {"url": downstream.url("/ok"), "sources": ["open"]},
        },
    )
    status, answer = await post(client, daemon.url("/hooks/open"), b'{"n": 1}')
    assert status == 202, answer
    await wait_for(lambda: daemon.delivery_states() == {"delivered": 1, "dead": 1})
    assert [r.path for r in downstream.requests] == ["/ok"]
    errors = daemon.query(
        "SELECT a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
        " WHERE d.destination = 'internal'"
    )
    assert len(errors) == 2
    assert all("deny_networks" in e or "denied" in e for (e,) in errors), errors
