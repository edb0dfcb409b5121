"""Where a webhook's latency goes at a paced rate, stage by stage, from hookgate's own records.

A paced client posts signed ~1 KB JSON (each carrying its send time) through the
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

Usage: python bench/latency_stages.py [--rate 700] [--seconds 6] [--warmup 4]
                                      [--delivery-processes N] [--ingest-processes N]
                                      [--daemon-src DIR]
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
from pathlib import Path

import delivery


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def run(folder: Path, args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(delivery.sink(folder, "sink"))
        sink_url = f"http://127.0.0.1:{port}/in"
        daemon = delivery.Daemon(
            folder / "daemon",
            {"sink": {"url": sink_url}},
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
        ok, achieved = delivery.run_paced(daemon.ingress, args)
        stats = delivery.wait_for_events(port, warm + ok, timeout=60)
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
        f" ingest_processes = {args.ingest_processes or 'default'}"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=700)
    parser.add_argument("--seconds", dest="latency_seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--delivery-processes", type=int, default=None)
    parser.add_argument("--ingest-processes", type=int, default=None)
    parser.add_argument("--daemon-src", type=Path, default=None)
    args = parser.parse_args()
    if args.daemon_src is not None:
        os.environ["PYTHONPATH"] = str(args.daemon_src.resolve())
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-stages-") as tmp:
        run(Path(tmp), args)


if __name__ == "__main__":
    main()
