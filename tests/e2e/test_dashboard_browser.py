"""End to end in a real browser: Debian's Chromium (.ci/setup), driven by Playwright,
against the real daemon and real receivers on 127.0.0.1.

An operator's night, in order: signs in (a wrong token first), watches a webhook
arrive on the overview without reloading, finds it by event id, opens it and reads
its attempts, pauses a destination and sees deliveries wait, resumes and sees them
land, bulk-retries dead deliveries and sees them reach the receiver, signs out and
is refused. Screenshots of the main pages go to build/screenshots (CI keeps it).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from .conftest import Daemon, Downstream, Reply, post, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]
MakeDownstream = Callable[..., Awaitable[Downstream]]
TOKEN = "admin-" + secrets.token_hex(16)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
WAIT_MS = 15_000  # a bound for waiting, not an expectation of speed


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run .ci/setup"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def send(
    client: aiohttp.ClientSession, daemon: Daemon, event_type: str, event_id: str
) -> str:
    body = json.dumps({"type": event_type, "id": event_id, "amount": 4200}).encode()
    status, answer = await post(client, daemon.url("/hooks/shop"), body)
    assert status == 202, answer
    return str(answer["id"])


def cell(page: Page, key: str) -> Any:
    return page.locator(f'[data-key="{key}"]')


async def confirm(page: Page, row: str, button: str) -> None:
    """Press ``button`` in the destinations row of ``row``, then Confirm."""
    await page.locator("#destinations tr", has_text=row).get_by_role("button", name=button).click()
    await expect(page.get_by_role("heading", name="Confirm")).to_be_visible()
    await page.get_by_role("button", name="Confirm").click()


@pytest.mark.slow
async def test_an_operator_night_in_chromium(
    start_daemon: StartDaemon,
    downstream_factory: MakeDownstream,
    client: aiohttp.ClientSession,
    chromium: Browser,
) -> None:
    orders = await downstream_factory()
    crm = await downstream_factory()
    crm.default = Reply(status=410, body=b"gone: the CRM endpoint moved")
    daemon = await start_daemon(
        admin={"token": TOKEN},
        sources={"shop": {"path": "/hooks/shop", "event_type": "json:type", "event_id": "json:id"}},
        destinations={
            "orders": {"url": orders.url("/orders"), "sources": ["shop"]},
            "crm": {"url": crm.url("/crm"), "sources": ["shop"], "events": ["customer.*"]},
        },
    )
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    external: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(daemon.admin_url("/")) else external.append(r.url),
    )

    # Sign in: a wrong token is refused, the right one (typed, Enter) lets in.
    await page.goto(daemon.admin_url("/messages"))
    assert page.url == daemon.admin_url("/signin")
    await page.get_by_label("Admin token").fill("not-" + TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    await shot(page, "signin")
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert TOKEN not in page.url
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script sees it

    # A webhook arrives: the overview shows it without a reload.
    await expect(cell(page, "src:shop:in_hour")).to_have_text("0")
    loads = []
    page.on("load", lambda _: loads.append(page.url))
    first = await send(client, daemon, "order.created", "evt_live_1")
    await expect(page.locator("#latest")).to_contain_text("evt_live_1")
    await expect(cell(page, "src:shop:in_hour")).to_have_text("1")
    await expect(cell(page, "dst:orders:success")).to_have_text("100.0%")
    drawn = page.locator('svg[data-series="received"] rect:not([height="0.00"])')
    await expect(drawn).not_to_have_count(0)  # the throughput chart shows it too
    assert loads == []
    await shot(page, "overview")

    # Find it by event id, open it, read its attempts.
    await page.get_by_role("link", name="Messages").click()
    await page.get_by_label("Event id").fill("evt_live_1")
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("#messages tbody tr")
    await expect(rows).to_have_count(1)
    await shot(page, "messages")
    await rows.get_by_role("link").click()
    await expect(page.get_by_role("heading", name=f"Message {first}")).to_be_visible()
    attempts = page.locator("section.delivery", has_text="orders").locator("table tbody tr")
    await expect(attempts).to_have_count(1)
    await expect(attempts.first).to_contain_text("200")
    await expect(page.locator("pre.body")).to_contain_text('"amount": 4200')
    await shot(page, "message")

    # Pause orders: deliveries wait. Resume: they land.
    await page.get_by_role("link", name="Overview").click()
    await confirm(page, "orders", "Pause")
    await expect(page.locator("#result")).to_contain_text("orders is paused")
    waiting = await send(client, daemon, "order.paid", "evt_wait_1")
    await expect(cell(page, "dst:orders:pending")).to_have_text("1")
    await expect(cell(page, "dst:orders:state")).to_have_text("paused")
    assert orders.for_id(waiting) == []
    # Resume by keyboard: focus the button, Enter; the confirmation has focus, Enter.
    await (
        page.locator("#destinations tr", has_text="orders")
        .get_by_role("button", name="Resume")
        .focus()
    )
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Confirm")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#result")).to_contain_text("orders is")
    await wait_for(lambda: orders.for_id(waiting), message="the resumed delivery did not land")
    await expect(cell(page, "dst:orders:pending")).to_have_text("0")

    # crm answers 410: its delivery dies. Fixed, a bulk retry delivers it.
    dead = await send(client, daemon, "customer.updated", "evt_dead_1")
    await expect(cell(page, "dst:crm:dead")).to_have_text("1")
    crm.default = Reply(status=200, body=b"ok")
    await confirm(page, "crm", "Retry dead")
    await expect(page.locator("#result")).to_contain_text("1 dead delivery(ies) of crm")
    await wait_for(lambda: crm.for_id(dead)[-1:] and crm.for_id(dead)[-1].attempt == 1)
    await expect(cell(page, "dst:crm:dead")).to_have_text("0")
    await page.goto(daemon.admin_url(f"/messages/{dead}"))
    section = page.locator("section.delivery", has_text="crm")
    await expect(section.locator("table tbody tr")).to_have_count(2)  # the 410, then the 200
    await expect(section).to_contain_text("gone: the CRM endpoint moved")

    # Phone width, and the dark theme.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(daemon.admin_url("/"))
    await expect(page.locator("#latest")).to_contain_text("evt_dead_1")
    await shot(page, "overview-phone")
    dark = await chromium.new_context(color_scheme="dark", viewport={"width": 1280, "height": 900})
    await dark.add_cookies(await context.cookies())
    dark_page = await dark.new_page()
    await dark_page.goto(daemon.admin_url("/"))
    await expect(dark_page.locator("#latest")).to_contain_text("evt_dead_1")
    background = await dark_page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    await shot(dark_page, "overview-dark")
    await dark.close()

    # Keyboard: the skip link is the first stop, and it leads to the content.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

    # Sign out: refused afterwards, pages and the live figures alike.
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto(daemon.admin_url("/"))
    assert page.url == daemon.admin_url("/signin")
    live = await page.request.get(daemon.admin_url("/live/overview"))
    assert live.status == 401
    assert external == []  # the pages fetched nothing from anywhere else
    actors = {e["actor"] for e in daemon.log_events() if e.get("event") == "admin.action"}
    assert len(actors) == 1 and re.fullmatch(r"session:[0-9a-f]{12}", actors.pop())
    await context.close()
