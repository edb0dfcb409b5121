"""Content filters at the ingress: routing by header, query and body, skips stored and shown."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from hookgate import config
from hookgate.inbound.listener import Ingress
from hookgate.store.sqlite import SQLiteStore

HOST = "127.0.0.1"
CONFIG = """
[server]
listen = "127.0.0.1:0"

[sources.shop]
path = "/hooks/shop"
event_type = "json:type"

[sources.forms]
path = "/hooks/forms"

# The version question: v2 consumers get version 2, by header or by body.
[destinations.v2]
url = "http://127.0.0.1:9/v2"
sources = ["shop", "forms"]
filter = '''
{"$or": [{"headers": {"X-Webhook-Version": "2"}},
         {"body": {"version": {"$startsWith": "2."}}}]}
'''

[destinations.v1]
url = "http://127.0.0.1:9/v1"
sources = ["shop", "forms"]
filter = { "$not" = { "$or" = [
    { headers = { "x-webhook-version" = "2" } },
    { body = { version = { "$startsWith" = "2." } } },
] } }

[destinations.big_eu_orders]
url = "http://127.0.0.1:9/big"
sources = ["shop"]
events = ["order.*"]
filter = { body = { total = { "$gte" = 1000 }, country = { "$in" = ["FR", "DE"] } } }

[destinations.by_query]
url = "http://127.0.0.1:9/q"
sources = ["shop"]
filter = { query = { topic = "orders" } }
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str, SQLiteStore]]:
    path = tmp_path / "hookgate.toml"
    path.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    cfg = config.load(path, {})
    store = SQLiteStore(cfg.storage.path)
    await store.open()
    http_server = Ingress(cfg, store).server()
    await http_server.listen(HOST, 0)
    session = aiohttp.ClientSession()
    try:
        yield session, f"http://{HOST}:{http_server.sockets[0].getsockname()[1]}", store
    finally:
        await session.close()
        await http_server.close(1.0)
        await store.close()


async def post(
    server: tuple[aiohttp.ClientSession, str, SQLiteStore],
    body: Any,
    headers: dict[str, str] | None = None,
    query: str = "",
    source: str = "/hooks/shop",
) -> tuple[list[str], list[tuple[str, str]]]:
    """POST, then (destinations with a delivery, (skipped, reason)) as the store keeps them."""
    session, url, store = server
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with session.post(url + source + query, data=data, headers=headers or {}) as response:
        assert response.status == 202
        message_id = (await response.json())["id"]
    found = await store.get_message(message_id)
    assert found is not None
    deliveries = await store.list_deliveries(message_id=message_id)
    skipped = [(s.destination, s.reason) for s in found[1].skipped]
    return sorted(d.destination for d in deliveries), sorted(skipped)


async def test_the_version_header_routes_to_v2(server: Any) -> None:
    delivered, skipped = await post(server, {"type": "order.paid"}, {"X-Webhook-Version": "2"})
    assert delivered == ["v2"]
    assert skipped == [
        ("big_eu_orders", "filter"),
        ("by_query", "filter"),
        ("v1", "filter"),
    ]


async def test_the_version_field_routes_to_v2(server: Any) -> None:
    delivered, _ = await post(server, {"type": "refund", "version": "2.0"})
    assert delivered == ["v2"]


async def test_no_version_goes_to_v1(server: Any) -> None:
    delivered, skipped = await post(server, {"type": "refund", "version": 2})  # a number: not "2."
    assert delivered == ["v1"]
    assert ("big_eu_orders", "event_type") in skipped  # refund is not order.*


async def test_body_fields_and_query(server: Any) -> None:
    order = {"type": "order.created", "total": 1500, "country": "FR"}
    delivered, _ = await post(server, order, query="?topic=orders&topic=x")
    assert delivered == ["big_eu_orders", "by_query", "v1"]
    delivered, _ = await post(server, {**order, "total": 999})
    assert delivered == ["v1"]


async def test_a_body_that_is_not_json_is_kept_and_skips_body_filters(server: Any) -> None:
    delivered, skipped = await post(
        server,
        b"version=2.0",
        {"Content-Type": "application/x-www-form-urlencoded"},
        source="/hooks/forms",
    )
    assert delivered == ["v1"]  # $not of the body clause: no body field matches
    assert ("v2", "filter") in skipped
