"""Every throughput target of issue 11 in one run, each beside its baseline from the same run.

Baselines: the bare aiohttp + uvloop server (bench/bare_server.py) and wrk posting
straight to the bare sink that hookgate delivers to (bench/delivery.py's sink). The
machine is shared, so each comparison is interleaved: a baseline is measured right
before and right after what it is compared with, and their mean is the baseline.

1. ingest alone (no destination) / bare aiohttp                     target >= 0.80x
2. maximum ingest with one destination attached (wrk at full speed)
3. one destination's delivery rate with batch_max = 1 (draining a backlog) / (2)
4. the backlog over --hold seconds at 90 % of (2), printed as it goes
                                                     target: at the end < 1 s of traffic
5. end to end: webhooks/s arriving at the sink after a warm-up, over a window in which
   the backlog does not grow / wrk straight to the sink, and / bare aiohttp, with the
   destination's batch_max = 1 (and, with --batch-max N, again batching N per POST;
   the sink counts the webhooks in each batch)                     target >= 0.35x
   Also prints the CPU time each hookgate process used in the window per webhook
   delivered (from /proc: the daemon, its event loop thread, its delivery and ingest
   processes): on 2 cores shared with wrk and the sink, end to end is bound by it.
6. added latency (p50, p99) at half of (5) / the same client straight to the sink
   (--latency-client: wrk paced by a Lua schedule, the default, or the Python client;
   bench/delivery.py: PACED_WRK and its caveat)                    target p99 < 10 ms
7. peak RSS of hookgate (the daemon and its delivery processes) with --pending
   deliveries / an empty database                                  target < 200 MB

Usage: python bench/targets.py [--seconds 10] [--hold 60] [--pending 1000000]
                               [--delivery-processes N] [--ingest-processes N]
                               [--batch-max N] [--daemon-src DIR] [--e2e-rate N]
--daemon-src runs the daemon from another checkout's src/ (to compare with main).
--ingest-processes N: every part runs with server.ingest_processes = N, and part 1
measures ingest alone both with 0 (the daemon serves the ingress) and with N.
--e2e-rate N: part 5 is wrk paced at about N webhooks/s only, to compare the CPU per
webhook of two builds at one load (at full speed, the rate and the backlog move too).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import delivery
import harness

PACED_CONNECTIONS = 128


def pending(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return int(
            conn.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()[0]
        )


def paced_script(folder: Path, name: str, rate: float, latency_ms: float) -> Path:
    """wrk's script with a pause before each request: about ``rate`` requests/s in all."""
    script = delivery.wrk_script(folder)
    wait = max(1, round(PACED_CONNECTIONS * 1000 / rate - latency_ms))
    paced = folder / f"{name}.lua"
    paced.write_text(script.read_text() + f"function delay()\n  return {wait}\nend\n")
    return paced


def in_thread(work: Callable[[], dict[str, float]]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(work()))
    thread.start()
    return thread, result


# -- baselines ---------------------------------------------------------------------


def bare(folder: Path, args: argparse.Namespace) -> float:
    port = harness.free_port()
    server = harness.python(str(harness.ROOT / "bench/bare_server.py"), str(port))
    with harness.process(server, folder / f"bare-{port}.log"):
        harness.wait_for_port(port)
        return wrk_max(f"http://127.0.0.1:{port}/hooks/bench", folder, args)["requests_per_s"]


def straight_to_sink(folder: Path, args: argparse.Namespace) -> float:
    with delivery.sink(folder, f"direct-{harness.free_port()}") as port:
        return wrk_max(f"http://127.0.0.1:{port}/in", folder, args)["requests_per_s"]


