"""Delivery benchmark: what the relay costs between a provider and a destination.

Every figure is a ratio to a baseline measured in the same run, on the same machine:

1. end to end (ingest -> downstream receipt) webhooks/s under wrk, against wrk posting
   straight to the same bare aiohttp + uvloop sink; and the latency the relay adds
   at a fixed, moderate rate (an asyncio client paces the sends; the sink subtracts
   each body's send time from its receipt time), against the same client sending
   straight to the sink;
2. throughput to a healthy destination while another one hangs (its sink never
   answers), against the same run without the hanging destination;
3. draining a pre-loaded backlog with batch_max = 100 against batch_max = 1;
4. peak RSS (VmHWM) and start-up time (exec to /readyz 200) with 1,000,000 pending
   deliveries, against an empty database.

Usage: python bench/delivery.py [--seconds 8] [--connections 64] [--rate 500]
                                [--backlog 20000] [--pending 1000000] [--parts 1,2,3,4]
Prints figures; asserts nothing (the machine is shared and noisy: compare the ratios).
The sink runs as `python bench/delivery.py sink PORT [--hang]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import hmac
import json
import sqlite3
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness

SECRET = "bench-secret"
TOKEN = "bench-token"
HANG_TIMEOUT = "30s"


# -- the sink (a subprocess): bare aiohttp + uvloop, counting what arrives ------------


def run_sink(port: int, hang: bool) -> None:
    """Like bench/bare_server.py, plus counts, receipt times and latencies at GET /_stats."""
    import orjson
    import uvloop
    from aiohttp import web

    stats: dict[str, Any] = {"events": 0, "requests": 0, "first": None, "last": None}
    latencies: list[float] = []
    sent_times: list[float] = []  # each latency's send time, where the request gave one

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if hang:
            await asyncio.Event().wait()  # never answers: the relay's timeout must cut it
        now = time.time()
        stats["requests"] += 1
        stats["events"] += int(request.headers.get("Hookgate-Batch-Size", "1"))
        stats["first"] = stats["first"] or now
        stats["last"] = now
        sent_at = request.headers.get("X-Sent-At")  # bench/delivery.py's paced wrk
        if sent_at is not None:
            sent_times.append(float(sent_at))
            latencies.append(now - sent_times[-1])
        elif b'"sent_at"' in body:
            sent_times.append(orjson.loads(body)["sent_at"])
            latencies.append(now - sent_times[-1])
        return web.Response(text="ok")

    async def report(request: web.Request) -> web.Response:
        return web.json_response({**stats, "latencies": latencies, "sent_times": sent_times})

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_get("/_stats", report)
    app.router.add_post("/{tail:.*}", receive)
    # Full collections of start-up's objects paused this sink for 10-23 ms (and with it
    # the baselines of latency): out of the collector's way, as in hookgate.
    gc.freeze()
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
        shutdown_timeout=0.5,
    )


@contextlib.contextmanager
def sink(folder: Path, name: str, hang: bool = False) -> Iterator[int]:
    folder.mkdir(parents=True, exist_ok=True)
    port = harness.free_port()
    args = [str(Path(__file__)), "sink", str(port), *(["--hang"] if hang else [])]
    with harness.process(harness.python(*args), folder / f"{name}.log"):
        harness.wait_for_port(port)
        yield port


def sink_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
        return stats


def wait_for_events(port: int, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = sink_stats(port)
        if stats["events"] >= count or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


# -- the daemon -----------------------------------------------------------------------


class Daemon:
    """Ports, config and database of one hookgate run."""

    def __init__(
        self,
        folder: Path,
        destinations: dict[str, dict[str, Any]],
        sync: str,
        delivery_processes: int | None = None,
        ingest_processes: int | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = harness.free_port()
        self.admin = harness.free_port()
        self.db = folder / "bench.db"
        server = f'[server]\nlisten = "127.0.0.1:{self.port}"\nshutdown_grace = "1s"'
        if delivery_processes is not None:
            server += f"\ndelivery_processes = {delivery_processes}"
        if ingest_processes is not None:
            server += f"\ningest_processes = {ingest_processes}"
        lines = [
            server,
            f'[admin]\nlisten = "127.0.0.1:{self.admin}"\ntoken = "{TOKEN}"',
            f'[storage]\npath = "bench.db"\nsync = "{sync}"',
            '[log]\nlevel = "info"',
            '[sources.bench]\npath = "/hooks/bench"\nevent_type = "json:type"',
            '[sources.bench.verify]\nscheme = "hmac"\nheader = "X-Signature"\n'
            f'prefix = "sha256="\nsecrets = ["{SECRET}"]',
        ]
        for name, table in destinations.items():
            values = "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
            lines.append(f'[destinations.{name}]\nsources = ["bench"]\n{values}')
        self.config = folder / "hookgate.toml"
        self.config.write_text("\n\n".join(lines) + "\n")

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/bench"

    @contextlib.contextmanager
    def running(self) -> Iterator[Any]:
        args = harness.python("-m", "hookgate", "serve", "-c", str(self.config))
        with harness.process(args, self.folder / "hookgate.log") as proc:
            yield proc

    def ready_after(self, started: float, timeout: float = 60.0) -> float:
        """Seconds from ``started`` to the first 200 from /readyz (however slow it answers)."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.admin}/readyz"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=timeout) as answer:
                    if answer.status == 200:
                        return time.monotonic() - started
            time.sleep(0.01)
        raise RuntimeError("the daemon did not become ready")

    def resume(self, destination: str) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin}/api/v1/destinations/{destination}/resume",
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - http://127.0.0.1
            assert answer.status == 200

    def messages(self) -> int:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])


