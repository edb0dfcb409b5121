"""Each provider's handshake through the real ingress (loopback socket, SQLite outbox):
answered when it checks out, refused with the precise status when forged, malformed or
replayed, and never stored; and ``provider = NAME`` sources end to end."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import sqlite3
import textwrap
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
import yarl
from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator

from hookgate import config
from hookgate.inbound.listener import Ingress
from hookgate.store.sqlite import SQLiteStore

HOST = "127.0.0.1"
SECRET = "handshake-secret"
VERIFY_TOKEN = "meta-verify-token"
DISCORD_KEY = SigningKey(bytes(range(32)))
PUBLIC_URL = "https://hooks.example.com/sms"

CONFIG = """
[storage]
path = "hookgate.db"

[sources.meta]
path = "/hooks/meta"
provider = "meta"
[sources.meta.verify]
secrets = ["{secret}"]
verify_token = "{verify_token}"

[sources.twitter]
path = "/hooks/twitter"
provider = "twitter"
[sources.twitter.verify]
secrets = ["{secret}"]

[sources.zoom]
path = "/hooks/zoom"
provider = "zoom"
[sources.zoom.verify]
secrets = ["{secret}"]

[sources.dropbox]
path = "/hooks/dropbox"
provider = "dropbox"
[sources.dropbox.verify]
secrets = ["{secret}"]

[sources.graph]
path = "/hooks/graph"
provider = "msgraph"
[sources.graph.verify]
secrets = ["{secret}"]

[sources.asana]
path = "/hooks/asana"
provider = "asana"
[sources.asana.verify]
handshake_secret_file = "asana.secret"

[sources.discord]
path = "/hooks/discord"
provider = "discord"
[sources.discord.verify]
public_keys = ["{discord_key}"]

[sources.sms]
path = "/hooks/sms"
provider = "twilio"
public_url = "{public_url}"
[sources.sms.verify]
secrets = ["{secret}"]

[sources.paddle]
path = "/hooks/paddle"
provider = "paddle"
[sources.paddle.verify]
secrets = ["{secret}"]

