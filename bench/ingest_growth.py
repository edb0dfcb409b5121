"""Ingest as the store grows: webhooks/s with event ids on an empty database, then
again after the database holds --rows messages, in one run.

1. A bare aiohttp + uvloop server (bench/bare_server.py) under the same wrk load: the
   baseline every figure is also given against.
2. The daemon (`python -m hookgate serve`, sync = "full", no destination) on an empty
   database; one source, verified like bench/ingest.py (generic `hmac`, the same ~1 KB
   signed JSON body), with `event_id = "header:X-Event-Id"`: wrk's Lua script sends a
   new id on every request, so the body (and its signature) can stay fixed while
   every webhook is new and goes through the dedup lookup.
3. The daemon stopped, the database grown to --rows messages of the same source, each
   with a unique event id inside the dedup window, through hookgate's own store
   (`SQLiteStore.accept`, thousands at a time so group commit makes big
   transactions, sync = "normal"): no SQL from here, so this survives schema changes.
   The fill goes through the same dedup lookup, so it is as slow as that lookup: with
   the lookup scanning `messages`, 1,000,000 rows took 15 minutes (1,068/s).
4. The daemon restarted on the grown database, measured the same way.

Usage: python bench/ingest_growth.py [--rows 1000000] [--seconds 10] [--connections 64]
                                     [--fill-batch 10000]
Prints figures; asserts nothing (the machine is shared and noisy: compare the ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

SECRET = "bench-secret"
SOURCE = "bench"
ID_HEADER = "X-Event-Id"


def signed_headers(body: bytes) -> dict[str, str]:
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Signature": f"sha256={signature}"}


def wrk_script(folder: Path, prefix: str) -> Path:
    """The signed body of bench/ingest.py, and a new event id header on every request."""
    body = harness.webhook_body()
    path = harness.wrk_post_script(folder / f"post-{prefix}.lua", body, signed_headers(body))
    with path.open("a") as script:
        script.write(
            "local n = 0\n"
            "request = function()\n"
            "  n = n + 1\n"
            f'  wrk.headers["{ID_HEADER}"] = "{prefix}-" .. n\n'
            "  return wrk.format()\n"
            "end\n"
        )
    return path


def hookgate_config(folder: Path, port: int, admin: int) -> Path:
    config = folder / "hookgate.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin}"
[storage]
path = "bench.db"
sync = "full"
[log]
level = "info"
[sources.{SOURCE}]
path = "/hooks/{SOURCE}"
event_type = "json:type"
event_id = "header:{ID_HEADER}"
[sources.{SOURCE}.verify]
scheme = "hmac"
header = "X-Signature"
prefix = "sha256="
secrets = ["{SECRET}"]
""")
    return config


def count_messages(db: Path) -> int:
    """Read-only, like bench/ingest.py's row count: nothing here writes hookgate's tables."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


def measure_bare(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    port = harness.free_port()
    script = wrk_script(folder, "bare")
    server = harness.python(str(harness.ROOT / "bench/bare_server.py"), str(port))
    with harness.process(server, folder / "bare.log"):
        harness.wait_for_port(port)
        url = f"http://127.0.0.1:{port}/hooks/{SOURCE}"
        harness.run_wrk(url, script, connections=args.connections, seconds=2)
        return harness.run_wrk(url, script, connections=args.connections, seconds=args.seconds)


def measure_hookgate(folder: Path, name: str, args: argparse.Namespace) -> dict[str, float]:
    """Start the daemon on folder/bench.db, load it for --seconds, stop it."""
    port, admin = harness.free_port(), harness.free_port()
    config = hookgate_config(folder, port, admin)
    script = wrk_script(folder, name)
    db = folder / "bench.db"
    rows_before = count_messages(db) if db.exists() else 0
    serve = harness.python("-m", "hookgate", "serve", "-c", str(config))
    with harness.process(serve, folder / f"hookgate-{name}.log"):
        started = time.monotonic()
        harness.wait_for_ready(admin, timeout=120)
        ready = time.monotonic() - started
        figures = harness.run_wrk(
            f"http://127.0.0.1:{port}/hooks/{SOURCE}",
            script,
            connections=args.connections,
            seconds=args.seconds,
        )
    figures["ready_s"] = ready
    figures["rows_before"] = float(rows_before)
    figures["rows_after"] = float(count_messages(db))
    return figures


async def fill(db: Path, target: int, batch: int) -> tuple[int, float]:
    """Grow ``db`` to ``target`` messages through hookgate's store; (rows added, seconds)."""
    # Imported here: only the fill depends on hookgate's internals.
    import orjson

    from hookgate.store import NewMessage
    from hookgate.store.sqlite import SQLiteStore

    missing = max(0, target - count_messages(db))
    body = harness.webhook_body()
    headers = signed_headers(body)
    store = SQLiteStore(str(db), sync="normal")
    await store.open()
    started = time.monotonic()
    done = 0
    next_report = 100_000
    try:
        while done < missing:
            now = time.time()
            size = min(batch, missing - done)
            messages = [
                NewMessage(
                    source=SOURCE,
                    received_at=now,
                    event_type="payment_intent.succeeded",
                    event_id=f"fill-{done + n}",
                    dedup_window=86400.0,
                    headers=orjson.dumps({**headers, ID_HEADER: f"fill-{done + n}"}),
                    body=body,
                    destinations=(),
                )
                for n in range(size)
            ]
            # All queued before the writer wakes: one group commit for the whole batch.
            accepted = await asyncio.gather(*(store.accept(m) for m in messages))
            duplicates = sum(a.duplicate for a in accepted)
            if duplicates:
                print(f"  (fill: {duplicates} duplicates in a batch: ids collided)")
            done += size
            if done >= next_report or done == missing:
                took = time.monotonic() - started
                print(f"  filled {done:>9,} / {missing:,}  {took:7.1f}s  {done / took:8.0f}/s")
                sys.stdout.flush()
                next_report += 100_000
    finally:
        await store.close()
    return missing, time.monotonic() - started


