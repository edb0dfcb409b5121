"""Providers known by name on the real ingress (loopback socket, SQLite outbox): their
handshakes are answered and never stored, their webhooks are stored with the event
type and id their defaults name, a forged request is refused, and those that sign the
URL are checked against the source's public_url, else the URL as it arrived."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from hookgate import config
from hookgate.inbound.listener import Ingress
from hookgate.store.sqlite import SQLiteStore

TWITCH_SECRET = "twitch-eventsub-secret"
XERO_KEY = "xero-webhook-key"
TRELLO_SECRET = "trello-app-secret"
TRELLO_URL = "https://hooks.example.com/hooks/trello"
CONTENTFUL_SECRET = "c" * 64

CONFIG = f"""
[server]
listen = "127.0.0.1:0"

[sources.twitch]
path = "/hooks/twitch"
provider = "twitch"
[sources.twitch.verify]
secrets = ["{TWITCH_SECRET}"]

[sources.xero]
path = "/hooks/xero"
provider = "xero"
[sources.xero.verify]
secrets = ["{XERO_KEY}"]

[sources.trello]
path = "/hooks/trello"
provider = "trello"
public_url = "{TRELLO_URL}"
[sources.trello.verify]
secrets = ["{TRELLO_SECRET}"]

[sources.contentful]
path = "/hooks/contentful"
provider = "contentful"
[sources.contentful.verify]
secrets = ["{CONTENTFUL_SECRET}"]