def signed_headers(body: bytes) -> dict[str, str]:
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Signature": f"sha256={signature}"}


# -- 1. end to end throughput and added latency ---------------------------------------


def wrk_script(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = harness.webhook_body()
    return harness.wrk_post_script(folder / "post.lua", body, signed_headers(body))


def direct_throughput(folder: Path, args: argparse.Namespace) -> float:
    script = wrk_script(folder)
    with sink(folder, "direct-sink") as port:
        url = f"http://127.0.0.1:{port}/in"
        harness.run_wrk(url, script, connections=args.connections, seconds=2)
        figures = harness.run_wrk(url, script, connections=args.connections, seconds=args.seconds)
    return figures["requests_per_s"]


def relay_throughput(
    folder: Path, args: argparse.Namespace, *, hanging: bool = False
) -> dict[str, float]:
    """wrk at the ingress for --seconds; delivered webhooks / (last receipt - load start)."""
    script = wrk_script(folder)
    with contextlib.ExitStack() as stack:
        healthy = stack.enter_context(sink(folder, "healthy-sink"))
        destinations: dict[str, dict[str, Any]] = {
            "healthy": {"url": f"http://127.0.0.1:{healthy}/in"}
        }
        if hanging:
            stuck = stack.enter_context(sink(folder, "stuck-sink", hang=True))
            destinations["stuck"] = {"url": f"http://127.0.0.1:{stuck}/in", "timeout": "30s"}
        daemon = Daemon(folder / "daemon", destinations, args.sync)
        stack.enter_context(daemon.running())
        daemon.ready_after(time.monotonic())
        started = time.time()
        load = harness.run_wrk(
            daemon.ingress, script, connections=args.connections, seconds=args.seconds
        )
        at_load_end = sink_stats(healthy)["events"]
        time.sleep(0.5)  # requests wrk gave up on at its deadline may still commit
        accepted = daemon.messages()
        stats = wait_for_events(healthy, accepted, timeout=90)
    return {
        "ingest_per_s": load["requests_per_s"],
        "accepted": accepted,
        "delivered": stats["events"],
        "delivered_during_load": at_load_end,
        "e2e_per_s": stats["events"] / (stats["last"] - started),
        "drain_s": stats["last"] - started - args.seconds,
        "non_2xx": load["non_2xx"] + load["socket_errors"],
    }


async def paced_client(url: str, rate: int, seconds: float) -> tuple[int, float]:
    """POST ``rate`` webhooks a second, each carrying its send time; (2xx count, achieved rate)."""
    import aiohttp

    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=256)
    ok = 0

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal ok
        body = harness.webhook_body(n, sent_at=time.time())
        async with session.post(url, data=body, headers=signed_headers(body)) as answer:
            await answer.read()
            ok += answer.status < 300

    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        started = time.monotonic()
        for n in range(total):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, n)))
        await asyncio.gather(*tasks)
        achieved = total / (time.monotonic() - started)
    return ok, achieved


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    if not ordered:
        return float("nan"), float("nan")
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50 * 1000, p99 * 1000


