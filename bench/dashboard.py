"""Dashboard benchmark: ingest with the dashboard open on the overview vs closed.

One daemon, one run: wrk posts signed ~1 KB webhooks for --seconds with no browser
("closed"), then with Debian's Chromium (Playwright) signed in and showing the
overview, which polls /live/overview every 2 s ("open"); the phases alternate
--rounds times and the ratio open/closed is printed per round and as a median. The
browser runs on the same machine as the daemon and wrk, so its own rendering counts
against the ratio too.

Usage: python bench/dashboard.py [--seconds 10] [--rounds 3] [--connections 64]
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import harness
from ingest import SECRET, hookgate_config
from playwright.async_api import Page, async_playwright

TOKEN = "bench-token"
POLL_SAMPLES = 200
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


async def ingest(url: str, script: Path, args: argparse.Namespace) -> float:
    figures = await asyncio.to_thread(
        harness.run_wrk, url, script, connections=args.connections, seconds=args.seconds
    )
    return figures["requests_per_s"] - figures["non_2xx"] / args.seconds


async def poll_cost(admin: int) -> float:
    """Mean round trip of /live/overview on the idle daemon (an upper bound of its CPU)."""
    base = f"http://127.0.0.1:{admin}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.post(base + "/signin", data={"token": TOKEN}) as answer:
            answer.raise_for_status()
        start = time.perf_counter()
        for _ in range(POLL_SAMPLES):
            async with session.get(base + "/live/overview") as answer:
                answer.raise_for_status()
                await answer.read()
        return (time.perf_counter() - start) / POLL_SAMPLES * 1000


async def open_overview(page: Page, admin: int) -> None:
    await page.goto(f"http://127.0.0.1:{admin}/signin")
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector("#latest")


async def run(folder: Path, args: argparse.Namespace) -> None:
    body = harness.webhook_body()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    script = harness.wrk_post_script(
        folder / "post.lua", body, {"Content-Type": "application/json", "X-Signature": signature}
    )
    port, admin = harness.free_port(), harness.free_port()
    config = hookgate_config(folder, port, admin, args, None)
    config.write_text(config.read_text().replace("[admin]\n", f'[admin]\ntoken = "{TOKEN}"\n', 1))
    url = f"http://127.0.0.1:{port}/hooks/bench"
    polls = 0
    with harness.process(
        harness.python("-m", "hookgate", "serve", "-c", str(config)), folder / "hookgate.log"
    ):
        harness.wait_for_ready(admin)
        await ingest(url, script, argparse.Namespace(**{**vars(args), "seconds": 2}))  # warm-up
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
            )
            ratios = []
            for round_number in range(1, args.rounds + 1):
                # Closed first in odd rounds, open first in even ones: a drift of the
                # shared machine's load does not favour one side.
                figures: dict[str, float] = {}
                for phase in ("closed", "open") if round_number % 2 else ("open", "closed"):
                    if phase == "closed":
                        figures[phase] = await ingest(url, script, args)
                        continue
                    page = await browser.new_page()

                    def count(request: object) -> None:
                        nonlocal polls
                        polls += "/live/overview" in getattr(request, "url", "")

                    page.on("request", count)
                    await open_overview(page, admin)
                    figures[phase] = await ingest(url, script, args)
                    await page.close()
                closed, opened = figures["closed"], figures["open"]
                ratios.append(opened / closed)
                print(
                    f"round {round_number}: closed {closed:8.0f} webhooks/s   "
                    f"open {opened:8.0f} webhooks/s   ratio {opened / closed:5.3f}x"
                )
            await browser.close()
        poll_ms = await poll_cost(admin)
    print(
        f"median ratio open/closed: {statistics.median(ratios):.3f}x "
        f"({polls} polls of /live/overview served while open)"
    )
    print(
        f"one poll of /live/overview, idle daemon, {POLL_SAMPLES} in a row: mean "
        f"{poll_ms:.2f} ms round trip, at most {poll_ms / 2000 * 100:.3f}% of one core "
        "per open tab at one poll per 2 s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sync", choices=["full", "normal"], default="full")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    print(
        f"wrk -t1 -c{args.connections} -d{args.seconds}s per phase, sync={args.sync}, "
        f"{args.rounds} rounds of closed then open"
    )
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-") as tmp:
        asyncio.run(run(Path(tmp), args))


if __name__ == "__main__":
    main()
