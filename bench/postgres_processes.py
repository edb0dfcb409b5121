"""Several hookgate processes on one PostgreSQL database: what they add (not a test).

Three parts, each a ratio to a baseline measured in the same run:

1. Delivery with 1, 2 and 3 processes to a sink that adds 50 ms to every request: a
   backlog inserted in the database beforehand, deliveries counted at the sink over
   a fixed window. The baseline is one process. The sink's latency, not the CPU,
   bounds one process (``concurrency`` requests in flight), so more processes
   should scale almost linearly.
2. CPU-bound end to end: webhooks posted by wrk (one per process, the same total
   connections) to 2 processes vs 1, each delivered to an instant sink; webhooks
   delivered per second, from the first POST to the last delivery.
3. Ingest, PostgreSQL vs SQLite (both durable: fsync at every commit), one process,
   no destination, wrk for the same time.

PostgreSQL is a private server started here (tests/postgres_server.py, fsync on).

Usage: python bench/postgres_processes.py [--seconds 8] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import psycopg
from delivery import sink, sink_stats

sys.path.insert(0, str(harness.ROOT / "tests"))
from postgres_server import PostgresServer, find_binaries

BODY = harness.webhook_body(1)


def run_sink_delayed(port: int, delay: float) -> None:
    """A sink that answers 200 after ``delay`` seconds, counting what arrives."""
    import asyncio

    import uvloop
    from aiohttp import web

    stats: dict[str, Any] = {"events": 0, "first": None, "last": None}

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        now = time.time()
        stats["events"] += 1
        stats["first"] = stats["first"] or now
        stats["last"] = now
        return web.Response(text="ok")

    async def report(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/_stats", report)
    app.router.add_post("/{tail:.*}", receive)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


@contextlib.contextmanager
def delayed_sink(folder: Path, delay: float) -> Iterator[int]:
    folder.mkdir(parents=True, exist_ok=True)
    port = harness.free_port()
    args = [str(Path(__file__)), "sink", str(port), str(delay)]
    with harness.process(harness.python(*args), folder / "delayed-sink.log"):
        harness.wait_for_port(port)
        yield port


@contextlib.contextmanager
def daemon(
    folder: Path, storage: str, destination: dict[str, Any] | None, delivery_processes: int
) -> Iterator[tuple[int, int]]:
    """A ``hookgate serve`` on ``storage`` (a TOML table body); its ingress and admin ports."""
    folder.mkdir(parents=True, exist_ok=True)
    port, admin = harness.free_port(), harness.free_port()
    lines = [
        f'[server]\nlisten = "127.0.0.1:{port}"\nshutdown_grace = "1s"'
        f"\ndelivery_processes = {delivery_processes}",
        f'[admin]\nlisten = "127.0.0.1:{admin}"',
        f"[storage]\n{storage}",
        '[log]\nlevel = "warning"',
        '[sources.bench]\npath = "/hooks/bench"\nevent_type = "json:type"',
    ]
    if destination is not None:
        values = "\n".join(f"{k} = {json.dumps(v)}" for k, v in destination.items())
        lines.append(f'[destinations.sink]\nsources = ["bench"]\n{values}')
    (folder / "hookgate.toml").write_text("\n\n".join(lines) + "\n")
    args = harness.python("-m", "hookgate", "serve", "-c", str(folder / "hookgate.toml"))
    with harness.process(args, folder / "daemon.log", cwd=folder):
        harness.wait_for_ready(admin)
        yield port, admin


def insert_backlog(url: str, count: int) -> None:
    """``count`` messages pending for "sink", due now, as if accepted earlier."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            b"INSERT INTO messages (id, source, received_at, event_type, headers, body)"
            b" SELECT n, 'bench', extract(epoch FROM now()), 't', '{}', %s"
            b" FROM generate_series(1, %s) AS n",
            (BODY, count),
        )
        conn.execute(
            b"INSERT INTO deliveries (message_id, destination, state, next_attempt_at,"
            b" updated_at) SELECT n, 'sink', 'pending', 0, 0 FROM generate_series(1, %s) AS n",
            (count,),
        )


