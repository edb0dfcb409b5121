"""Where a webhook's CPU time goes: py-spy samples of the loaded daemon, by stage.

wrk posts signed ~1 KB JSON to the ingress for --seconds while one destination (a bare
sink) receives the deliveries; py-spy samples every hookgate process (the parent and,
with `server.delivery_processes`, its delivery children) meanwhile. Each sample is put
in the first stage whose frame it contains, and each stage's CPU time is divided by
the webhooks ingested (ingest stages) or delivered (delivery stages) in the window:
microseconds of one core per webhook.

Usage: python bench/profile.py [--seconds 8] [--delivery-processes N] [--raw FILE]
                               [--drain N] [--daemon-src DIR] [--cpu] [--native]
                               [--ingest-processes N] [--alone] [--sync full]
--alone: ingest alone, no destination (issue 11's part 1); with --ingest-processes N
the ingest children are sampled too, and their stages are named "ingest process: ...".
--sync sets storage.sync (the targets use full; normal shows what the fsync costs).
--drain profiles delivery alone (a pre-built backlog of N, batch_max = 1) instead of
wrk's load; --daemon-src runs the daemon from another checkout's src/ (main: before).
--cpu samples nothing: it reads each hookgate process's CPU time (user + system, all
threads, from /proc) over the same window, per webhook, and wrk's and the machine's idle
time beside them. py-spy's samples say where the
time goes but lean towards lines that make system calls, and pausing the process to
sample costs it time too; these totals are the figures to compare before and after.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import delivery
import harness

RATE = 200  # samples per second per thread

# (stage, substrings of a frame), tried in order: the first that a stack contains wins.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("delivery: aiohttp client", ("aiohttp/client", "aiohttp/connector", "(aiohttp/streams")),
    # children.py: the framed socket (this profile runs no ingest processes).
    ("delivery: hand-off to a delivery process", ("outbound/processes.py", "hookgate/children.py")),
    ("delivery: outcome commit (writer)", ("record_attempts", "_record (")),
    ("delivery: claims, request building", ("outbound/",)),
    ("ingest: hookgate handler", ("inbound/listener.py",)),
    ("writer: group commit, event loop side", ("store/sqlite/writer.py",)),
    ("ingest: HTTP server (inbound/http1.py)", ("inbound/http1.py",)),
    ("ingest: aiohttp server", ("aiohttp/web_protocol", "aiohttp/http_parser", "aiohttp/web")),
    ("aiosqlite calls, event loop side", ("aiosqlite", "sqlite3")),
]


def _waiting_line() -> str:
    """The frame of an aiosqlite thread waiting for work (py-spy samples it as busy)."""
    import aiosqlite.core

    source = Path(aiosqlite.core.__file__).read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "tx.get()" in text)
    return f"_connection_worker_thread (aiosqlite/core.py:{line})"


WAITING = _waiting_line()

# An ingest process's stages (inbound/processes.py): all its time is the webhooks'.
INGEST_STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("verification (providers)", ("hookgate/providers/",)),
    ("commit frame to the daemon, answer frames", ("inbound/processes.py", "hookgate/children.py")),
    ("hookgate handler: answer (http1.Response)", ("_json (", "_error (")),
    ("hookgate handler: message (JSON, extraction, headers)", ("_message (",)),
    ("hookgate handler: other (head checks, body, routing)", ("inbound/listener.py",)),
    ("HTTP server (inbound/http1.py)", ("inbound/http1.py",)),
    ("aiohttp server", ("aiohttp/",)),
]
# The daemon's stages when ingest processes serve the ingress.
DAEMON_INGEST_STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("writer: group commit, event loop side", ("store/sqlite/writer.py",)),
    ("frames from ingest processes (decode, answer)", ("inbound/processes.py", "children.py")),
]


# The SQLite threads (aiosqlite's, one per connection) by what they run: the writer runs
# a whole commit there in one trip (store/sqlite/writer.py's commit_batch).
THREAD_STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("SQLite thread: outcomes (settle, attempt rows)", ("record_attempts",)),
    ("SQLite thread: messages and deliveries (insert)", ("insert_messages",)),
    ("SQLite thread: claims", ("_deliveries", "claim_due", "fetch")),
    ("SQLite thread: COMMIT and fsync (disk waits count too)", ("commit_batch",)),
]


def stage_of(stack: str, process: str = "", ingest_children: bool = False) -> str:
    """The stage of one py-spy sample; ``process`` is its process's part of the stack,
    ``ingest_children`` whether the daemon ran ingest processes."""
    if stack.endswith(WAITING):
        return "SQLite threads waiting for work (idle)"
    if "_connection_worker_thread" in stack:
        for stage, needles in THREAD_STAGES:
            if any(needle in stack for needle in needles):
                return stage
        return "SQLite thread: other"
    if "hookgate.cli.ingest" in process:
        stages = INGEST_STAGES
    elif ingest_children:
        stages = DAEMON_INGEST_STAGES + STAGES
    else:
        stages = STAGES
    for stage, needles in stages:
        if any(needle in stack for needle in needles):
            return stage
    return "event loop, other"


NATIVE: list[str] = []  # ["--native"] with --native: C frames too (uvloop, libuv, SQLite)


def profile(pids: list[int], seconds: int, out: Path) -> None:
    beside = Path(sys.executable).with_name("py-spy")
    spy = str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
    args = [spy, "record", "--format", "raw", "-r", str(RATE), "-d", str(seconds), *NATIVE]
    args += ["--threads", "--subprocesses", "-o", str(out), "-p", str(pids[0])]
    subprocess.run(args, check=True, capture_output=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> float:
    """CPU of a process's main thread only (its other threads: SQLite's, aiosqlite's)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> dict[str, int]:
    """The daemon and its delivery processes (children running hookgate.cli.delivery)."""
    members = {"daemon": pid}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"hookgate.cli.delivery" in command:
                members[f"delivery process {child}"] = int(child)
            elif b"hookgate.cli.ingest" in command:
                members[f"ingest process {child}"] = int(child)
    return members


