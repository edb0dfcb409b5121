"""End to end: the dashboard's gate, against the real daemon, with a plain HTTP client.

Every page and action without a session is refused, a POST without the session's
form token is refused, every answer carries the Content-Security-Policy, no page
holds a secret, and a body with markup in it is shown as text. The browser tests
(test_dashboard_browser.py) drive the same pages through Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
import yarl

from hookgate.admin.dashboard.sessions import SIGNIN_FAILURES, SIGNIN_WINDOW

from .conftest import Daemon, Downstream, Reply, post, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]
TOKEN = "admin-" + secrets.token_hex(16)
SOURCE_SECRET = "source-" + secrets.token_hex(16)
SIGNING_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
URL_PASSWORD = "pw" + secrets.token_hex(8)
SECRETS = (TOKEN, SOURCE_SECRET, SIGNING_SECRET, URL_PASSWORD)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def dashboard_config(downstream: Downstream, **admin: Any) -> dict[str, Any]:
    url = downstream.url("/orders").replace("http://", f"http://relay:{URL_PASSWORD}@")
    return {
        "admin": {"token": TOKEN, **admin},
        "sources": {
            "shop": {
                "path": "/hooks/shop",
                "event_type": "json:type",
                "event_id": "json:id",
                "verify": {
                    "scheme": "hmac",
                    "header": "X-Shop-Signature",
                    "secrets": [SOURCE_SECRET],
                },
            }
        },
        "destinations": {
            "orders": {
                "url": url,
                "sources": ["shop"],
                "sign": "standard",
                "secret": SIGNING_SECRET,
                "forward_headers": ["X-Shop-Signature"],
            }
        },
    }


async def send(client: aiohttp.ClientSession, daemon: Daemon, payload: dict[str, Any]) -> str:
    body = json.dumps(payload).encode()
    signature = hmac.new(SOURCE_SECRET.encode(), body, hashlib.sha256).hexdigest()
    status, answer = await post(
        client, daemon.url("/hooks/shop"), body, headers={"X-Shop-Signature": signature}
    )
    assert status == 202, answer
    return str(answer["id"])


class Browser:
    """A client that keeps cookies (IP hosts too) and reads the form token of a page."""

    def __init__(self, daemon: Daemon, session: aiohttp.ClientSession) -> None:
        self.daemon = daemon
        self.session = session
        self.csrf = ""

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(self.daemon.admin_url(path), allow_redirects=False) as answer:
            text = await answer.text()
            found = re.search(r'name="csrf" value="([^"]+)"', text)
            if found:
                self.csrf = found[1]
            return answer.status, text, answer

    async def post(
        self, path: str, form: dict[str, str]
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        url = self.daemon.admin_url(path)
        async with self.session.post(url, data=form, allow_redirects=False) as answer:
            return answer.status, await answer.text(), answer

    async def sign_in(self) -> None:
        status, _, answer = await self.post("/signin", {"token": TOKEN})
        assert status == 303 and answer.headers["Location"] == "/"
        await self.get("/")


@pytest.fixture
async def daemon(start_daemon: StartDaemon, downstream: Downstream) -> Daemon:
    return await start_daemon(**dashboard_config(downstream))


@pytest.fixture
async def browser(daemon: Daemon) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Browser(daemon, session)


def pages_of(message_id: str, delivery_id: int) -> list[str]:
    return ["/", "/messages", f"/messages/{message_id}", "/messages?event_id=evt_1"]


def actions_of(message_id: str, delivery_id: int) -> list[str]:
    return [
        f"/deliveries/{delivery_id}/retry",
        f"/messages/{message_id}/replay",
        "/destinations/orders/retry",
        "/destinations/orders/pause",
        "/destinations/orders/resume",
        "/signout",
    ]


async def delivered_message(
    client: aiohttp.ClientSession, daemon: Daemon, downstream: Downstream
) -> tuple[str, int]:
    message_id = await send(client, daemon, {"type": "order.created", "id": "evt_1"})
    await downstream.wait_count(1)
    number = int(message_id.removeprefix("msg_"), 16)
    ((delivery_id,),) = daemon.query("SELECT id FROM deliveries WHERE message_id = ?", (number,))
    return message_id, int(delivery_id)


async def test_without_a_session_every_page_and_action_is_refused(
    daemon: Daemon, browser: Browser, client: aiohttp.ClientSession, downstream: Downstream
) -> None:
    message_id, delivery_id = await delivered_message(client, daemon, downstream)
    for path in pages_of(message_id, delivery_id):
        status, text, answer = await browser.get(path)
        assert (status, answer.headers.get("Location")) == (303, "/signin"), path
        assert message_id not in text
    status, _, _ = await browser.get("/live/overview")
    assert status == 401
    for path in actions_of(message_id, delivery_id):
        status, _, _ = await browser.post(path, {"confirmed": "yes", "back": "/"})
        assert status == 401, path
    # A made-up session id is no session either.
    browser.session.cookie_jar.update_cookies({"hookgate_session": "made-up"})
    status, _, _ = await browser.get("/")
    assert status == 303
    status, _, _ = await browser.post("/destinations/orders/pause", {"confirmed": "yes"})
    assert status == 401
    assert (await daemon.readyz())["destinations"]["orders"]["state"] == "ok"
    assert not [e for e in daemon.log_events() if e.get("event") == "admin.action"]


async def test_a_wrong_token_is_refused_and_the_right_one_sets_a_strict_cookie(
    browser: Browser,
) -> None:
    status, text, _ = await browser.post("/signin", {"token": TOKEN + "x"})
    assert status == 401 and "not the admin token" in text
    status, _, answer = await browser.post("/signin", {"token": TOKEN})
    assert status == 303
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie and TOKEN not in answer.headers["Location"]


async def test_sign_in_is_throttled_after_wrong_tokens(daemon: Daemon, browser: Browser) -> None:
    for _ in range(SIGNIN_FAILURES):
        status, _, _ = await browser.post("/signin", {"token": TOKEN + "x"})
        assert status == 401
    # Held back now, the right token included; the API's bearer token is not affected.
    status, text, answer = await browser.post("/signin", {"token": TOKEN})
    assert status == 429 and "Too many wrong tokens" in text
    assert 0 < int(answer.headers["Retry-After"]) <= SIGNIN_WINDOW
    assert "Set-Cookie" not in answer.headers
    assert [e for e in daemon.log_events() if e.get("event") == "dashboard.signin_throttled"]
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            daemon.admin_url("/api/v1/stats"), headers={"Authorization": f"Bearer {TOKEN}"}
        ) as stats,
    ):
        assert stats.status == 200


async def test_posts_without_the_form_token_are_refused(
    daemon: Daemon, browser: Browser, client: aiohttp.ClientSession, downstream: Downstream
) -> None:
    message_id, delivery_id = await delivered_message(client, daemon, downstream)
    await browser.sign_in()
    for path in actions_of(message_id, delivery_id):
        for form in ({"confirmed": "yes"}, {"confirmed": "yes", "csrf": "forged"}):
            status, _, _ = await browser.post(path, form)
            assert status == 403, (path, form)
    assert (await daemon.readyz())["destinations"]["orders"]["state"] == "ok"
    assert len(daemon.delivery_rows(message_id)) == 1  # no replay happened
    status, _, _ = await browser.get("/")
    assert status == 200  # still signed in: the refused sign-out did nothing


async def test_an_action_is_confirmed_then_done_and_logged_with_the_session(
    daemon: Daemon, browser: Browser
) -> None:
    await browser.sign_in()
    status, text, _ = await browser.post(
        "/destinations/orders/pause", {"csrf": browser.csrf, "back": "/"}
    )
    assert status == 200 and "Pause destination orders?" in text  # asks first
    assert (await daemon.readyz())["destinations"]["orders"]["state"] == "ok"
    status, _, answer = await browser.post(
        "/destinations/orders/pause", {"csrf": browser.csrf, "back": "//evil", "confirmed": "yes"}
    )
    assert (status, answer.headers["Location"]) == (303, "/")
    assert (await daemon.readyz())["destinations"]["orders"]["state"] == "paused"
    _, text, _ = await browser.get("/")
    assert "orders is paused" in text
    events = await wait_for(
        lambda: [e for e in daemon.log_events() if e.get("event") == "admin.action"]
    )
    (event,) = events
    assert (event["action"], event["destination"]) == ("pause", "orders")
    assert re.fullmatch(r"session:[0-9a-f]{12}", event["actor"])
    signed_in = [e for e in daemon.log_events() if e.get("event") == "dashboard.signed_in"]
    assert [e["actor"] for e in signed_in] == [event["actor"]]


class Scripts(HTMLParser):
    """The page's script elements and event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