[destinations.all]
url = "http://127.0.0.1:9/all"
sources = ["twitch", "xero", "trello", "contentful"]
"""


class Ingested:
    def __init__(self, base: str, session: aiohttp.ClientSession, db: Path) -> None:
        self.base, self.session, self.db = base, session, db

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        status, _, answer = await self.exchange(path, body, headers)
        return status, answer

    async def exchange(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        """The status, content type and body of the answer to a POST."""
        async with self.session.post(self.base + path, data=body, headers=headers) as answer:
            return answer.status, answer.content_type, await answer.read()

    def messages(self) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            sql = "SELECT source, event_type, event_id FROM messages ORDER BY id"
            return conn.execute(sql).fetchall()


@pytest.fixture
async def ingress(tmp_path: Path) -> AsyncIterator[Ingested]:
    path = tmp_path / "hookgate.toml"
    path.write_text(CONFIG, encoding="utf-8")
    cfg = config.load(path, {})
    store = SQLiteStore(cfg.storage.path)
    await store.open()
    http_server = Ingress(cfg, store).server()
    await http_server.listen("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{http_server.sockets[0].getsockname()[1]}"
            yield Ingested(base, session, Path(cfg.storage.path))
    finally:
        await http_server.close(1.0)
        await store.close()


def twitch(body: bytes, message_type: str, secret: str = TWITCH_SECRET) -> dict[str, str]:
    message_id = hashlib.sha256(body).hexdigest()[:32]
    sent = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    mac = hmac.digest(secret.encode(), (message_id + sent).encode() + body, "sha256")
    return {
        "Twitch-Eventsub-Message-Id": message_id,
        "Twitch-Eventsub-Message-Timestamp": sent,
        "Twitch-Eventsub-Message-Signature": "sha256=" + mac.hex(),
        "Twitch-Eventsub-Message-Type": message_type,
        "Twitch-Eventsub-Subscription-Type": "stream.online",
    }


async def test_twitch_challenge_revocation_and_notification(ingress: Ingested) -> None:
    challenge = orjson.dumps({"challenge": "pogchamp-kappa", "subscription": {"type": "x"}})
    verification = twitch(challenge, "webhook_callback_verification")
    assert await ingress.exchange("/hooks/twitch", challenge, verification) == (
        200,
        "text/plain",
        b"pogchamp-kappa",
    )
    forged = twitch(challenge, "webhook_callback_verification", "not-the-secret")
    assert (await ingress.post("/hooks/twitch", challenge, forged))[0] == 401
    assert ingress.messages() == []

    revocation = orjson.dumps({"subscription": {"status": "authorization_revoked"}})
    notification = orjson.dumps({"subscription": {"type": "stream.online"}, "event": {}})
    revoked = twitch(revocation, "revocation")
    notified = twitch(notification, "notification")
    assert (await ingress.post("/hooks/twitch", revocation, revoked))[0] == 202
    assert (await ingress.post("/hooks/twitch", notification, notified))[0] == 202
    # Twitch re-sends with the same message id: acknowledged, not stored twice.
    assert (await ingress.post("/hooks/twitch", notification, notified))[0] == 200
    assert ingress.messages() == [
        ("twitch", "stream.online", revoked["Twitch-Eventsub-Message-Id"]),
        ("twitch", "stream.online", notified["Twitch-Eventsub-Message-Id"]),
    ]


def xero(body: bytes, key: str = XERO_KEY) -> dict[str, str]:
    return {
        "x-xero-signature": base64.b64encode(hmac.digest(key.encode(), body, "sha256")).decode()
    }


async def test_xero_intent_to_receive_then_events(ingress: Ingested) -> None:
    intent = b'{"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": "X"}'
    assert await ingress.exchange("/hooks/xero", intent, xero(intent)) == (200, "text/plain", b"")
    assert (await ingress.post("/hooks/xero", intent, xero(intent, "wrong")))[0] == 401
    assert ingress.messages() == []
    events = orjson.dumps({"events": [{"eventCategory": "INVOICE", "eventType": "UPDATE"}]})
    assert (await ingress.post("/hooks/xero", events, xero(events)))[0] == 202
    assert ingress.messages() == [("xero", "INVOICE", None)]


async def test_trello_signature_covers_the_public_url(ingress: Ingested) -> None:
    body = orjson.dumps({"action": {"id": "51f9424bcd6e040f3c002412", "type": "updateCard"}})

    def signed(url: str) -> dict[str, str]:
        mac = hmac.digest(TRELLO_SECRET.encode(), body + url.encode(), "sha1")
        return {"X-Trello-Webhook": base64.b64encode(mac).decode()}

    # Trello's HEAD when the webhook is created: 200, nothing stored.
    async with ingress.session.head(ingress.base + "/hooks/trello") as answer:
        assert answer.status == 200
    async with ingress.session.get(ingress.base + "/hooks/trello") as answer:
        assert answer.status == 405
        # The handshake's method is allowed too.
        assert answer.headers["Allow"] == "HEAD, POST"
    assert ingress.messages() == []
    assert (await ingress.post("/hooks/trello", body, signed(TRELLO_URL + "/x")))[0] == 401
    # The URL hookgate sees is not the one Trello was given.
    seen = signed(ingress.base + "/hooks/trello")
    assert (await ingress.post("/hooks/trello", body, seen))[0] == 401
    assert (await ingress.post("/hooks/trello", body, signed(TRELLO_URL)))[0] == 202
    assert ingress.messages() == [("trello", "updateCard", "51f9424bcd6e040f3c002412")]


async def test_contentful_signs_the_path_as_it_arrived_without_public_url(
    ingress: Ingested,
) -> None:
    body = b'{"sys": {"id": "5KsDBWseXY6QegucYAoacS", "type": "Entry"}}'
    topic = "ContentManagement.Entry.publish"

    def signed(path: str) -> dict[str, str]:
        stamp = str(int(time.time() * 1000))
        names = "x-contentful-signed-headers,x-contentful-timestamp,x-contentful-topic"
        canonical = (
            f"POST\n{path}\nx-contentful-signed-headers:{names};"
            f"x-contentful-timestamp:{stamp};x-contentful-topic:{topic}\n"
        ).encode() + body
        return {
            "X-Contentful-Topic": topic,
            "X-Contentful-Timestamp": stamp,
            "X-Contentful-Signed-Headers": names,
            "X-Contentful-Signature": hmac.digest(
                CONTENTFUL_SECRET.encode(), canonical, "sha256"
            ).hex(),
        }

    assert (await ingress.post("/hooks/contentful", body, signed("/hooks/other")))[0] == 401
    assert (await ingress.post("/hooks/contentful", body, signed("/hooks/contentful")))[0] == 202
    assert ingress.messages() == [("contentful", topic, None)]
