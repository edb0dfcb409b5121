"""Ingest benchmark: signed ~1 KB JSON webhooks/s that hookgate accepts and commits,
as a ratio to a bare aiohttp + uvloop server that answers 200, measured in the same run.

The last lines run the one-destination case again with a five-clause content filter
(that matches) on the destination, then with the filter and a small jq transform, each
as a ratio to the same run without them.

Usage: python bench/ingest.py [--seconds 10] [--connections 64] [--sync full] [--log-level info]
Prints figures; asserts nothing (the machine is shared and noisy: compare the ratios).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sqlite3
import tempfile
from pathlib import Path

import harness

SECRET = "bench-secret"
TRANSFORM = """
transform = '''
{body: {id: .body.id, type: .body.type, amount: .body.data.object.amount},
 headers: {"X-Amount": (.body.data.object.amount | tostring)}}
'''
"""
# Five clauses, all true of harness.webhook_body(): every webhook still gets a delivery.
FIVE_CLAUSES = """
[destinations.sink.filter.headers]
content-type = { "$startsWith" = "application/json" }
[destinations.sink.filter.body]
type = { "$in" = ["payment_intent.succeeded", "charge.succeeded"] }
created = { "$exist" = true }
data = { object = { amount = { "$gte" = 1000 }, currency = "eur" } }
"""


def hookgate_config(
    folder: Path,
    port: int,
    admin: int,
    args: argparse.Namespace,
    sink_port: int | None,
    content: str = "",
) -> Path:
    destination = ""
    if sink_port is not None:
        destination = f"""
[destinations.sink]
url = "http://127.0.0.1:{sink_port}/in"
sources = ["bench"]
{TRANSFORM if content == "filter+transform" else ""}{FIVE_CLAUSES if content else ""}
"""
    config = folder / "hookgate.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin}"
[storage]
path = "bench.db"
sync = "{args.sync}"
[log]
level = "{args.log_level}"
[sources.bench]
path = "/hooks/bench"
event_type = "json:type"
[sources.bench.verify]
scheme = "hmac"
header = "X-Signature"
prefix = "sha256="
secrets = ["{SECRET}"]
{destination}
""")
    return config


def measure_bare(folder: Path, script: Path, args: argparse.Namespace) -> dict[str, float]:
    port = harness.free_port()
    with harness.process(
        harness.python(str(harness.ROOT / "bench/bare_server.py"), str(port)), folder / "bare.log"
    ):
        harness.wait_for_port(port)
        harness.run_wrk(
            f"http://127.0.0.1:{port}/hooks/bench", script, connections=args.connections, seconds=2
        )
        return harness.run_wrk(
            f"http://127.0.0.1:{port}/hooks/bench",
            script,
            connections=args.connections,
            seconds=args.seconds,
        )


def measure_hookgate(
    folder: Path,
    script: Path,
    args: argparse.Namespace,
    with_destination: bool,
    content: str = "",
) -> dict[str, float]:
    """``content``: "" (none), "filter" or "filter+transform" on the destination."""
    run = folder / (content.replace("+", "-") or ("relay" if with_destination else "ingest"))
    run.mkdir()
    port, admin = harness.free_port(), harness.free_port()
    sink_port = harness.free_port() if with_destination else None
    config = hookgate_config(run, port, admin, args, sink_port, content)
    sink = harness.python(str(harness.ROOT / "bench/bare_server.py"), str(sink_port or 0))
    with harness.process(sink, run / "sink.log") if with_destination else _nothing():
        if sink_port:
            harness.wait_for_port(sink_port)
        with harness.process(
            harness.python("-m", "hookgate", "serve", "-c", str(config)), run / "hookgate.log"
        ):
            harness.wait_for_ready(admin)
            figures = harness.run_wrk(
                f"http://127.0.0.1:{port}/hooks/bench",
                script,
                connections=args.connections,
                seconds=args.seconds,
            )
    with sqlite3.connect(run / "bench.db") as db:
        figures["committed"] = float(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    return figures


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def report(name: str, figures: dict[str, float], baseline: float) -> None:
    ratio = figures["requests_per_s"] / baseline
    extra = ""
    if "committed" in figures:
        answered = int(figures["requests"] - figures["non_2xx"])
        extra = f"  committed rows {int(figures['committed'])} / 2xx {answered}"
    print(
        f"{name:<34} {figures['requests_per_s']:>9.0f} req/s  {ratio:5.2f}x  "
        f"p50 {figures.get('p50_ms', 0):6.2f} ms  p99 {figures.get('p99_ms', 0):6.2f} ms  "
        f"non-2xx {int(figures['non_2xx'])}{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sync", choices=["full", "normal"], default="full")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    body = harness.webhook_body()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-") as tmp:
        folder = Path(tmp)
        script = harness.wrk_post_script(
            folder / "post.lua",
            body,
            {"Content-Type": "application/json", "X-Signature": signature},
        )
        print(
            f"wrk -t1 -c{args.connections} -d{args.seconds}s, {len(body)} B JSON body, "
            f"sync={args.sync}, log level {args.log_level}"
        )
        bare = measure_bare(folder, script, args)
        report("bare aiohttp (baseline)", bare, bare["requests_per_s"])
        report(
            "hookgate ingest, no destination",
            measure_hookgate(folder, script, args, False),
            bare["requests_per_s"],
        )
        plain = measure_hookgate(folder, script, args, True)
        report("hookgate ingest + 1 destination", plain, bare["requests_per_s"])
        for content, name in (
            ("filter", "  + 5-clause filter"),
            ("filter+transform", "  + 5-clause filter, jq transform"),
        ):
            figures = measure_hookgate(folder, script, args, True, content=content)
            report(name, figures, bare["requests_per_s"])
            ratio = figures["requests_per_s"] / plain["requests_per_s"]
            print(f"{content} vs the same destination without: {ratio:.2f}x")


if __name__ == "__main__":
    main()