async def test_pages_have_a_strict_policy_no_inline_script_and_no_secret(
    daemon: Daemon, browser: Browser, client: aiohttp.ClientSession, downstream: Downstream
) -> None:
    message_id, delivery_id = await delivered_message(client, daemon, downstream)
    hostile_id = await send(client, daemon, {"type": "note", "id": "evt_2", "text": HOSTILE})
    status, text, answer = await browser.get("/signin")
    seen = [("/signin", text, answer)]
    await browser.sign_in()
    paths = [*pages_of(message_id, delivery_id), f"/messages/{hostile_id}", "/live/overview"]
    for path in paths:
        status, text, answer = await browser.get(path)
        assert status == 200, path
        seen.append((path, text, answer))
    status, text, answer = await browser.post(
        "/destinations/orders/retry", {"csrf": browser.csrf, "back": "/"}
    )
    seen.append(("confirm", text, answer))
    for path in ("/static/app.js", "/static/app.css"):
        status, text, answer = await browser.get(path)
        assert status == 200
        seen.append((path, text, answer))
    for path, text, answer in seen:
        policy = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy, path
        assert "unsafe-inline" not in policy
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        for secret in SECRETS:
            assert secret not in text, (path, secret)
        if answer.content_type == "text/html":
            parsed = Scripts()
            parsed.feed(text)
            assert all(s.get("src") == "/static/app.js" for s in parsed.scripts), path
            assert not parsed.handlers, path
    (_, hostile_page, _) = next(s for s in seen if s[0] == f"/messages/{hostile_id}")
    assert "&lt;script&gt;alert(" in hostile_page and "<script>alert" not in hostile_page
    assert "<img src=x" not in hostile_page
    assert "X-Shop-Signature" in hostile_page or "x-shop-signature" in hostile_page
    # Assets are only what the package ships: nothing is fetched from elsewhere.
    for _, text, answer in seen:
        if answer.content_type in ("text/html", "text/css", "text/javascript"):
            assert not re.search(r"(src|href)=\"(https?:)?//", text)
            assert "@import" not in text and "url(http" not in text