# wrk at a paced rate, open loop while a connection is free: every request takes the
# next slot of one schedule (``rate`` a second) and is sent when its slot comes, on
# whichever connection is free; its send time (CLOCK_REALTIME, the sink's time.time())
# goes in a header that hookgate forwards. A connection waits for its answer before
# it takes a slot again, so once all of them wait (PACED_WRK_CONNECTIONS / rate
# seconds of stall: 60 ms at 2,141/s) sends fall behind and are sent late, measured
# from when they were sent: the coordinated-omission caveat, past that stall only.
PACED_WRK_CONNECTIONS = 128
PACED_WRK = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local now_ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(0, now_ts)
  return tonumber(now_ts.tv_sec) + tonumber(now_ts.tv_nsec) * 1e-9
end
local interval = 1 / RATE
local next_slot = nil
function delay()
  local t = now()
  next_slot = next_slot or t
  local wait = (next_slot - t) * 1000
  next_slot = next_slot + interval
  if wait <= 0 then return 0 end
  return math.floor(wait + 0.5)
end
function request()
  wrk.headers["X-Sent-At"] = string.format("%.6f", now())
  return wrk.format()
end
"""
# Forwarded by the destination that delivers to the sink: the paced wrk's send time.
LATENCY_DESTINATION = {"forward_headers": ["X-Sent-At"]}


def paced_wrk(url: str, rate: int, seconds: float) -> tuple[int, float]:
    """wrk posting ``rate`` webhooks a second (PACED_WRK); (2xx count, achieved rate)."""
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-wrk-") as tmp:
        script = wrk_script(Path(tmp))
        script.write_text(script.read_text() + PACED_WRK.replace("RATE", str(rate)))
        figures = harness.run_wrk(
            url, script, connections=PACED_WRK_CONNECTIONS, seconds=max(1, round(seconds))
        )
    ok = figures["requests"] - figures["non_2xx"]
    return int(ok), figures["requests_per_s"]


def run_paced(url: str, args: argparse.Namespace) -> tuple[int, float]:
    """Paced sends with ``args.latency_client``: "wrk" (paced_wrk) or "python" (paced_client)."""
    if getattr(args, "latency_client", "python") == "wrk":
        return paced_wrk(url, args.rate, args.latency_seconds)
    import uvloop

    return uvloop.run(paced_client(url, args.rate, args.latency_seconds))


def latency(
    folder: Path,
    args: argparse.Namespace,
    *,
    relay: bool,
    processes: int | None = None,
    warmup: float = 0.0,
) -> dict[str, float]:
    """Paced sends with their latencies; the first ``warmup`` seconds are sent, not counted."""
    name = "relay" if relay else "direct"
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(sink(folder, f"{name}-latency-sink"))
        url = f"http://127.0.0.1:{port}/in"
        if relay:
            daemon = Daemon(
                folder / "latency-daemon",
                {"sink": {"url": url, **LATENCY_DESTINATION}},
                args.sync,
                processes,
                getattr(args, "ingest_processes", None),
            )
            stack.enter_context(daemon.running())
            daemon.ready_after(time.monotonic())
            url = daemon.ingress
        warm = 0
        if warmup:
            warm_args = argparse.Namespace(**{**vars(args), "latency_seconds": warmup})
            sent, _ = run_paced(url, warm_args)
            warm = wait_for_events(port, sent, timeout=60)["events"]
        ok, achieved = run_paced(url, args)
        stats = wait_for_events(port, warm + ok, timeout=60)
    stats["latencies"] = stats["latencies"][warm:]
    stats["events"] -= warm
    p50, p99 = percentiles(stats["latencies"])
    return {"sent_ok": ok, "received": stats["events"], "rate": achieved, "p50": p50, "p99": p99}


def part_1(folder: Path, args: argparse.Namespace) -> None:
    print(f"\n== 1. end to end: wrk -t1 -c{args.connections} -d{args.seconds}s, ~1 KB JSON")
    direct = direct_throughput(folder / "1-direct", args)
    relay = relay_throughput(folder / "1-relay", args)
    print(f"wrk straight to the sink (baseline)    {direct:>8.0f} webhooks/s")
    print(
        f"through hookgate, ingest -> receipt    {relay['e2e_per_s']:>8.0f} webhooks/s"
        f"  {relay['e2e_per_s'] / direct:5.3f}x   (ingest {relay['ingest_per_s']:.0f}/s,"
        f" {relay['delivered_during_load']:.0f} of {relay['accepted']:.0f} delivered while"
        f" loading, drained {relay['drain_s']:.1f}s after; non-2xx/errors"
        f" {relay['non_2xx']:.0f})"
    )
    print(f"\n== 1b. latency at a paced {args.rate}/s for {args.latency_seconds}s")
    direct_lat = latency(folder / "1-direct-latency", args, relay=False)
    relay_lat = latency(folder / "1-relay-latency", args, relay=True)
    for name, figures in (("straight to the sink", direct_lat), ("through hookgate", relay_lat)):
        print(
            f"{name:<24} p50 {figures['p50']:7.2f} ms  p99 {figures['p99']:7.2f} ms"
            f"  (sent {figures['sent_ok']:.0f} at {figures['rate']:.0f}/s,"
            f" received {figures['received']:.0f})"
        )
    print(
        f"added by the relay       p50 {relay_lat['p50'] - direct_lat['p50']:7.2f} ms"
        f"  p99 {relay_lat['p99'] - direct_lat['p99']:7.2f} ms"
    )


# -- 2. a hanging destination beside a healthy one ------------------------------------


def part_2(folder: Path, args: argparse.Namespace) -> None:
    print(f"\n== 2. healthy destination, with and without a hanging one (timeout {HANG_TIMEOUT})")
    alone = relay_throughput(folder / "2-alone", args)
    beside = relay_throughput(folder / "2-beside-hanging", args, hanging=True)
    for name, figures in (("healthy alone (baseline)", alone), ("healthy + hanging", beside)):
        print(
            f"{name:<26} {figures['e2e_per_s']:>8.0f} webhooks/s delivered"
            f"  {figures['e2e_per_s'] / alone['e2e_per_s']:5.3f}x"
            f"  (ingest {figures['ingest_per_s']:.0f}/s, {figures['delivered']:.0f}"
            f" of {figures['accepted']:.0f} delivered)"
        )


# -- pre-built databases: the backlog for parts 3 and 4 -------------------------------


def build_backlog(db: Path, count: int, destination: str, *, paused: bool) -> float:
    """``count`` messages, each with one pending delivery, written straight with sqlite3.

    Uses the daemon's own migrations and user_version, so it opens the file as its
    own. Returns the seconds it took.
    """
    from hookgate.store import sqlite as store_sqlite

    started = time.monotonic()
    db.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        for number, migration in enumerate(store_sqlite.MIGRATIONS, start=1):
            conn.executescript(migration)
            conn.execute(f"PRAGMA user_version = {number}")
        headers = b'{"content-type":"application/json"}'
        now = time.time()
        first_ms = int((now - 3600) * 1000)
        chunk = 100_000
        for start in range(0, count, chunk):
            rows = range(start, min(count, start + chunk))
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO messages (id, source, received_at, event_type, headers, body)"
                " VALUES (?, 'bench', ?, 'payment_intent.succeeded', ?, ?)",
                (
                    (
                        ((first_ms + n // 1000) << 22) | (n % 1000),
                        (first_ms + n // 1000) / 1000,
                        headers,
                        harness.webhook_body(n),
                    )
                    for n in rows
                ),
            )
            conn.executemany(
                "INSERT INTO deliveries (message_id, destination, state, next_attempt_at,"
                " updated_at) VALUES (?, ?, 'pending', ?, ?)",
                (
                    (
                        ((first_ms + n // 1000) << 22) | (n % 1000),
                        destination,
                        (first_ms + n // 1000) / 1000,
                        now,
                    )
                    for n in rows
                ),
            )
            conn.execute("COMMIT")
        # The store counts what its writer inserts (migration 0006): count these rows.
        conn.executescript(
            "BEGIN; UPDATE message_count SET count = (SELECT count(*) FROM messages);"
            " DELETE FROM delivery_counts; INSERT INTO delivery_counts"
            " SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2; COMMIT;"
        )
        if paused:
            conn.execute(
                "INSERT INTO destinations (name, paused, updated_at) VALUES (?, 1, ?)",
                (destination, now),
            )
        conn.execute("PRAGMA journal_mode = WAL")
    return time.monotonic() - started


# -- 3. batches -----------------------------------------------------------------------


def drain(folder: Path, args: argparse.Namespace, batch_max: int) -> dict[str, float]:
    with sink(folder, "sink") as port:
        table = {"url": f"http://127.0.0.1:{port}/in", "batch_max": batch_max}
        daemon = Daemon(folder, {"sink": table}, args.sync)
        build_backlog(daemon.db, args.backlog, "sink", paused=True)
        with daemon.running():
            daemon.ready_after(time.monotonic())
            resumed = time.time()
            daemon.resume("sink")
            stats = wait_for_events(port, args.backlog, timeout=120)
    took = stats["last"] - resumed
    return {"per_s": stats["events"] / took, "s": took, "requests": stats["requests"]}


def part_3(folder: Path, args: argparse.Namespace) -> None:
    print(f"\n== 3. draining {args.backlog} pending deliveries after resume")
    single = drain(folder / "3-batch-1", args, 1)
    batched = drain(folder / "3-batch-100", args, 100)
    for name, figures in (("batch_max = 1 (baseline)", single), ("batch_max = 100", batched)):
        print(
            f"{name:<26} {figures['per_s']:>8.0f} deliveries/s"
            f"  {figures['per_s'] / single['per_s']:6.2f}x  ({figures['s']:.2f}s,"
            f" {figures['requests']:.0f} requests)"
        )


# -- 4. memory and start-up with a big backlog ---------------------------------------


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def start_up(folder: Path, args: argparse.Namespace, pending: int) -> dict[str, float]:
    with sink(folder, "sink") as port:
        daemon = Daemon(folder, {"sink": {"url": f"http://127.0.0.1:{port}/in"}}, args.sync)
        built = build_backlog(daemon.db, pending, "sink", paused=False) if pending else 0.0
        size = daemon.db.stat().st_size if pending else 0
        started = time.monotonic()
        with daemon.running() as proc:
            ready = daemon.ready_after(started)
            # Keep it claiming and delivering for a while: the peak is read from VmHWM.
            time.sleep(args.rss_seconds)
            peak = status_kib(proc.pid, "VmHWM") / 1024
            delivered = sink_stats(port)["events"]
    return {
        "ready_s": ready,
        "peak_mb": peak,
        "built_s": built,
        "db_mb": size / 1024**2,
        "delivered": delivered,
    }


def part_4(folder: Path, args: argparse.Namespace) -> None:
    print(f"\n== 4. start-up and peak RSS, {args.pending} pending deliveries")
    empty = start_up(folder / "4-empty", args, 0)
    full = start_up(folder / "4-backlog", args, args.pending)
    print(
        f"empty database (baseline)    ready in {empty['ready_s']:5.2f}s"
        f"  peak RSS {empty['peak_mb']:6.1f} MB"
    )
    print(
        f"{args.pending} pending       ready in {full['ready_s']:5.2f}s"
        f" ({full['ready_s'] / empty['ready_s']:.2f}x)  peak RSS {full['peak_mb']:6.1f} MB"
        f" ({full['peak_mb'] / empty['peak_mb']:.2f}x) over its first {args.rss_seconds:.0f}s,"
        f" {full['delivered']:.0f} delivered meanwhile  (db {full['db_mb']:.0f} MB,"
        f" built in {full['built_s']:.1f}s)"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "sink":
        run_sink(int(sys.argv[2]), "--hang" in sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="wrk load per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=500, help="paced webhooks/s for latency")
    parser.add_argument("--latency-seconds", type=float, default=6.0)
    parser.add_argument("--backlog", type=int, default=20_000, help="deliveries to drain (3)")
    parser.add_argument("--pending", type=int, default=1_000_000, help="pending deliveries (4)")
    parser.add_argument("--rss-seconds", type=float, default=10.0)
    parser.add_argument("--sync", choices=["full", "normal"], default="full")
    parser.add_argument("--parts", default="1,2,3,4")
    args = parser.parse_args()
    harness.require_wrk()
    parts = {"1": part_1, "2": part_2, "3": part_3, "4": part_4}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-delivery-") as tmp:
        for part in args.parts.split(","):
            parts[part.strip()](Path(tmp), args)
    print(f"\n(bench took {time.monotonic() - started:.0f}s; sync={args.sync})")


if __name__ == "__main__":
    main()