class CpuWindow:
    """CPU seconds each member of a family used between ``start()`` and ``stop()``."""

    def __init__(self, pid: int) -> None:
        self.members = family(pid)
        self.used: dict[str, float] = {}
        self.idle = 0.0

    def start(self) -> None:
        self.used = {name: -cpu_seconds(pid) for name, pid in self.members.items()}
        self.used["daemon: event loop thread"] = -thread_cpu_seconds(self.members["daemon"])
        # wrk is the only child of this script that ends (is waited for) in the window.
        self.used["wrk (the load)"] = -waited_children_cpu_seconds()
        self.idle = -machine_idle_seconds()

    def stop(self) -> None:
        self.idle += machine_idle_seconds()
        self.used["wrk (the load)"] += waited_children_cpu_seconds()
        for name, pid in self.members.items():
            self.used[name] += cpu_seconds(pid)
        self.used["daemon: event loop thread"] += thread_cpu_seconds(self.members["daemon"])
        self.used["daemon: other threads (SQLite)"] = (
            self.used["daemon"] - self.used["daemon: event loop thread"]
        )

    def report(self, ingested: float, delivered: float, seconds: float) -> None:
        print(f"ingested {ingested:.0f} ({ingested / seconds:.0f}/s), delivered {delivered:.0f}")
        print(f"({delivered / seconds:.0f}/s) in {seconds:.1f}s; CPU (user + system) used:")
        for name, used in self.used.items():
            per = f"{used / ingested * 1e6:7.1f} us per webhook ingested" if ingested else ""
            if delivered:
                per += f"{', ' if per else ''}{used / delivered * 1e6:7.1f} us per delivery"
            print(f"  {name:<28} {used / seconds * 100:5.1f}% of a core  {per}")
        total = sum(v for k, v in self.used.items() if not k.startswith(("daemon:", "wrk")))
        print(f"  {'all of hookgate':<28} {total / seconds * 100:5.1f}% of a core")
        idle = self.idle / seconds * 100
        print(f"  (the machine's {os.cpu_count()} cores idle: {idle:5.1f}% of a core)")