def wrk_max(url: str, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    script = delivery.wrk_script(folder)
    harness.run_wrk(url, script, connections=args.connections, seconds=2)
    return harness.run_wrk(url, script, connections=args.connections, seconds=args.seconds)


def interleaved(
    baseline: Callable[[], float], measure: Callable[[], dict[str, Any]]
) -> tuple[float, dict[str, Any], tuple[float, float]]:
    before = baseline()
    figures = measure()
    after = baseline()
    return (before + after) / 2, figures, (before, after)


# -- hookgate ----------------------------------------------------------------------


@contextlib.contextmanager
def relay(
    folder: Path, args: argparse.Namespace, **table: Any
) -> Iterator[tuple[delivery.Daemon, int, Any]]:
    """A sink, and hookgate delivering to it; yields (daemon, sink port, daemon process)."""
    with delivery.sink(folder, "sink") as port:
        destinations = {"sink": {"url": f"http://127.0.0.1:{port}/in", **table}}
        daemon = make_daemon(folder / "daemon", destinations, args)
        with daemon.running() as proc:
            daemon.ready_after(time.monotonic())
            yield daemon, port, proc


def make_daemon(
    folder: Path,
    destinations: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    ingest_processes: int | None = None,
) -> delivery.Daemon:
    """A daemon with the run's --delivery-processes and --ingest-processes (or the one given)."""
    ingest = args.ingest_processes if ingest_processes is None else ingest_processes
    return delivery.Daemon(folder, destinations, "full", args.delivery_processes, ingest)


def ingest_alone(
    folder: Path, args: argparse.Namespace, ingest_processes: int | None = None
) -> dict[str, float]:
    daemon = make_daemon(folder, {}, args, ingest_processes)
    with daemon.running() as proc:
        daemon.ready_after(time.monotonic())
        pids = [proc.pid, *children(proc.pid)]
        before = [cpu_seconds(pid) for pid in pids]
        started = time.monotonic()
        figures = wrk_max(daemon.ingress, folder, args)
        took = time.monotonic() - started
        used = [(cpu_seconds(pid) - b) / took for pid, b in zip(pids, before, strict=True)]
    # Share of one core each process used over the wrk runs (warm-up included).
    figures["cpu_daemon"] = used[0]
    figures["cpu_children"] = sum(used[1:])
    return figures


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU time (user + system) that ``pid`` used so far: all its threads, or ``thread``."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_with_destination(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    with relay(folder, args) as (daemon, _, _):
        figures = wrk_max(daemon.ingress, folder, args)
        figures["pending_after"] = pending(daemon.db)
    return figures


def drain_rate(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """batch_max = 1: how fast one destination delivers a pre-built backlog after resume."""
    with delivery.sink(folder, "sink") as port:
        table = {"url": f"http://127.0.0.1:{port}/in", "batch_max": 1}
        daemon = make_daemon(folder, {"sink": table}, args)
        delivery.build_backlog(daemon.db, args.backlog, "sink", paused=True)
        with daemon.running():
            daemon.ready_after(time.monotonic())
            resumed = time.time()
            daemon.resume("sink")
            stats = delivery.wait_for_events(port, args.backlog, timeout=180)
    took = stats["last"] - resumed
    return {"per_s": stats["events"] / took, "s": took}


def hold(
    folder: Path, args: argparse.Namespace, rate: float, latency_ms: float
) -> dict[str, float]:
    """Paced wrk at ``rate`` for --hold seconds; print the backlog every --every seconds."""
    script = paced_script(folder, "hold", rate, latency_ms)
    with relay(folder, args) as (daemon, port, _):
        started = time.monotonic()
        thread, load = in_thread(
            lambda: harness.run_wrk(
                daemon.ingress, script, connections=PACED_CONNECTIONS, seconds=args.hold
            )
        )
        backlog = 0
        while thread.is_alive():
            time.sleep(min(args.every, max(0.1, args.hold - (time.monotonic() - started))))
            backlog = pending(daemon.db)
            delivered = delivery.sink_stats(port)["events"]
            print(
                f"   t = {time.monotonic() - started:5.1f}s  backlog {backlog:>7}"
                f"  delivered {delivered:>8}"
            )
        thread.join()
        backlog = pending(daemon.db)
    achieved = load["requests"] / args.hold
    return {"rate": achieved, "backlog": backlog, "backlog_s": backlog / max(achieved, 1)}


def end_to_end(
    folder: Path,
    args: argparse.Namespace,
    rate: float | None,
    latency_ms: float = 0.0,
    batch_max: int = 1,
) -> dict[str, float]:
    """wrk (full speed, or paced at ``rate``) for warm-up + window; the window's figures."""
    total = args.warmup + args.seconds
    if rate is None:
        script, connections = delivery.wrk_script(folder), args.connections
    else:
        script, connections = paced_script(folder, "e2e", rate, latency_ms), PACED_CONNECTIONS
    with relay(folder, args, batch_max=batch_max) as (daemon, port, proc):
        thread, load = in_thread(
            lambda: harness.run_wrk(daemon.ingress, script, connections=connections, seconds=total)
        )
        time.sleep(args.warmup)
        processes = hookgate_processes(proc.pid)
        cpu = {name: -seconds() for name, seconds in processes.items()}
        first = (delivery.sink_stats(port)["events"], pending(daemon.db), time.monotonic())
        time.sleep(args.seconds)
        last = (delivery.sink_stats(port)["events"], pending(daemon.db), time.monotonic())
        for name, seconds in processes.items():
            cpu[name] += seconds()
        thread.join()
    window = last[2] - first[2]
    delivered = max(1, last[0] - first[0])
    return {
        "ingest_per_s": load["requests"] / total,
        "delivered_per_s": (last[0] - first[0]) / window,
        "backlog_start": first[1],
        "backlog_end": last[1],
        "p50_ms": load.get("p50_ms", 0.0),
        **{f"us {name}": 1e6 * used / delivered for name, used in cpu.items()},
    }


def hookgate_processes(pid: int) -> dict[str, Callable[[], float]]:
    """Each hookgate process's CPU-time reader (all threads; the daemon's loop thread apart),
    by what it is; children of a kind are summed."""
    readers: dict[str, Callable[[], float]] = {
        "daemon": lambda: cpu_seconds(pid),
        "daemon loop": lambda: cpu_seconds(pid, thread=pid),
    }
    kinds: dict[str, list[int]] = {}
    for child in children(pid):
        command = Path(f"/proc/{child}/cmdline").read_bytes()
        kind = "delivery" if b"cli.delivery" in command else "ingest"
        kinds.setdefault(f"{kind} processes", []).append(child)
    for name, pids in kinds.items():
        readers[name] = lambda pids=pids: sum(cpu_seconds(p) for p in pids)  # type: ignore[misc]
    return readers


def added_latency(folder: Path, args: argparse.Namespace, rate: int) -> dict[str, float]:
    args.rate = rate
    direct = delivery.latency(folder / "direct", args, relay=False, warmup=args.warmup)
    through = delivery.latency(
        folder / "relay", args, relay=True, processes=args.delivery_processes, warmup=args.warmup
    )
    return {
        "rate": through["rate"],
        "direct_p50": direct["p50"],
        "direct_p99": direct["p99"],
        "p50": through["p50"],
        "p99": through["p99"],
        "added_p50": through["p50"] - direct["p50"],
        "added_p99": through["p99"] - direct["p99"],
    }


def peak_rss(folder: Path, args: argparse.Namespace, count: int) -> dict[str, float]:
    """Peak RSS (VmHWM) of the daemon plus its children over --rss-seconds of delivering."""
    with delivery.sink(folder, "sink") as port:
        table = {"url": f"http://127.0.0.1:{port}/in"}
        daemon = make_daemon(folder, {"sink": table}, args)
        if count:
            delivery.build_backlog(daemon.db, count, "sink", paused=False)
        with daemon.running() as proc:
            daemon.ready_after(time.monotonic())
            time.sleep(args.rss_seconds)
            pids = [proc.pid, *children(proc.pid)]
            peak = sum(delivery.status_kib(pid, "VmHWM") for pid in pids) / 1024
            parent = delivery.status_kib(proc.pid, "VmHWM") / 1024
    return {"peak_mb": peak, "parent_mb": parent, "processes": len(pids)}


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


# -- the run -----------------------------------------------------------------------


def part_1(place: Callable[[str], Path], args: argparse.Namespace) -> None:
    """Ingest alone with the daemon serving the ingress, and with --ingest-processes."""
    counts = [0] if not args.ingest_processes else [0, args.ingest_processes]
    print(f"\n== 1. ingest alone, wrk {args.seconds}s")
    for count in counts:
        base, alone, (b1, b2) = interleaved(
            lambda: bare(place("bare"), args),
            lambda count=count: ingest_alone(place("ingest"), args, count),  # type: ignore[misc]
        )
        print(f"bare aiohttp (baseline, before/after)  {b1:>8.0f} / {b2:.0f} req/s")
        print(
            f"hookgate, ingest_processes = {count:<2}        {alone['requests_per_s']:>8.0f}"
            f" webhooks/s  {alone['requests_per_s'] / base:5.2f}x   (target >= 0.80x; p50"
            f" {alone.get('p50_ms', 0):.1f} ms, p99 {alone.get('p99_ms', 0):.1f} ms)"
        )
        cpu = alone["cpu_daemon"] + alone["cpu_children"]
        print(
            f"   CPU: daemon {alone['cpu_daemon']:.0%} of a core, its children"
            f" {alone['cpu_children']:.0%}; {1e6 * cpu / alone['requests_per_s']:.0f} us"
            " of CPU per webhook in all"
        )


def part_5(place: Callable[[str], Path], args: argparse.Namespace) -> float:
    """End to end with batch_max = 1 (and with --batch-max N); returns the batch_max = 1 rate."""
    print(f"\n== 5. end to end, {args.warmup}s warm-up then a {args.seconds}s window")
    if args.e2e_rate:
        # One offered rate for the builds compared: CPU per webhook at the same load.
        fixed = end_to_end(place("e2e-fixed"), args, args.e2e_rate)
        print(
            f"paced at {args.e2e_rate}/s   ingest {fixed['ingest_per_s']:>6.0f}/s, delivered"
            f" {fixed['delivered_per_s']:>6.0f}/s; backlog {fixed['backlog_start']:.0f} ->"
            f" {fixed['backlog_end']:.0f}"
        )
        report_cpu(fixed)
        return fixed["delivered_per_s"]
    rates: dict[int, float] = {}
    for batch_max in sorted({1, args.batch_max}):
        print(f"-- destination batch_max = {batch_max}")
        sink_base, full, (s1, s2) = interleaved(
            lambda: straight_to_sink(place("direct"), args),
            lambda batch_max=batch_max: end_to_end(  # type: ignore[misc]
                place("e2e-max"), args, None, batch_max=batch_max
            ),
        )
        bare_rate = bare(place("bare-e2e"), args)
        report_e2e("wrk at full speed", full, sink_base, bare_rate)
        rate = full["delivered_per_s"]
        if full["backlog_end"] > full["backlog_start"]:
            # The backlog grew: pace ingest at what was delivered, and measure again.
            paced = end_to_end(place("e2e-paced"), args, rate, full["p50_ms"], batch_max)
            report_e2e(f"paced at {rate:.0f}/s", paced, sink_base, bare_rate)
            rate = paced["delivered_per_s"]
        print(f"baselines: wrk to the sink {s1:.0f} / {s2:.0f} req/s, bare aiohttp {bare_rate:.0f}")
        rates[batch_max] = rate
    return rates[1]


def _setting(value: int | None) -> str:
    """A count as given on the command line; 0 is a setting too, not the default."""
    return "default" if value is None else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run / e2e window")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--hold", type=int, default=60)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--latency-seconds", type=float, default=6.0)
    parser.add_argument(
        "--latency-rate", type=int, default=None, help="part 6's rate when part 5 is not run"
    )
    parser.add_argument(
        "--latency-client",
        choices=("wrk", "python"),
        default="wrk",
        help="part 6's paced sender (bench/delivery.py: PACED_WRK, paced_client)",
    )
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument(
        "--batch-max", type=int, default=1, help="part 5 also with a destination batching N"
    )
    parser.add_argument(
        "--e2e-rate",
        type=int,
        default=None,
        help="part 5 only, paced at this rate: CPU per webhook of two builds at one load",
    )
    parser.add_argument("--rss-seconds", type=float, default=10.0)
    parser.add_argument("--delivery-processes", type=int, default=None)
    parser.add_argument("--ingest-processes", type=int, default=None)
    parser.add_argument("--daemon-src", type=Path, default=None)
    parser.add_argument("--parts", default="1,2,3,4,5,6,7")
    args = parser.parse_args()
    args.sync = "full"
    if args.daemon_src is not None:
        os.environ["PYTHONPATH"] = str(args.daemon_src.resolve())
    harness.require_wrk()
    parts = set(args.parts.split(","))
    started = time.monotonic()
    print(
        f"wrk -t1 -c{args.connections}, ~1 KB signed JSON, sync = full,"
        f" delivery_processes = {_setting(args.delivery_processes)},"
        f" ingest_processes = {_setting(args.ingest_processes)}"
        f"{f', daemon from {args.daemon_src}' if args.daemon_src else ''}"
    )
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-targets-") as tmp:
        run(Path(tmp), args, parts)
    print(f"\n(bench took {time.monotonic() - started:.0f}s)")


def run(folder: Path, args: argparse.Namespace, parts: set[str]) -> None:
    def place(name: str) -> Path:
        path = folder / f"{name}-{harness.free_port()}"
        path.mkdir(parents=True)
        return path

    with_destination: dict[str, Any] = {}
    e2e_rate = 0.0
    if "1" in parts:
        part_1(place, args)
    if parts & {"2", "3", "4"}:
        with_destination = ingest_with_destination(place("ingest-dest"), args)
        print(f"\n== 2. ingest with one destination attached, wrk {args.seconds}s")
        print(
            f"hookgate + 1 destination               {with_destination['requests_per_s']:>8.0f}"
            f" webhooks/s  (p50 {with_destination.get('p50_ms', 0):.1f} ms; backlog at the"
            f" end {with_destination['pending_after']:.0f})"
        )
    if "3" in parts:
        drained = drain_rate(place("drain"), args)
        ratio = drained["per_s"] / with_destination["requests_per_s"]
        print(f"\n== 3. one destination, batch_max = 1, draining {args.backlog}")
        print(
            f"delivery rate                          {drained['per_s']:>8.0f} deliveries/s"
            f"  {ratio:5.2f}x the ingest rate of part 2  (target >= 1.00x)"
        )
    if "4" in parts:
        rate = 0.9 * with_destination["requests_per_s"]
        print(f"\n== 4. backlog at 90 % of 2 ({rate:.0f}/s asked) for {args.hold}s")
        held = hold(place("hold"), args, rate, with_destination.get("p50_ms", 0))
        print(
            f"achieved {held['rate']:.0f}/s; backlog at the end {held['backlog']:.0f}"
            f" = {held['backlog_s']:.2f} s of traffic  (target < 1 s)"
        )
    if "5" in parts:
        e2e_rate = part_5(place, args)
    if "6" in parts:
        rate = int(e2e_rate / 2) if e2e_rate else args.latency_rate or 500
        lat = added_latency(place("latency"), args, rate)
        print(
            f"\n== 6. latency at half of 5: paced {rate}/s for {args.latency_seconds}s"
            f" after {args.warmup}s of warm-up at that rate ({args.latency_client} client)"
        )
        print(
            f"straight to the sink (baseline)   p50 {lat['direct_p50']:6.2f} ms"
            f"  p99 {lat['direct_p99']:6.2f} ms"
        )
        print(
            f"through hookgate ({lat['rate']:.0f}/s)       p50 {lat['p50']:6.2f} ms"
            f"  p99 {lat['p99']:6.2f} ms"
        )
        print(
            f"added                            p50 {lat['added_p50']:6.2f} ms"
            f"  p99 {lat['added_p99']:6.2f} ms  (target p99 < 10 ms)"
        )
    if "7" in parts:
        empty = peak_rss(place("rss-empty"), args, 0)
        full_db = peak_rss(place("rss-full"), args, args.pending)
        print(f"\n== 7. peak RSS over {args.rss_seconds:.0f}s, {args.pending} pending")
        for name, figures in (("empty database (baseline)", empty), ("with the backlog", full_db)):
            print(
                f"{name:<28} {figures['peak_mb']:6.1f} MB in {figures['processes']:.0f}"
                f" processes (daemon {figures['parent_mb']:.1f} MB)"
                f"  {figures['peak_mb'] / empty['peak_mb']:5.2f}x  (target < 200 MB)"
            )


def report_e2e(name: str, figures: dict[str, float], sink_rate: float, bare_rate: float) -> None:
    grew = figures["backlog_end"] - figures["backlog_start"]
    print(
        f"{name:<22} ingest {figures['ingest_per_s']:>6.0f}/s, delivered"
        f" {figures['delivered_per_s']:>6.0f}/s  {figures['delivered_per_s'] / sink_rate:5.3f}x"
        f" wrk-to-sink, {figures['delivered_per_s'] / bare_rate:5.3f}x bare  (target >= 0.35x);"
        f" backlog {figures['backlog_start']:.0f} -> {figures['backlog_end']:.0f}"
        f" ({'growing' if grew > 0 else 'not growing'})"
    )
    report_cpu(figures)


def report_cpu(figures: dict[str, float]) -> None:
    cpu = {k.removeprefix("us "): v for k, v in figures.items() if k.startswith("us ")}
    total = sum(v for k, v in cpu.items() if k != "daemon loop")
    print(
        "   CPU per webhook delivered in the window: "
        + ", ".join(f"{k} {v:.0f} us" for k, v in cpu.items())
        + f"; hookgate in all {total:.0f} us"
    )


if __name__ == "__main__":
    main()
