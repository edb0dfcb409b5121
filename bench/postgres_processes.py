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

Part 2 also prints where the CPU went in its window: every process started here
(/proc: user + system time; wrk's once it has ended and been waited for), by role, in
microseconds per webhook and in cores, with what the rest of the machine used and how
much stayed idle, and the database's transactions, rows and WAL per webhook. While one
process is bound by its daemon's core, two can reach ``2L / (L + O)`` times one, where
L is a daemon's CPU per webhook and O everything else's (PostgreSQL, wrk, the sink,
delivery processes) on the same cores; idle time with one process means it waits
rather than computes (docs/benchmarks.md).

Usage: python bench/postgres_processes.py [--seconds 8] [--concurrency 8] [--parts 1,2,3]
           [--delivery-processes N] [--e2e-connections 64] [--e2e-concurrency 32]
           [--profile FILE (py-spy)] [--perf FILE (perf record -a)]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import psycopg
from delivery import sink, sink_stats

sys.path.insert(0, str(harness.ROOT / "tests"))
from postgres_server import PostgresServer, find_binaries

BODY = harness.webhook_body(1)
TICKS = os.sysconf("SC_CLK_TCK")


# -- where the CPU goes: /proc, every process this benchmark started ------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """A process's parent and CPU seconds so far (user + system), or None once gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and ")"
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _role(cmdline: str, depth: int) -> str:
    """Which part of the benchmark a process is, from its top-level command."""
    if "hookgate serve" in cmdline:
        return "hookgate daemons" if depth == 1 else "their delivery processes"
    if "postgres" in cmdline:
        return "PostgreSQL (backends, WAL writer, ...)"
    if "wrk" in cmdline:
        return "wrk"
    if " sink " in cmdline:
        return "sink"
    return "other (this benchmark)"


def _machine_busy() -> tuple[float, float]:
    """All cores' busy and idle seconds so far (/proc/stat; iowait counts as idle)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICKS, idle / TICKS


@dataclass
class CpuSnapshot:
    by_pid: dict[int, tuple[str, float]]
    busy: float
    idle: float
    reaped: float  # children that ended and were waited for (wrk, in part 2's window)
    at: float


def cpu_snapshot() -> CpuSnapshot:
    """CPU seconds so far of every descendant of this process, by role."""
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    me, by_pid = os.getpid(), {}
    for pid, (_, seconds) in stats.items():
        chain = [pid]  # from pid up to a direct child of this benchmark
        while chain[-1] in stats and stats[chain[-1]][0] not in (me, 0, 1):
            chain.append(stats[chain[-1]][0])
        if chain[-1] in stats and stats[chain[-1]][0] == me:
            by_pid[pid] = (_role(_cmdline(chain[-1]), len(chain)), seconds)
    busy, idle = _machine_busy()
    reaped = os.times().children_user + os.times().children_system
    return CpuSnapshot(by_pid, busy, idle, reaped, time.monotonic())


def cpu_breakdown(before: CpuSnapshot, after: CpuSnapshot, webhooks: int) -> list[str]:
    """Lines: each role's CPU in the window, per webhook and as cores; the rest of the
    machine (not started here) and idle. A process that ended in the window is missed."""
    roles: dict[str, float] = collections.defaultdict(float)
    for pid, (role, seconds) in after.by_pid.items():
        roles[role] += seconds - before.by_pid.get(pid, (role, 0.0))[1]
    roles["wrk"] += after.reaped - before.reaped  # and py-spy or perf, when asked for
    elapsed = after.at - before.at
    ours = sum(roles.values())
    roles["rest of the machine (not this benchmark)"] = max(0.0, after.busy - before.busy - ours)
    roles["idle"] = after.idle - before.idle
    lines = []
    for role, seconds in sorted(roles.items(), key=lambda item: -item[1]):
        per = seconds / webhooks * 1e6 if webhooks else 0.0
        lines.append(f"      {role:42} {per:7.0f} us/webhook  {seconds / elapsed:5.2f} cores")
    return lines


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
    """A ``hookgate serve`` on ``storage`` (a TOML table body); its ingress port and pid."""
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
    with harness.process(args, folder / "daemon.log", cwd=folder) as proc:
        harness.wait_for_ready(admin)
        yield port, proc.pid


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


def pg_counters(url: str) -> dict[str, float]:
    """The database's counters: transactions, rows written, WAL records and syncs."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            b"SELECT xact_commit + xact_rollback, tup_inserted, tup_updated, tup_deleted"
            b" FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        wal = conn.execute(b"SELECT wal_records, wal_bytes, wal_sync FROM pg_stat_wal").fetchone()
    assert row is not None and wal is not None
    names = ("transactions", "rows inserted", "rows updated", "rows deleted")
    return {
        **dict(zip(names, map(float, row), strict=True)),
        **dict(
            zip(("WAL records", "WAL bytes", "WAL syncs (fsync)"), map(float, wal), strict=True)
        ),
    }


def pg_breakdown(before: dict[str, float], after: dict[str, float], webhooks: int) -> list[str]:
    per_webhook = {name: (after[name] - before[name]) / max(webhooks, 1) for name in before}
    return [
        f"      PostgreSQL {name:31} {value:7.2f} per webhook"
        for name, value in per_webhook.items()
    ]


@contextlib.contextmanager
def py_spy(daemons: list[tuple[int, int]], out: Path, seconds: int) -> Iterator[None]:
    """py-spy samples (raw, 200/s) of every daemon and its delivery processes meanwhile."""
    spy = str(Path(sys.executable).with_name("py-spy"))
    spies = []
    for _, pid in daemons:
        args = [spy, "record", "--format", "raw", "-r", "200", "--subprocesses", "--threads"]
        args += ["-d", str(seconds), "-o", f"{out}.{pid}", "-p", str(pid)]
        spies.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    yield
    for spy_process in spies:
        spy_process.wait()


@contextlib.contextmanager
def perf(out: Path, seconds: int) -> Iterator[None]:
    """``perf record`` of the whole machine meanwhile: where PostgreSQL's CPU goes."""
    args = ["perf", "record", "-a", "-g", "-F", "499", "-o", str(out), "--", "sleep", str(seconds)]
    with harness.process(args, out.with_suffix(".log")) as process:
        yield
        process.wait()


def end_to_end_rate(
    server: PostgresServer, folder: Path, processes: int, args: argparse.Namespace
) -> tuple[float, list[str]]:
    """Webhooks posted by wrk to ``processes`` daemons and delivered, per second, and
    where the CPU went meanwhile."""
    url = server.new_database()
    script = harness.wrk_post_script(folder / "e2e.lua", BODY, {"Content-Type": "application/json"})
    with contextlib.ExitStack() as stack:
        sink_port = stack.enter_context(sink(folder / f"e2e-sink-{processes}", f"e2e-{processes}"))
        destination = {"url": f"http://127.0.0.1:{sink_port}/", "concurrency": args.e2e_concurrency}
        daemons = [
            stack.enter_context(
                daemon(
                    folder / f"e2e-{processes}-{i}",
                    f'url = "{url}"',
                    destination,
                    args.delivery_processes,
                )
            )
            for i in range(processes)
        ]
        counters = pg_counters(url)
        started, before = time.time(), cpu_snapshot()
        with contextlib.ExitStack() as loads:
            runs = [
                loads.enter_context(
                    harness.process(
                        [
                            harness.require_wrk(),
                            "-t1",
                            f"-c{args.e2e_connections // processes}",
                            f"-d{args.seconds}s",
                            "-s",
                            str(script),
                            f"http://127.0.0.1:{port}/hooks/bench",
                        ],
                        folder / f"wrk-{processes}-{port}.log",
                    )
                )
                for port, _ in daemons
            ]
            if args.profile is not None:
                out = args.profile.with_suffix(f".{processes}.txt")
                loads.enter_context(py_spy(daemons, out, args.seconds))
            if args.perf is not None:
                loads.enter_context(perf(args.perf.with_suffix(f".{processes}.data"), args.seconds))
            for run in runs:
                run.wait()
        posted = time.time()
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(b"SELECT count(*) FROM messages").fetchone()
            accepted = int(row[0]) if row else 0
        deadline = time.monotonic() + 120
        while sink_stats(sink_port)["events"] < accepted and time.monotonic() < deadline:
            time.sleep(0.1)
        last = sink_stats(sink_port)["last"] or time.time()
        after = cpu_snapshot()
        time.sleep(1.5)  # backends report their counters at most once a second
        database = pg_breakdown(counters, pg_counters(url), accepted)
    drain = f"      accepted {accepted / (posted - started):.0f}/s while wrk ran; last delivery"
    drain += f" {last - posted:.2f} s after wrk's end"
    return accepted / (last - started), [drain, *cpu_breakdown(before, after, accepted), *database]


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
    if len(sys.argv) > 1 and sys.argv[1] == "sink":  # the delayed sink of part 1
        run_sink_delayed(int(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backlog", type=int, default=20_000)
    # 0: each daemon sends its own requests, one core per process (before issue 11).
    parser.add_argument("--delivery-processes", type=int, default=1)
    parser.add_argument("--e2e-connections", type=int, default=64, help="part 2: wrk's, in all")
    parser.add_argument("--e2e-concurrency", type=int, default=32, help="part 2: per process")
    parser.add_argument("--profile", type=Path, help="part 2: py-spy samples to FILE.N.txt.PID")
    parser.add_argument("--perf", type=Path, help="part 2: perf record -a to FILE.N.data")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 2")
    args = parser.parse_args()
    args.parts = {int(part) for part in args.parts.split(",")}
    binaries = find_binaries()
    if binaries is None:
        sys.exit("PostgreSQL is not installed: run .ci/setup")
    server = PostgresServer(binaries, durable=True)
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="hookgate-bench-") as tmp:
            folder = Path(tmp)
            if 1 in args.parts:
                print(f"1. deliveries/s to a sink adding 50 ms, concurrency {args.concurrency}")
                rates = {n: delivery_rate(server, folder, n, args) for n in (1, 2, 3)}
                for n, rate in rates.items():
                    print(f"   {n} process(es): {rate:8.1f}/s  {rate / rates[1]:.2f}x")
            if 2 in args.parts:
                print("2. CPU-bound end to end (wrk -> hookgate -> instant sink), webhooks/s;")
                print("   CPU in the window by process, per webhook delivered and in cores")
                e2e = {n: end_to_end_rate(server, folder, n, args) for n in (1, 2)}
                for n, (rate, cpu) in e2e.items():
                    print(f"   {n} process(es): {rate:8.1f}/s  {rate / e2e[1][0]:.2f}x")
                    print("\n".join(cpu))
            if 3 in args.parts:
                print("3. ingest, one process, no destination, webhooks/s (2xx)")
                sqlite = ingest_rate(folder, 'path = "bench.db"\nsync = "full"', "sqlite", args)
                postgres = ingest_rate(folder, f'url = "{server.new_database()}"', "pg", args)
                print(f"   SQLite (sync = full):        {sqlite:8.1f}/s  1.00x")
                print(
                    f"   PostgreSQL (fsync, durable): {postgres:8.1f}/s  {postgres / sqlite:.2f}x"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