def waited_children_cpu_seconds() -> float:
    """User + system CPU of this script's children that ended and were waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_idle_seconds() -> float:
    """Idle (and I/O wait) time of all the machine's cores so far, from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--delivery-processes", type=int, default=None)
    parser.add_argument("--raw", type=Path, default=None, help="keep py-spy's samples here")
    parser.add_argument(
        "--drain", type=int, default=0, help="no wrk: profile draining this many deliveries"
    )
    parser.add_argument("--daemon-src", type=Path, default=None, help="another checkout's src/")
    parser.add_argument("--cpu", action="store_true", help="CPU time from /proc, no py-spy")
    parser.add_argument("--native", action="store_true", help="py-spy --native: C frames too")
    parser.add_argument("--ingest-processes", type=int, default=None)
    parser.add_argument("--alone", action="store_true", help="ingest alone: no destination")
    parser.add_argument("--sync", default="full", help="storage.sync (full: the targets')")
    args = parser.parse_args()
    if args.native:
        NATIVE.append("--native")
    if args.daemon_src is not None:
        os.environ["PYTHONPATH"] = str(args.daemon_src.resolve())
    if args.drain:
        profile_drain(args)
        return
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-profile-") as tmp:
        folder = Path(tmp)
        script = delivery.wrk_script(folder)
        with delivery.sink(folder, "sink") as port:
            table: dict[str, object] = {"url": f"http://127.0.0.1:{port}/in"}
            d = delivery.Daemon(
                folder / "daemon",
                {} if args.alone else {"sink": table},
                args.sync,
                args.delivery_processes,
                args.ingest_processes,
            )
            with d.running() as proc:
                d.ready_after(time.monotonic())
                if args.cpu:
                    window = CpuWindow(proc.pid)
                    before = delivery.sink_stats(port)["events"]
                    started = time.monotonic()
                    window.start()
                    load = harness.run_wrk(
                        d.ingress, script, connections=args.connections, seconds=args.seconds
                    )
                    window.stop()
                    delivered = delivery.sink_stats(port)["events"] - before
                    elapsed = time.monotonic() - started
                    window.report(load["requests"], delivered, elapsed)
                    return
                raw = args.raw or folder / "samples.txt"
                spy = threading.Thread(target=profile, args=([proc.pid], args.seconds, raw))
                before = delivery.sink_stats(port)["events"]
                spy.start()
                load = harness.run_wrk(
                    d.ingress, script, connections=args.connections, seconds=args.seconds
                )
                delivered = delivery.sink_stats(port)["events"] - before
                spy.join()
        report(raw, load["requests"], delivered, args.seconds)


def profile_drain(args: argparse.Namespace) -> None:
    """Delivery alone: a pre-built backlog (batch_max = 1) drained after resume."""
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-profile-") as tmp:
        folder = Path(tmp)
        with delivery.sink(folder, "sink") as port:
            table = {"url": f"http://127.0.0.1:{port}/in", "batch_max": 1}
            d = delivery.Daemon(folder, {"sink": table}, "full", args.delivery_processes)
            delivery.build_backlog(d.db, args.drain, "sink", paused=True)
            with d.running() as proc:
                d.ready_after(time.monotonic())
                if args.cpu:
                    window = CpuWindow(proc.pid)
                    window.start()
                    started = time.monotonic()
                    d.resume("sink")
                    before = delivery.sink_stats(port)["events"]
                    time.sleep(args.seconds)
                    window.stop()
                    delivered = delivery.sink_stats(port)["events"] - before
                    window.report(0, delivered, time.monotonic() - started)
                    return
                raw = args.raw or folder / "samples.txt"
                spy = threading.Thread(target=profile, args=([proc.pid], args.seconds, raw))
                d.resume("sink")
                before = delivery.sink_stats(port)["events"]
                spy.start()
                spy.join()
                delivered = delivery.sink_stats(port)["events"] - before
        report(raw, 0, delivered, args.seconds)


def report(raw: Path, ingested: float, delivered: float, seconds: int) -> None:
    samples: collections.Counter[str] = collections.Counter()
    lines = raw.read_text().splitlines()
    ingest_children = any("hookgate.cli.ingest" in line for line in lines)
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if stack:
            process = stack.split(";thread", 1)[0]
            child = "hookgate.cli.delivery" in process
            stage = stage_of(stack, process, ingest_children)
            if "hookgate.cli.ingest" in process:
                stage = f"ingest process: {stage}"
            if child and not stage.endswith("(idle)"):
                # The delivery process works for deliveries only: all its time is theirs.
                stage = f"delivery process: {stage.removeprefix('delivery: ')}"
                stage = stage.replace("event loop, other", "event loop, IPC, other")
                stage = stage.replace("hand-off to a delivery process", "socket frames")
            samples[stage] += int(count)
    print(f"ingested {ingested:.0f} ({ingested / seconds:.0f}/s), delivered {delivered:.0f}")
    print(f"({delivered / seconds:.0f}/s) in {seconds}s; CPU in microseconds per webhook:")
    total = 0.0
    idle = samples.pop("SQLite threads waiting for work (idle)", 0)
    waiting = idle / RATE / seconds
    print(f"  (not counted: SQLite threads waiting for work, {waiting:.0%} of a core)")
    for stage, count in samples.most_common():
        cpu_s = count / RATE
        for_deliveries = stage.startswith("deliver") or "outcomes" in stage or "claims" in stage
        per = delivered if for_deliveries or not ingested else ingested
        micros = f"{cpu_s / per * 1e6:7.1f} us" if per else "      -"
        total += cpu_s
        print(f"  {stage:<44} {cpu_s / seconds * 100:5.1f}% of a core  {micros}")
    print(f"  {'all sampled threads':<44} {total / seconds * 100:5.1f}% of a core")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        report(Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