async def test_signed_out_sessions_are_refused(browser: Browser) -> None:
    await browser.sign_in()
    admin_url = yarl.URL(browser.daemon.admin_url("/"))
    stolen = browser.session.cookie_jar.filter_cookies(admin_url)["hookgate_session"].value
    status, _, answer = await browser.post("/signout", {"csrf": browser.csrf})
    assert (status, answer.headers["Location"]) == (303, "/signin")
    browser.session.cookie_jar.update_cookies({"hookgate_session": stolen})
    status, _, answer = await browser.get("/")
    assert (status, answer.headers["Location"]) == (303, "/signin")
    status, _, _ = await browser.get("/live/overview")
    assert status == 401


async def test_bodies_can_be_hidden_and_are_cut_at_the_preview_size(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    hidden = await start_daemon(**dashboard_config(downstream, show_bodies=False))
    cut = await start_daemon(**dashboard_config(downstream, body_preview="1KiB"))
    private = "private-" + secrets.token_hex(8)
    for daemon in (hidden, cut):
        message_id = await send(
            client, daemon, {"type": "x", "id": "evt_9", "who": private, "pad": "z" * 4000}
        )
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            browser = Browser(daemon, session)
            await browser.sign_in()
            status, text, _ = await browser.get(f"/messages/{message_id}")
        assert status == 200
        if daemon is hidden:
            assert private not in text and "Bodies are hidden" in text
        else:
            assert private in text and "Cut at 1024 of" in text and "z" * 4000 not in text
    assert downstream.default == Reply()


async def test_without_a_token_the_dashboard_stays_shut(
    start_daemon: StartDaemon, downstream: Downstream
) -> None:
    config = dashboard_config(downstream)
    del config["admin"]["token"]
    daemon = await start_daemon(**config)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        browser = Browser(daemon, session)
        status, text, _ = await browser.get("/signin")
        assert status == 200 and "Set a token in [admin]" in text
        status, _, _ = await browser.post("/signin", {"token": ""})
        assert status == 403
        status, _, answer = await browser.get("/")
        assert (status, answer.headers["Location"]) == (303, "/signin")


def listed_event_ids(page: str) -> list[str]:
    """The event ids of a messages table, in order."""
    return re.findall(r'data-label="Event id">([^<]*)<', page)


async def test_the_messages_page_filters_and_pages(
    daemon: Daemon, browser: Browser, client: aiohttp.ClientSession, downstream: Downstream
) -> None:
    for n in range(3):
        await send(client, daemon, {"type": f"order.{n}", "id": f"evt_{n}"})
    await downstream.wait_count(3)
    await browser.sign_in()
    _, page, _ = await browser.get("/messages")
    assert listed_event_ids(page) == ["evt_2", "evt_1", "evt_0"]
    _, page, _ = await browser.get("/messages?event_type=order.1&source=shop")
    assert listed_event_ids(page) == ["evt_1"]
    _, page, _ = await browser.get("/messages?destination=orders&state=delivered")
    assert listed_event_ids(page) == ["evt_2", "evt_1", "evt_0"]
    _, page, _ = await browser.get("/messages?destination=orders&state=dead")
    assert listed_event_ids(page) == []
    _, page, _ = await browser.get("/messages?since=2000-01-01T00:00:00&until=2001-01-01T00:00")
    assert listed_event_ids(page) == []
    status, page, _ = await browser.get("/messages?since=yesterday")
    assert status == 400 and "since: expected ISO 8601 or unix seconds" in page
    # Paging: 50 a page; the "Older" link carries the filters and the cursor.
    for n in range(3, 53):
        await send(client, daemon, {"type": "bulk", "id": f"evt_{n}"})
    _, page, _ = await browser.get("/messages?source=shop")
    first = listed_event_ids(page)
    older = re.search(r'class="more" href="([^"]+)"', page)
    assert older is not None and "source=shop" in older[1] and "cursor=msg_" in older[1]
    _, page, _ = await browser.get(older[1].replace("&amp;", "&"))
    assert first + listed_event_ids(page) == [f"evt_{n}" for n in range(52, -1, -1)]


async def test_the_overview_counts_rejections_by_reason(
    daemon: Daemon, browser: Browser, client: aiohttp.ClientSession
) -> None:
    status, _ = await post(
        client, daemon.url("/hooks/shop"), b'{"id": "x"}', headers={"X-Shop-Signature": "00"}
    )
    assert status == 401
    await browser.sign_in()
    _, text, _ = await browser.get("/live/overview")
    values = json.loads(text)["values"]
    assert re.fullmatch(r"1 \([a-z_]+ 1\)", values["src:shop:rejected_hour"]), values
    assert values["src:shop:rejected_day"] == values["src:shop:rejected_hour"]
    assert values["src:shop:in_hour"] == "0"