[destinations.all]
url = "http://127.0.0.1:9/all"
sources = ["meta", "twitter", "zoom", "dropbox", "graph", "asana", "discord", "sms", "paddle"]
"""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> object:
        return orjson.loads(self.body)


@dataclass
class Server:
    ingress: Ingress
    folder: Path
    session: aiohttp.ClientSession
    base: str

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Reply:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        async with self.session.request(method, url, data=body, headers=headers or {}) as r:
            return Reply(r.status, dict(r.headers), await r.read())

    def stored(self) -> int:
        with contextlib.closing(sqlite3.connect(self.folder / "hookgate.db")) as conn:
            count: int = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            return count


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    path = tmp_path / "hookgate.toml"
    path.write_text(
        textwrap.dedent(CONFIG)
        .replace("{secret}", SECRET)
        .replace("{verify_token}", VERIFY_TOKEN)
        .replace("{discord_key}", DISCORD_KEY.verify_key.encode().hex())
        .replace("{public_url}", PUBLIC_URL),
        encoding="utf-8",
    )
    cfg = config.load(path, {})
    store = SQLiteStore(cfg.storage.path)
    await store.open()
    ingress = Ingress(cfg, store)
    http_server = ingress.server()
    await http_server.listen(HOST, 0)
    session = aiohttp.ClientSession()
    try:
        yield Server(
            ingress, tmp_path, session, f"http://{HOST}:{http_server.sockets[0].getsockname()[1]}"
        )
    finally:
        await session.close()
        await http_server.close(1.0)
        await store.close()


def error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith("application/json")
    assert orjson.loads(reply.body)["error"] == code


def hex_hmac(message: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# -- Meta -----------------------------------------------------------------------------------

META = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY_TOKEN}


async def test_meta_verification_is_answered_only_with_the_verify_token(server: Server) -> None:
    reply = await server.request("GET", "/hooks/meta", query=META)
    assert (reply.status, reply.body) == (200, b"1158201444")
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    forged = await server.request("GET", "/hooks/meta", query={**META, "hub.verify_token": "x"})
    error(forged, 403, "handshake_refused")
    malformed = await server.request("GET", "/hooks/meta", query={**META, "hub.challenge": "<a>"})
    error(malformed, 400, "invalid_handshake")
    not_one = await server.request("GET", "/hooks/meta", query={"x": "1"})
    error(not_one, 400, "invalid_handshake")
    # A replayed verification only gets its own challenge back: nothing to gain.
    again = await server.request("GET", "/hooks/meta", query=META)
    assert (again.status, again.body) == (200, b"1158201444")
    assert server.stored() == 0
    # Another method: 405, naming the handshake's method as well as the webhooks'.
    refused = await server.request("DELETE", "/hooks/meta")
    error(refused, 405, "method_not_allowed")
    assert refused.headers["Allow"] == "GET, POST"


async def test_meta_events_are_verified_and_stored(server: Server) -> None:
    body = b'{"object":"page","entry":[]}'
    reply = await server.request(
        "POST", "/hooks/meta", body, {"X-Hub-Signature-256": "sha256=" + hex_hmac(body)}
    )
    assert reply.status == 202
    forged = await server.request(
        "POST", "/hooks/meta", body, {"X-Hub-Signature-256": "sha256=" + hex_hmac(body, "x")}
    )
    error(forged, 401, "invalid_signature")
    assert server.stored() == 1


# -- X (Twitter) ------------------------------------------------------------------------------


async def test_twitter_crc_is_answered_for_tokens_that_cannot_be_bodies(server: Server) -> None:
    token = "9b4507b3-9040-4669-9ca3-6b94edb50553"
    reply = await server.request("GET", "/hooks/twitter", query={"crc_token": token})
    digest = hmac.new(SECRET.encode(), token.encode(), hashlib.sha256).digest()
    assert reply.status == 200
    assert reply.json == {"response_token": "sha256=" + base64.b64encode(digest).decode()}
    oracle = await server.request(
        "GET", "/hooks/twitter", query={"crc_token": '{"tweet_create_events":[]}'}
    )
    error(oracle, 400, "invalid_handshake")
    assert server.stored() == 0


# -- Zoom -------------------------------------------------------------------------------------


def zoom_headers(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    signature = "v0=" + hex_hmac(f"v0:{timestamp}:".encode() + body, secret)
    return {"x-zm-signature": signature, "x-zm-request-timestamp": str(timestamp)}


async def test_zoom_url_validation_is_answered_only_when_signed_and_fresh(server: Server) -> None:
    body = orjson.dumps(
        {"event": "endpoint.url_validation", "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}}
    )
    now = int(time.time())
    reply = await server.request("POST", "/hooks/zoom", body, zoom_headers(body, now))
    assert reply.status == 200
    assert reply.json == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": hex_hmac(b"qgg8vlvZRS6UYooatFL8Aw"),
    }
    forged = await server.request("POST", "/hooks/zoom", body, zoom_headers(body, now, "x"))
    error(forged, 401, "invalid_signature")
    replayed = await server.request("POST", "/hooks/zoom", body, zoom_headers(body, now - 3600))
    error(replayed, 401, "invalid_signature")
    assert server.stored() == 0


# -- Dropbox and Microsoft Graph ------------------------------------------------------------


async def test_dropbox_challenge_is_echoed_and_never_stored(server: Server) -> None:
    reply = await server.request("GET", "/hooks/dropbox", query={"challenge": "abc123"})
    assert (reply.status, reply.body) == (200, b"abc123")
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    bad = await server.request("GET", "/hooks/dropbox", query={"challenge": "<script>"})
    error(bad, 400, "invalid_handshake")
    unsigned = await server.request("POST", "/hooks/dropbox", b'{"list_folder":{}}')
    error(unsigned, 401, "invalid_signature")
    assert server.stored() == 0


async def test_graph_validation_token_is_echoed_as_text(server: Server) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"
    reply = await server.request("POST", "/hooks/graph", query={"validationToken": token})
    assert (reply.status, reply.body) == (200, token.encode())
    assert reply.headers["Content-Type"].startswith("text/plain")
    bad = await server.request("POST", "/hooks/graph", query={"validationToken": "a\nb"})
    error(bad, 400, "invalid_handshake")
    notification = orjson.dumps({"value": [{"clientState": SECRET, "changeType": "created"}]})
    assert (await server.request("POST", "/hooks/graph", notification)).status == 202
    forged = notification.replace(SECRET.encode(), b"guess")
    error(await server.request("POST", "/hooks/graph", forged), 401, "invalid_signature")
    assert server.stored() == 1


# -- Asana --------------------------------------------------------------------------------


async def test_asana_enrolls_the_first_secret_and_refuses_any_other(server: Server) -> None:
    body = b'{"events":[{"action":"changed"}]}'
    before = await server.request(
        "POST", "/hooks/asana", body, {"X-Hook-Signature": hex_hmac(body)}
    )
    error(before, 401, "invalid_signature")

    reply = await server.request("POST", "/hooks/asana", headers={"X-Hook-Secret": SECRET})
    assert (reply.status, reply.headers["X-Hook-Secret"]) == (200, SECRET)
    assert (server.folder / "asana.secret").read_text() == SECRET + "\n"
    hijack = await server.request("POST", "/hooks/asana", headers={"X-Hook-Secret": "attacker"})
    error(hijack, 403, "handshake_refused")
    assert "X-Hook-Secret" not in hijack.headers

    signed = await server.request(
        "POST", "/hooks/asana", body, {"X-Hook-Signature": hex_hmac(body)}
    )
    assert signed.status == 202
    forged = await server.request(
        "POST", "/hooks/asana", body, {"X-Hook-Signature": hex_hmac(body, "attacker")}
    )
    error(forged, 401, "invalid_signature")
    assert server.stored() == 1


# -- Discord --------------------------------------------------------------------------------


def discord_headers(body: bytes, timestamp: int, key: SigningKey = DISCORD_KEY) -> dict[str, str]:
    signature = key.sign(str(timestamp).encode() + body).signature.hex()
    return {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": str(timestamp)}


async def test_discord_ping_is_answered_only_when_signed_and_fresh(server: Server) -> None:
    ping = b'{"id":"1","application_id":"2","type":1,"token":"t","version":1}'
    now = int(time.time())
    reply = await server.request("POST", "/hooks/discord", ping, discord_headers(ping, now))
    assert (reply.status, reply.json) == (200, {"type": 1})
    forged = discord_headers(ping, now, SigningKey(bytes(32)))
    error(await server.request("POST", "/hooks/discord", ping, forged), 401, "invalid_signature")
    old = discord_headers(ping, now - 3600)
    error(await server.request("POST", "/hooks/discord", ping, old), 401, "invalid_signature")
    assert server.stored() == 0


# -- provider = NAME -------------------------------------------------------------------------


async def test_twilio_is_verified_at_its_public_url_behind_a_proxy(server: Server) -> None:
    params = {"MessageSid": "SM1", "Body": "hello", "From": "+15551234567"}
    signature = RequestValidator(SECRET).compute_signature(PUBLIC_URL, params)
    form = urllib.parse.urlencode(params).encode()
    hdrs = {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
        "I-Twilio-Idempotency-Token": "idem-1",
    }
    first = await server.request("POST", "/hooks/sms", form, hdrs)
    assert first.status == 202
    # Twilio's retry of the same webhook carries the same idempotency token.
    again = await server.request("POST", "/hooks/sms", form, hdrs)
    assert (again.status, again.json) == (200, {"id": first.json["id"], "duplicate": True})  # type: ignore[index]
    tampered = form.replace(b"hello", b"hullo")
    error(await server.request("POST", "/hooks/sms", tampered, hdrs), 401, "invalid_signature")
    assert server.stored() == 1


async def test_a_provider_brings_its_published_ip_ranges(server: Server) -> None:
    # Paddle publishes its senders' addresses: 127.0.0.1 is not one of them.
    route = server.ingress.routes["/hooks/paddle"]
    assert route.source.allow_ips and "127.0.0.1/32" not in route.source.allow_ips
    reply = await server.request("POST", "/hooks/paddle", b"{}")
    error(reply, 403, "forbidden")


async def test_the_signed_url_keeps_the_query_string_as_sent(server: Server) -> None:
    # Twilio signs the URL as it built it, percent-encodings included.
    params = {"MessageSid": "SM2", "Body": "hi"}
    signed_url = PUBLIC_URL + "?note=a%40b%2Fc&n=1"
    signature = RequestValidator(SECRET).compute_signature(signed_url, params)
    hdrs = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
    form = urllib.parse.urlencode(params).encode()
    sent = yarl.URL(server.base + "/hooks/sms?note=a%40b%2Fc&n=1", encoded=True)
    async with server.session.post(sent, data=form, headers=hdrs) as reply:
        assert reply.status == 202