def delivered(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(b"SELECT count(*) FROM deliveries WHERE state = 'delivered'").fetchone()
        return int(row[0]) if row else 0


def delivery_rate(
    server: PostgresServer, folder: Path, processes: int, args: argparse.Namespace
) -> float:
    """Deliveries per second of ``processes`` daemons to the 50 ms sink, over a window."""
    url = server.new_database()
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(delayed_sink(folder / f"sink-{processes}", 0.05))
        destination = {"url": f"http://127.0.0.1:{port}/", "concurrency": args.concurrency}
        storage = f'url = "{url}"'
        stack.enter_context(
            daemon(folder / f"scale-{processes}-0", storage, destination, args.delivery_processes)
        )
        insert_backlog(url, args.backlog)  # the schema exists once a daemon is up
        for i in range(1, processes):
            stack.enter_context(
                daemon(
                    folder / f"scale-{processes}-{i}", storage, destination, args.delivery_processes
                )
            )
        time.sleep(1.0)  # every process claiming: the window starts in the steady state
        start, first = time.monotonic(), delivered(url)
        time.sleep(args.seconds)
        rate = (delivered(url) - first) / (time.monotonic() - start)
    return rate


def end_to_end_rate(
    server: PostgresServer, folder: Path, processes: int, args: argparse.Namespace
) -> float:
    """Webhooks posted by wrk to ``processes`` daemons and delivered, per second."""
    url = server.new_database()
    script = harness.wrk_post_script(folder / "e2e.lua", BODY, {"Content-Type": "application/json"})
    with contextlib.ExitStack() as stack:
        sink_port = stack.enter_context(sink(folder / f"e2e-sink-{processes}", f"e2e-{processes}"))
        destination = {"url": f"http://127.0.0.1:{sink_port}/", "concurrency": 32}
        ports = [
            stack.enter_context(
                daemon(
                    folder / f"e2e-{processes}-{i}",
                    f'url = "{url}"',
                    destination,
                    args.delivery_processes,
                )
            )[0]
            for i in range(processes)
        ]
        started = time.time()
        with contextlib.ExitStack() as loads:
            runs = [
                loads.enter_context(
                    harness.process(
                        [
                            harness.require_wrk(),
                            "-t1",
                            f"-c{64 // processes}",
                            f"-d{args.seconds}s",
                            "-s",
                            str(script),
                            f"http://127.0.0.1:{port}/hooks/bench",
                        ],
                        folder / f"wrk-{processes}-{port}.log",
                    )
                )
                for port in ports
            ]
            for run in runs:
                run.wait()
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(b"SELECT count(*) FROM messages").fetchone()
            accepted = int(row[0]) if row else 0
        deadline = time.monotonic() + 120
        while sink_stats(sink_port)["events"] < accepted and time.monotonic() < deadline:
            time.sleep(0.1)
        last = sink_stats(sink_port)["last"] or time.time()
    return accepted / (last - started)


def ingest_rate(folder: Path, storage: str, name: str, args: argparse.Namespace) -> float:
    script = harness.wrk_post_script(
        folder / "ingest.lua", BODY, {"Content-Type": "application/json"}
    )
    with daemon(folder / f"ingest-{name}", storage, None, args.delivery_processes) as (port, _):
        figures = harness.run_wrk(
            f"http://127.0.0.1:{port}/hooks/bench", script, connections=64, seconds=args.seconds
        )
    return figures["requests_per_s"] - figures["non_2xx"] / args.seconds


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "sink":
        run_sink_delayed(int(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backlog", type=int, default=20_000)
    # 0: each daemon sends its own requests, one core per process (before issue 11).
    parser.add_argument("--delivery-processes", type=int, default=1)
    args = parser.parse_args()
    binaries = find_binaries()
    if binaries is None:
        sys.exit("PostgreSQL is not installed: run .ci/setup")
    server = PostgresServer(binaries, durable=True)
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="hookgate-bench-") as tmp:
            folder = Path(tmp)
            print(f"1. deliveries/s to a sink adding 50 ms, concurrency {args.concurrency}")
            rates = {n: delivery_rate(server, folder, n, args) for n in (1, 2, 3)}
            for n, rate in rates.items():
                print(f"   {n} process(es): {rate:8.1f}/s  {rate / rates[1]:.2f}x")
            print("2. CPU-bound end to end (wrk -> hookgate -> instant sink), webhooks/s")
            e2e = {n: end_to_end_rate(server, folder, n, args) for n in (1, 2)}
            for n, rate in e2e.items():
                print(f"   {n} process(es): {rate:8.1f}/s  {rate / e2e[1]:.2f}x")
            print("3. ingest, one process, no destination, webhooks/s (2xx)")
            sqlite = ingest_rate(folder, 'path = "bench.db"\nsync = "full"', "sqlite", args)
            postgres = ingest_rate(folder, f'url = "{server.new_database()}"', "pg", args)
            print(f"   SQLite (sync = full):        {sqlite:8.1f}/s  1.00x")
            print(f"   PostgreSQL (fsync, durable): {postgres:8.1f}/s  {postgres / sqlite:.2f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
