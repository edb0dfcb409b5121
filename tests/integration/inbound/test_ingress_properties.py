"""Properties of the ingress over real HTTP on 127.0.0.1 with a real SQLite outbox.

The ingress is served as the daemon serves it (``Ingress.server()`` listening on
127.0.0.1), on its own event loop for the whole module, so Hypothesis can send
a hundred requests per property in well under a second each:

- random headers (the verify schemes' own header names among them, with random or
  plausible-looking values) and random bodies never get a 2xx on a verified source,
  and never a 5xx: exactly 401, and nothing is stored;
- a request signed correctly, but with another secret, over a changed body, or with
  a stale timestamp, gets 401 too;
- a correctly signed random body, on every scheme, always gets 202, and the stored
  body is byte-identical.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import sqlite3
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookgate import config
from hookgate.inbound import http1
from hookgate.inbound.listener import Ingress
from hookgate.store import parse_message_id
from hookgate.store.sqlite import SQLiteStore

HOST = "127.0.0.1"
_T = TypeVar("_T")

SECRETS = {
    "hmac": "generic-hmac-secret",
    "hmac_ts": "generic-timestamped-secret",
    "standard": "whsec_" + base64.b64encode(b"standard-webhooks-key-0123456789").decode(),
    "github": "github-secret",
    "stripe": "whsec_stripe-secret",
    "shopify": "shopify-secret",
    "slack": "slack-signing-secret",
    "gitlab": "gitlab-token",
    "basic": "relay:basic-password",
}
SCHEMES = {
    "hmac": {
        "scheme": "hmac",
        "header": "X-Sig",
        "prefix": "sha256=",
        "algorithm": "sha256",
        "encoding": "hex",
    },
    "hmac_ts": {
        "scheme": "hmac",
        "header": "X-Sig-B64",
        "algorithm": "sha512",
        "encoding": "base64",
        "timestamp_header": "X-Ts",
        "signed_payload": "{timestamp}.{body}",
    },
    "standard": {"scheme": "standard"},
    "github": {"scheme": "github"},
    "stripe": {"scheme": "stripe"},
    "shopify": {"scheme": "shopify"},
    "slack": {"scheme": "slack"},
    "gitlab": {"scheme": "gitlab"},
    "basic": {"scheme": "basic"},
}
SOURCES = tuple(SCHEMES)
TIMESTAMPED = ("hmac_ts", "standard", "stripe", "slack")
# gitlab and basic send a shared secret, not a signature: the body is not covered.
BODY_SIGNED = tuple(s for s in SCHEMES if s not in ("gitlab", "basic"))
# Every header some scheme reads: random requests draw their names from these too.
SIGNATURE_HEADERS = (
    "X-Sig",
    "X-Sig-B64",
    "X-Ts",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "X-Hub-Signature-256",
    "Stripe-Signature",
    "X-Shopify-Hmac-Sha256",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
    "X-Gitlab-Token",
    "Authorization",
)


def write_config(folder: Path) -> Path:
    lines = ['[storage]\npath = "hookgate.db"\nsync = "normal"\n']
    for name, verify in SCHEMES.items():
        lines.append(f'[sources.{name}]\npath = "/hooks/{name}"\n')
        lines.append(f"[sources.{name}.verify]")
        for key, value in {**verify, "secrets": [SECRETS[name]]}.items():
            lines.append(f"{key} = {orjson.dumps(value).decode()}")
        lines.append("")
    lines.append('[destinations.sink]\nurl = "http://127.0.0.1:9/sink"')
    lines.append(f"sources = {orjson.dumps(list(SCHEMES)).decode()}\n")
    path = folder / "hookgate.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class Served:
    """The ingress on 127.0.0.1 and a client, driven from synchronous test code."""

    runner: asyncio.Runner
    store: SQLiteStore
    http_server: http1.Server
    session: aiohttp.ClientSession
    base: str
    db_path: Path

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return self.runner.run(coroutine)

    def post(self, source: str, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, Any]:
        return self.run(self._post(source, body, headers))

    async def _post(
        self, source: str, body: bytes, headers: list[tuple[str, str]]
    ) -> tuple[int, Any]:
        async with self.session.post(
            f"{self.base}/hooks/{source}", data=body, headers=headers
        ) as response:
            payload = await response.read()
            if response.content_type == "application/json":
                return response.status, orjson.loads(payload)
            return response.status, payload

    def stored_body(self, message_id: str) -> bytes | None:
        number = parse_message_id(message_id)
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT body FROM messages WHERE id = ?", (number,)).fetchone()
        finally:
            conn.close()
        return None if row is None else bytes(row[0])

    def message_count(self) -> int:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
        finally:
            conn.close()


async def _start(folder: Path, runner: asyncio.Runner) -> Served:
    loaded = config.load(write_config(folder))
    store = SQLiteStore(loaded.storage.path, sync=loaded.storage.sync)
    await store.open()
    http_server = Ingress(loaded, store).server()
    await http_server.listen(HOST, 0)
    host, port = http_server.sockets[0].getsockname()[:2]
    session = aiohttp.ClientSession(headers={"Content-Type": "application/octet-stream"})
    return Served(
        runner, store, http_server, session, f"http://{host}:{port}", folder / "hookgate.db"
    )


async def _stop(served: Served) -> None:
    await served.session.close()
    await served.http_server.close(1.0)
    await served.store.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("ingress-properties")
    with asyncio.Runner() as runner:
        server = runner.run(_start(folder, runner))
        try:
            yield server
        finally:
            runner.run(_stop(server))


# -- signing, as each provider does ------------------------------------------------------


def _hmac(key: bytes, payload: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, payload, algorithm).digest()


def sign(source: str, body: bytes, secret: str, timestamp: int) -> list[tuple[str, str]]:
    """The headers a genuine provider would send for ``body``."""
    key = secret.encode()
    stamp = str(timestamp)
    if source == "hmac":
        return [("X-Sig", "sha256=" + _hmac(key, body).hex())]
    if source == "hmac_ts":
        mac = _hmac(key, stamp.encode() + b"." + body, "sha512")
        return [("X-Sig-B64", base64.b64encode(mac).decode()), ("X-Ts", stamp)]
    if source == "standard":
        msg_id = f"msg_{uuid.uuid4().hex}"  # unique: a repeat would be a duplicate
        decoded = base64.b64decode(secret.removeprefix("whsec_") + "==")
        mac = _hmac(decoded, f"{msg_id}.{stamp}.".encode() + body)
        return [
            ("webhook-id", msg_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", "v1," + base64.b64encode(mac).decode()),
        ]
    if source == "github":
        return [("X-Hub-Signature-256", "sha256=" + _hmac(key, body).hex())]
    if source == "stripe":
        mac = _hmac(key, stamp.encode() + b"." + body).hex()
        return [("Stripe-Signature", f"t={stamp},v1={mac}")]
    if source == "shopify":
        return [("X-Shopify-Hmac-Sha256", base64.b64encode(_hmac(key, body)).decode())]
    if source == "slack":
        mac = _hmac(key, b"v0:" + stamp.encode() + b":" + body).hex()
        return [("X-Slack-Signature", "v0=" + mac), ("X-Slack-Request-Timestamp", stamp)]
    if source == "gitlab":
        return [("X-Gitlab-Token", secret)]
    assert source == "basic"
    return [("Authorization", "Basic " + base64.b64encode(key).decode())]


def wrong_secret(source: str, seed: str) -> str:
    """A secret of the right form for ``source`` that is not the configured one."""
    digest = hashlib.sha256(seed.encode()).digest()
    if source == "standard":
        return "whsec_" + base64.b64encode(digest).decode()
    if source == "basic":
        return "relay:" + digest.hex()
    return "whsec_" + digest.hex() if source == "stripe" else digest.hex()


# -- strategies -------------------------------------------------------------------------

bodies = st.binary(max_size=2048)
noise_names = st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z")
header_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), max_codepoint=0x2FFF), max_size=80
)


@st.composite
def plausible_value(draw: st.DrawFn, name: str) -> str:
    """Something shaped like what ``name`` carries, but not a valid signature."""
    mac = draw(st.binary(min_size=16, max_size=64))
    # A timestamp within tolerance, so that the signature itself is what gets checked.
    stamp = str(int(time.time()) + draw(st.integers(-30, 30)))
    choices = {
        "x-sig": "sha256=" + mac.hex(),
        "x-sig-b64": base64.b64encode(mac).decode(),
        "x-hub-signature-256": "sha256=" + mac.hex(),
        "x-shopify-hmac-sha256": base64.b64encode(mac).decode(),
        "x-slack-signature": "v0=" + mac.hex(),
        "stripe-signature": f"t={stamp},v1={mac.hex()}",
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "svix-signature": "v1," + base64.b64encode(mac).decode(),
        "authorization": "Basic " + base64.b64encode(mac).decode(),
        "x-gitlab-token": mac.hex(),
    }
    return choices.get(name.lower(), stamp)


@st.composite
def random_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    headers = []
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.one_of(st.sampled_from(SIGNATURE_HEADERS), noise_names))
        value = draw(st.one_of(plausible_value(name), header_text))
        headers.append((name, value))
    return headers


extra_headers = st.lists(st.tuples(noise_names, header_text), max_size=4)

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def assert_refused(status: int, answer: Any) -> None:
    assert status == 401, (status, answer)
    assert answer == {
        "error": "invalid_signature",
        "detail": "the signature is missing or invalid",
    }, answer


# -- the properties ---------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(source=st.sampled_from(SOURCES), body=bodies, headers=random_headers())
def test_random_requests_are_never_accepted_nor_a_server_error(
    served: Served, source: str, body: bytes, headers: list[tuple[str, str]]
) -> None:
    before = served.message_count()
    status, answer = served.post(source, body, headers)
    assert not 200 <= status < 300, (status, answer)
    assert status < 500, (status, answer)
    assert_refused(status, answer)
    assert served.message_count() == before


@st.composite
def flawed(draw: st.DrawFn) -> tuple[str, str]:
    """A source and a flaw that its scheme must catch."""
    source = draw(st.sampled_from(SOURCES))
    flaws = ["other secret"]
    if source in BODY_SIGNED:
        flaws.append("changed body")
    if source in TIMESTAMPED:
        flaws += ["stale", "future"]
    return source, draw(st.sampled_from(flaws))


@PROPERTY_SETTINGS
@given(
    case=flawed(),
    body=bodies,
    seed=st.text(min_size=1, max_size=16),
    extra=extra_headers,
)
def test_a_flawed_signature_is_refused(
    served: Served,
    case: tuple[str, str],
    body: bytes,
    seed: str,
    extra: list[tuple[str, str]],
) -> None:
    source, flaw = case
    now = int(time.time())
    secret, timestamp, sent = SECRETS[source], now, body
    if flaw == "other secret":
        secret = wrong_secret(source, seed)
    elif flaw == "changed body":
        sent = body + seed.encode()
    else:
        timestamp = now - 400 if flaw == "stale" else now + 400  # tolerance is 300 s
    before = served.message_count()
    status, answer = served.post(source, sent, sign(source, body, secret, timestamp) + extra)
    assert_refused(status, answer)
    assert served.message_count() == before


@PROPERTY_SETTINGS
@given(source=st.sampled_from(SOURCES), body=bodies, extra=extra_headers)
def test_a_correctly_signed_body_is_accepted_byte_identical(
    served: Served, source: str, body: bytes, extra: list[tuple[str, str]]
) -> None:
    headers = sign(source, body, SECRETS[source], int(time.time())) + extra
    status, answer = served.post(source, body, headers)
    assert status == 202, (status, answer)
    assert served.stored_body(answer["id"]) == body


def test_signers_match_the_schemes(served: Served) -> None:
    """The properties above mean something only if ``sign`` is right for every scheme."""
    for source in SOURCES:
        body = b'{"probe": "%s"}' % source.encode()
        good = sign(source, body, SECRETS[source], int(time.time()))
        assert served.post(source, body, good)[0] == 202, source
        bad = sign(source, body, wrong_secret(source, "x"), int(time.time()))
        assert served.post(source, body, bad)[0] == 401, source
