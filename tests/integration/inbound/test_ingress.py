"""The ingress on a real loopback socket, over a real SQLite outbox."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import sqlite3
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from hookgate import config
from hookgate.inbound.listener import Ingress
from hookgate.store import parse_message_id
from hookgate.store.sqlite import SQLiteStore

HOST = "127.0.0.1"
SECRET = "s3cret-for-tests"

BASE = """
[server]
listen = "127.0.0.1:0"
max_body = "1KiB"
request_timeout = "500ms"
{server_extra}

[sources.signed]
path = "/hooks/signed"
event_type = "json:type"
event_id = "json:id"
[sources.signed.verify]
scheme = "hmac"
header = "X-Signature"
algorithm = "sha256"
encoding = "hex"
prefix = "sha256="
secrets = ["{secret}"]

[sources.open]
path = "/hooks/open"
methods = ["POST", "PUT"]

[sources.internal]
path = "/hooks/internal"
allow_ips = {allow_ips}

[sources.slack]
path = "/hooks/slack"
[sources.slack.verify]
scheme = "slack"
secrets = ["{secret}"]

[destinations.all]
url = "http://127.0.0.1:9/all"
sources = ["signed", "open", "internal"]

[destinations.charges]
url = "http://127.0.0.1:9/charges"
sources = ["signed"]
events = ["charge.*"]
"""


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    json: Any


@dataclass
class Server:
    """An Ingress served as the daemon serves it, and a client session for it."""

    ingress: Ingress
    store: SQLiteStore
    db: Path
    session: aiohttp.ClientSession
    base: str

    async def request(
        self,
        method: str,
        path: str,
        body: Any = b"",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        async with self.session.request(
            method, self.base + path, data=body, headers=headers or {}
        ) as response:
            raw = await response.read()
            return Answer(response.status, dict(response.headers), orjson.loads(raw))

    async def post_signed(self, payload: dict[str, Any], **headers: str) -> Answer:
        body = orjson.dumps(payload)
        return await self.request(
            "POST",
            "/hooks/signed",
            body,
            {"X-Signature": sign(body), "Content-Type": "application/json", **headers},
        )

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return conn.execute(sql, params).fetchall()

    def destinations_of(self, message_id: str) -> list[str]:
        return [
            r[0]
            for r in self.rows(
                "SELECT destination FROM deliveries WHERE message_id = ? ORDER BY destination",
                (parse_message_id(message_id),),
            )
        ]


ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(server_extra: str = "", allow_ips: str = '["10.0.0.0/8"]') -> Server:
        path = tmp_path / "hookgate.toml"
        path.write_text(
            textwrap.dedent(BASE)
            .replace("{server_extra}", server_extra)
            .replace("{secret}", SECRET)
            .replace("{allow_ips}", allow_ips),
            encoding="utf-8",
        )
        cfg = config.load(path, {})
        store = SQLiteStore(cfg.storage.path)
        await store.open()
        cleanups.append(store.close)
        ingress = Ingress(cfg, store)
        http_server = ingress.server()
        await http_server.listen(HOST, 0)
        cleanups.append(lambda: http_server.close(1.0))
        port = http_server.sockets[0].getsockname()[1]
        session = aiohttp.ClientSession()
        cleanups.append(session.close)
        return Server(ingress, store, Path(cfg.storage.path), session, f"http://{HOST}:{port}")

    try:
        yield start
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status
    assert answer.headers["Content-Type"].startswith("application/json")
    assert set(answer.json) == {"error", "detail"}
    assert answer.json["error"] == code
    assert isinstance(answer.json["detail"], str)
    assert answer.json["detail"]


# -- the checks, in order ---------------------------------------------------------------


async def test_unknown_path_is_404(serve: ServerFactory) -> None:
    server = await serve()
    for path in ("/", "/hooks", "/hooks/signed/", "/hooks/SIGNED", "/hooks/nope"):
        assert_error(await server.request("POST", path, b"{}"), 404, "not_found")
    assert server.rows("SELECT count(*) FROM messages") == [(0,)]


async def test_wrong_method_is_405_with_allow(serve: ServerFactory) -> None:
    server = await serve()
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        answer = await server.request(method, "/hooks/signed")
        assert_error(answer, 405, "method_not_allowed")
        assert answer.headers["Allow"] == "POST"
    answer = await server.request("GET", "/hooks/open")
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["Allow"] == "POST, PUT"


async def test_put_allowed_when_configured(serve: ServerFactory) -> None:
    server = await serve()
    answer = await server.request("PUT", "/hooks/open", b"plain text")
    assert answer.status == 202


async def test_client_outside_allow_ips_is_403(serve: ServerFactory) -> None:
    server = await serve()  # allow_ips = 10.0.0.0/8 excludes 127.0.0.1
    assert_error(await server.request("POST", "/hooks/internal", b"{}"), 403, "forbidden")
    # X-Forwarded-For is not believed without trusted_proxies.
    answer = await server.request("POST", "/hooks/internal", b"{}", {"X-Forwarded-For": "10.1.2.3"})
    assert_error(answer, 403, "forbidden")
    assert server.rows("SELECT count(*) FROM messages") == [(0,)]


async def test_client_inside_allow_ips_is_accepted(serve: ServerFactory) -> None:
    server = await serve(allow_ips='["127.0.0.0/8"]')
    assert (await server.request("POST", "/hooks/internal", b"{}")).status == 202


async def test_body_over_max_body_is_413(serve: ServerFactory) -> None:
    server = await serve()
    body = orjson.dumps({"type": "charge.succeeded", "id": "evt_big", "pad": "x" * 2000})
    answer = await server.request("POST", "/hooks/signed", body, {"X-Signature": sign(body)})
    assert_error(answer, 413, "payload_too_large")
    # Exactly max_body is fine.
    exact = b"y" * 1024
    assert (await server.request("POST", "/hooks/open", exact)).status == 202
    assert_error(
        await server.request("POST", "/hooks/open", exact + b"y"), 413, "payload_too_large"
    )


async def test_chunked_body_over_max_body_is_413(serve: ServerFactory) -> None:
    server = await serve()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"z" * 400

    answer = await server.request("POST", "/hooks/open", chunks())
    assert_error(answer, 413, "payload_too_large")

    async def small_chunks() -> AsyncIterator[bytes]:
        for _ in range(2):
            yield b"z" * 400

    assert (await server.request("POST", "/hooks/open", small_chunks())).status == 202
    assert server.rows("SELECT length(body) FROM messages") == [(800,)]


async def test_slow_body_is_408(serve: ServerFactory) -> None:
    server = await serve()  # request_timeout = 500ms

    async def slow() -> AsyncIterator[bytes]:
        yield b"{"
        await asyncio.sleep(1.5)
        yield b"}"

    answer = await server.request("POST", "/hooks/open", slow())
    assert_error(answer, 408, "request_timeout")
    assert server.rows("SELECT count(*) FROM messages") == [(0,)]


async def test_content_encoding_is_415(serve: ServerFactory) -> None:
    server = await serve()
    answer = await server.request(
        "POST", "/hooks/open", b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"}
    )
    assert_error(answer, 415, "unsupported_encoding")


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=",
        "sha256=" + "0" * 64,
        sign(b'{"type":"charge.succeeded","id":"evt_1"}', "wrong-secret"),
        "md5=abc",
        sign(b"other body"),
    ],
)
async def test_bad_signature_is_401(serve: ServerFactory, signature: str | None) -> None:
    server = await serve()
    body = b'{"type":"charge.succeeded","id":"evt_1"}'
    headers = {} if signature is None else {"X-Signature": signature}
    answer = await server.request("POST", "/hooks/signed", body, headers)
    assert_error(answer, 401, "invalid_signature")
    text = orjson.dumps(answer.json).decode()
    assert SECRET not in text
    assert sign(body).removeprefix("sha256=") not in text  # never the expected signature
    assert server.rows("SELECT count(*) FROM messages") == [(0,)]


async def test_unextractable_event_is_400(serve: ServerFactory) -> None:
    server = await serve()
    not_json = b"type=charge.succeeded"
    answer = await server.request(
        "POST", "/hooks/signed", not_json, {"X-Signature": sign(not_json)}
    )
    assert_error(answer, 400, "invalid_json")
    assert_error(await server.post_signed({"id": "evt_1"}), 400, "missing_event_type")
    assert_error(await server.post_signed({"type": "charge.succeeded"}), 400, "missing_event_id")
    assert_error(
        await server.post_signed({"type": {"nested": 1}, "id": "evt_1"}), 400, "missing_event_type"
    )
    assert server.rows("SELECT count(*) FROM messages") == [(0,)]


# -- success ------------------------------------------------------------------------------


async def test_accepted_is_202_after_commit(serve: ServerFactory) -> None:
    server = await serve()
    payload = {"type": "charge.succeeded", "id": "evt_1", "amount": 42}
    answer = await server.post_signed(
        payload,
        Authorization="Bearer do-not-store",
        Cookie="session=do-not-store",
        **{"X-Request-Id": "req-1"},
    )
    assert answer.status == 202
    assert answer.headers["Content-Type"].startswith("application/json")
    assert set(answer.json) == {"id"}
    message_id = answer.json["id"]
    assert parse_message_id(message_id) is not None
    # Committed before the answer: another connection sees the message and deliveries.
    ((source, event_type, event_id, headers, body),) = server.rows(
        "SELECT source, event_type, event_id, headers, body FROM messages WHERE id = ?",
        (parse_message_id(message_id),),
    )
    assert (source, event_type, event_id) == ("signed", "charge.succeeded", "evt_1")
    assert body == orjson.dumps(payload)  # byte for byte
    stored = orjson.loads(headers)
    assert stored["x-request-id"] == "req-1"
    assert stored["content-type"] == "application/json"
    assert "authorization" not in stored
    assert "cookie" not in stored
    assert server.destinations_of(message_id) == ["all", "charges"]


async def test_event_filter_selects_destinations(serve: ServerFactory) -> None:
    server = await serve()
    answer = await server.post_signed({"type": "invoice.paid", "id": "evt_2"})
    assert answer.status == 202
    assert server.destinations_of(answer.json["id"]) == ["all"]


async def test_message_without_destination_is_stored(serve: ServerFactory, tmp_path: Path) -> None:
    server = await serve()
    # "open" feeds only "all"; a source nobody listens to still stores its messages.
    server.ingress.apply(
        config.load(
            _rewrite(
                tmp_path, lambda text: text.replace('"signed", "open", "internal"', '"signed"')
            ),
            {},
        )
    )
    answer = await server.request("POST", "/hooks/open", b"hello")
    assert answer.status == 202
    assert server.destinations_of(answer.json["id"]) == []
    assert server.rows("SELECT body FROM messages") == [(b"hello",)]


def _rewrite(tmp_path: Path, change: Callable[[str], str]) -> Path:
    path = tmp_path / "hookgate.toml"
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path


async def test_duplicate_event_is_200_with_first_id(serve: ServerFactory) -> None:
    server = await serve()
    first = await server.post_signed({"type": "charge.succeeded", "id": "evt_dup"})
    assert first.status == 202
    for _ in range(2):
        again = await server.post_signed({"type": "charge.succeeded", "id": "evt_dup", "v": 2})
        assert again.status == 200
        assert again.json == {"id": first.json["id"], "duplicate": True}
    assert server.rows("SELECT count(*) FROM messages") == [(1,)]
    assert server.rows("SELECT count(*) FROM deliveries") == [(2,)]
    other = await server.post_signed({"type": "charge.succeeded", "id": "evt_other"})
    assert other.status == 202


async def test_concurrent_duplicates_get_one_message(serve: ServerFactory) -> None:
    server = await serve()
    answers = await asyncio.gather(
        *(server.post_signed({"type": "charge.succeeded", "id": "evt_race"}) for _ in range(10))
    )
    assert sorted(a.status for a in answers) == [200] * 9 + [202]
    assert len({a.json["id"] for a in answers}) == 1
    assert server.rows("SELECT count(*) FROM messages") == [(1,)]


async def test_store_unavailable_is_503_with_retry_after(serve: ServerFactory) -> None:
    server = await serve()
    await server.store.close()
    answer = await server.request("POST", "/hooks/open", b"{}")
    assert_error(answer, 503, "unavailable")
    assert int(answer.headers["Retry-After"]) > 0


# -- X-Forwarded-For ------------------------------------------------------------------------

TRUSTED = 'trusted_proxies = ["127.0.0.1/32", "192.168.0.0/16"]'


@pytest.mark.parametrize(
    ("forwarded", "status"),
    [
        (None, 403),  # the proxy itself (127.0.0.1) is not allowed
        ("203.0.113.5", 202),
        ("198.51.100.1, 203.0.113.5", 202),  # right-most untrusted hop is the client
        ("203.0.113.5, 198.51.100.1", 403),  # a spoofed left part does not count
        ("203.0.113.5, 192.168.1.1", 202),  # trusted proxies are skipped
        ("198.51.100.1, 192.168.1.1, 192.168.1.2", 403),
        ("203.0.113.5,192.168.1.1", 202),
        ("garbage, 203.0.113.5", 202),
    ],
)
async def test_forwarded_for_from_trusted_proxy(
    serve: ServerFactory, forwarded: str | None, status: int
) -> None:
    server = await serve(server_extra=TRUSTED, allow_ips='["203.0.113.0/24"]')
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    answer = await server.request("POST", "/hooks/internal", b"{}", headers)
    assert answer.status == status, answer.json


async def test_forwarded_for_in_several_headers(serve: ServerFactory) -> None:
    server = await serve(server_extra=TRUSTED, allow_ips='["203.0.113.0/24"]')
    async with server.session.post(
        server.base + "/hooks/internal",
        data=b"{}",
        headers=[("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.5")],
    ) as response:
        assert response.status == 202
    async with server.session.post(
        server.base + "/hooks/internal",
        data=b"{}",
        headers=[("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-For", "198.51.100.1")],
    ) as response:
        assert response.status == 403


async def test_forwarded_for_ignored_from_untrusted_peer(serve: ServerFactory) -> None:
    server = await serve(
        server_extra='trusted_proxies = ["192.168.0.0/16"]', allow_ips='["203.0.113.0/24"]'
    )
    answer = await server.request(
        "POST", "/hooks/internal", b"{}", {"X-Forwarded-For": "203.0.113.5"}
    )
    assert_error(answer, 403, "forbidden")


# -- Slack's URL verification ------------------------------------------------------------


def slack_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    base = f"v0:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


async def test_signed_slack_url_verification_is_answered_not_stored(serve: ServerFactory) -> None:
    server = await serve()
    body = orjson.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595"})
    answer = await server.request("POST", "/hooks/slack", body, slack_headers(body))
    assert (answer.status, answer.json) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV2595"})
    forged = await server.request("POST", "/hooks/slack", body, slack_headers(body, "wrong"))
    assert_error(forged, 401, "invalid_signature")
    assert server.rows("SELECT count(*) FROM messages") == [(0,)]
    event = orjson.dumps(
        {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}}
    )
    answer = await server.request("POST", "/hooks/slack", event, slack_headers(event))
    assert answer.status == 202
    assert server.rows("SELECT event_type, event_id FROM messages") == [("app_mention", "Ev1")]
