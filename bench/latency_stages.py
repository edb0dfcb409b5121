"""Where a webhook's latency goes at a paced rate, stage by stage, from hookgate's own records.

A paced client (``--client``: wrk with a Lua schedule, or the Python client; see
bench/delivery.py) posts signed ~1 KB JSON, each with its send time, through the
daemon to the bare sink, with one destination at its defaults and ``sync = "full"``.
After a warm-up at the same rate, the window's webhooks are split by the times the
daemon itself writes down:

- sent -> received by the sink: the latency that bench/targets.py's part 6 reports
- accepted -> attempt started: ``messages.received_at`` to ``attempts.started_at``
  (the message's group commit, the wake-up, the claim, waiting for a free slot)
- attempt: ``attempts.duration_ms`` (hand-off to the delivery process, its request to
  the sink, the answer back)
- answered -> outcome committed: ``deliveries.updated_at`` less the attempt's end
  (not part of the latency: the slot is free once answered)

and the window's group commits by duration, from the daemon's own histogram
``hookgate_group_commit_seconds`` (GET /metrics before and after the window): a commit
that stalls (an fsync, a WAL checkpoint) holds every webhook queued behind it. Last,
the window's slowest moments: each 100 ms of send times in which a webhook took over
``--slow-ms`` end to end, with how many did and the slowest, so that a p99 made by one
stall shows as one slice and a p99 made by a slow path shows as many.

Usage: python bench/latency_stages.py [--rate 700] [--seconds 6] [--warmup 4]
                                      [--delivery-processes N] [--ingest-processes N]
                                      [--daemon-src DIR] [--slow-ms 10]
--daemon-src runs the daemon from another checkout's src/ (to compare with main).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import tempfile
import time
import urllib.request
from pathlib import Path

import delivery


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def commit_buckets(admin_port: int) -> dict[float, float]:
    """The cumulative counts of ``hookgate_group_commit_seconds``, by upper bound (s)."""
    url = f"http://127.0.0.1:{admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("hookgate_group_commit_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def commit_histogram(before: dict[float, float], after: dict[float, float]) -> str:
    """The window's commits per duration bucket: ``<= 1 ms: 812, <= 2.5 ms: 40, ...``."""
    parts, below = [], 0.0
    for bound in sorted(after):
        count = after[bound] - before.get(bound, 0.0)
        if count - below:
            label = "more" if bound == float("inf") else f"<= {bound * 1000:g} ms"
            parts.append(f"{label}: {count - below:.0f}")
        below = count
    return ", ".join(parts)


def slow_slices(sent_times: list[float], latencies: list[float], slow_ms: float) -> str:
    """The 100 ms slices of send time with a latency over ``slow_ms``: offset, count, max."""
    if not sent_times:
        return "none recorded"
    start = min(sent_times)
    slices: dict[int, list[float]] = {}
    for sent, took in zip(sent_times, latencies, strict=True):
        if took * 1000 > slow_ms:
            slices.setdefault(int((sent - start) * 10), []).append(took * 1000)
    if not slices:
        return "none"
    # The epoch time lets these be matched with a log's wall-clock times.
    return f"from the window's first send (epoch {start:.3f}): " + ", ".join(
        f"{index / 10:.1f}s: {len(slow)} (max {max(slow):.0f} ms)"
        for index, slow in sorted(slices.items())
    )


def run(folder: Path, args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(delivery.sink(folder, "sink"))
        sink_url = f"http://127.0.0.1:{port}/in"
        daemon = delivery.Daemon(
            folder / "daemon",
            {"sink": {"url": sink_url, **delivery.LATENCY_DESTINATION}},
            "full",
            args.delivery_processes,
            args.ingest_processes,
        )
        stack.enter_context(daemon.running())
        daemon.ready_after(time.monotonic())
        warm_args = argparse.Namespace(**{**vars(args), "latency_seconds": args.warmup})
        sent, _ = delivery.run_paced(daemon.ingress, warm_args)
        warm = delivery.wait_for_events(port, sent, timeout=60)["events"]
        window_start = time.time()
        commits_before = commit_buckets(daemon.admin)
        ok, achieved = delivery.run_paced(daemon.ingress, args)
        stats = delivery.wait_for_events(port, warm + ok, timeout=60)
        commits = commit_histogram(commits_before, commit_buckets(daemon.admin))
    with contextlib.closing(sqlite3.connect(daemon.db)) as db:
        rows = db.execute(
            "SELECT m.received_at, a.started_at, a.duration_ms, d.updated_at"
            " FROM messages m JOIN deliveries d ON d.message_id = m.id"
            " JOIN attempts a ON a.delivery_id = d.id WHERE m.received_at >= ?",
            (window_start,),
        ).fetchall()
    stages = {
        "sent -> received by the sink": stats["latencies"][warm:],
        "accepted -> attempt started": [started - got for got, started, _, _ in rows],
        "attempt (hand-off, request, answer)": [ms / 1000 for _, _, ms, _ in rows],
        "answered -> outcome committed": [
            updated - started - ms / 1000 for _, started, ms, updated in rows
        ],
    }
    print(
        f"paced {args.rate}/s (achieved {achieved:.0f}/s) for {args.latency_seconds}s after"
        f" {args.warmup}s of warm-up; {ok} accepted, {len(rows)} attempts in the window;"
        f" ingest_processes = {args.ingest_processes or 'default'};"
        f" client {args.latency_client}"
        f"{f', daemon from {args.daemon_src}' if args.daemon_src else ''};"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    for name, values in stages.items():
        if not values:
            continue
        print(
            f"{name:<36} p50 {percentile(values, 0.5):7.2f}  p90 {percentile(values, 0.9):7.2f}"
            f"  p99 {percentile(values, 0.99):7.2f}  max {percentile(values, 1.0):7.2f} ms"
        )
    print(f"group commits in the window: {commits}")
    slow = slow_slices(stats["sent_times"][warm:], stats["latencies"][warm:], args.slow_ms)
    print(f"100 ms slices of the window with webhooks over {args.slow_ms:g} ms: {slow}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=700)
    parser.add_argument("--seconds", dest="latency_seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--delivery-processes", type=int, default=None)
    parser.add_argument("--ingest-processes", type=int, default=None)
    parser.add_argument("--daemon-src", type=Path, default=None)
    parser.add_argument("--slow-ms", type=float, default=10.0)
    parser.add_argument(
        "--client",
        dest="latency_client",
        choices=("wrk", "python"),
        default="wrk",
        help="the paced sender (bench/delivery.py: PACED_WRK, paced_client)",
    )
    args = parser.parse_args()
    if args.daemon_src is not None:
        os.environ["PYTHONPATH"] = str(args.daemon_src.resolve())
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-stages-") as tmp:
        run(Path(tmp), args)


if __name__ == "__main__":
    main()