def run_fill(db: Path, target: int, batch: int) -> tuple[int, float]:
    import uvloop

    return uvloop.run(fill(db, target, batch))


def code_under_test() -> str:
    """Which hookgate runs: the commit of this checkout (noting edits to src/), or a path."""
    import importlib.util

    spec = importlib.util.find_spec("hookgate")
    origin = Path(spec.origin if spec and spec.origin else "?").resolve().parent.parent
    if origin != harness.ROOT / "src":
        return f"hookgate from {origin} (PYTHONPATH)"
    git = ["git", "-C", str(harness.ROOT)]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], **_CAPTURE).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "src"], **_CAPTURE).stdout.strip()
        return f"commit {head}" + (" with uncommitted edits in src/" if dirty else "")
    return "commit unknown"


_CAPTURE: dict[str, Any] = {"check": True, "capture_output": True, "text": True}


def sqlite_version() -> str:
    return sqlite3.sqlite_version


def line(name: str, figures: dict[str, float], bare: float, empty: float | None) -> str:
    rate = figures["requests_per_s"]
    versus_empty = f"{rate / empty:9.3f}x" if empty else f"{'':>10}"
    return (
        f"{name:<40} {rate:>9.0f}/s  {rate / bare:7.3f}x  {versus_empty}"
        f"  p50 {figures.get('p50_ms', 0):8.2f} ms  p99 {figures.get('p99_ms', 0):8.2f} ms"
        f"  non-2xx {int(figures['non_2xx'])}  errors {int(figures['socket_errors'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="messages to grow to")
    parser.add_argument("--seconds", type=int, default=10, help="wrk load per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--fill-batch", type=int, default=10_000, help="accepts per commit")
    args = parser.parse_args()
    harness.require_wrk()
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(harness.ROOT)
    print("command:", shlex.join([str(python), *sys.argv]))
    print(
        f"{code_under_test()}, SQLite {sqlite_version()}, wrk -t1 -c{args.connections}"
        f" -d{args.seconds}s, ~1 KB signed JSON, a new {ID_HEADER} per request,"
        ' sync = "full", no destination'
    )
    sys.stdout.flush()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-growth-") as tmp:
        folder = Path(tmp)
        bare = measure_bare(folder, args)
        empty = measure_hookgate(folder, "empty", args)
        print(
            f"empty database: {empty['requests_per_s']:.0f}/s"
            f" ({int(empty['rows_after']):,} rows after it); growing to {args.rows:,}"
        )
        sys.stdout.flush()
        added, fill_s = run_fill(folder / "bench.db", args.rows, args.fill_batch)
        grown = measure_hookgate(folder, "grown", args)
        db_mb = sum(p.stat().st_size for p in folder.glob("bench.db*")) / 1024**2
    base = bare["requests_per_s"]
    print()
    print(f"{'':<40} {'ingest':>11}  {'/ bare':>8}  {'/ empty':>10}")
    print(line("bare aiohttp (baseline)", bare, base, None))
    print(line(f"hookgate, empty ({int(empty['rows_after']):,} rows at end)", empty, base, None))
    print(
        line(f"hookgate, {int(grown['rows_before']):,} rows", grown, base, empty["requests_per_s"])
    )
    ratio = grown["requests_per_s"] / empty["requests_per_s"]
    print(f"\ngrown / empty: {ratio:.3f}x  (target >= 0.9x)")
    print(
        f"fill: {added:,} messages in {fill_s:.1f}s ({added / max(fill_s, 1e-9):.0f}/s) through"
        f" SQLiteStore.accept, {args.fill_batch} per commit, sync=normal; database {db_mb:.0f} MB;"
        f" daemon ready in {grown['ready_s']:.2f}s on it ({empty['ready_s']:.2f}s empty)"
    )
    print(f"(bench took {time.monotonic() - started:.0f}s)")


if __name__ == "__main__":
    main()
