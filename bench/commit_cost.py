"""The SQLite writer's cost per webhook, and what each index and trigger adds to it.

Times the store's own ``commit_batch`` (store/sqlite/writer.py: the group commit the
daemon's SQLite thread runs) on a grown database, with no server and no event loop:

1. A database made by the store's migrations, grown to --rows messages of the benchmarks'
   shape (~1 KB signed JSON, an event type, no event id unless --event-ids) through
   ``commit_batch`` itself (10,000 a transaction, each with one delivery, settled as
   delivered with one attempt by the next transaction, as the daemon does). Kept in
   --folder and reused by later runs of the same code's schema.
2. A working copy of it, with the daemon's connection settings (WAL, ``synchronous =
   FULL``, foreign keys on, the default page cache). For each variant: the schema as
   it is, then each secondary index and each trigger dropped in turn, then all of them
   dropped (the floor), commit --batches batches of --batch webhooks: with no
   destination, and with one destination whose deliveries of the previous batch are
   settled as delivered in the same commit (what part 5 makes the writer do). The
   objects dropped are created again before the next variant; "as is" runs again
   between the others, to show the drift.

CPU is the thread's own (``time.thread_time``: SQLite's work, not the fsync's wait);
wall is the commit's whole time, fsync included.

--outcomes times only the outcome's write in each of those commits (``record_attempts``:
the settle ``UPDATE .. FROM json_each`` and the attempt rows, writer.py's Python
included; not its share of the COMMIT), per delivery settled, for commits of 8, 16 and
--batch webhooks, the schema as it is and without each index and trigger the settle or
the attempt rows touch.

Usage: python bench/commit_cost.py [--rows 1000000] [--batch 64] [--batches 300]
                                   [--event-ids] [--page-size N] [--statements]
                                   [--outcomes] [--only NAME,...]
                                   [--folder /tmp/hookgate-commit-cost]
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import harness
import orjson

from hookgate.store import AttemptRecord, NewMessage, new_message_id
from hookgate.store.sqlite import sql, writer

SOURCE = "bench"
EVENT_TYPE = "payment_intent.succeeded"
FILL_BATCH = 10_000
CHECKPOINT_EVERY = 50  # batches; untimed, as the daemon's Checkpointer runs beside commits


@dataclass
class Ids:
    """The next message id and delivery id the database will give (both only grow)."""

    message: int
    delivery: int

    def messages(self, count: int, now: float) -> list[int]:
        out = []
        for _ in range(count):
            self.message = max(new_message_id(now), self.message + 1)
            out.append(self.message)
        return out


class TimedConnection(sqlite3.Connection):
    """A connection that adds up its thread's CPU per statement (--statements)."""

    cpu: ClassVar[Counter[str]] = Counter()
    commits: ClassVar[float] = 0.0  # commit_batch's whole CPU
    names: ClassVar[dict[str, str]] = {text: name for name, text in sql.QUERIES.items()}

    def execute(self, text: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        started = time.thread_time()
        try:
            return super().execute(text, *args)
        finally:
            self.cpu[self.name(text)] += time.thread_time() - started

    def executemany(self, text: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        started = time.thread_time()
        try:
            return super().executemany(text, *args)
        finally:
            self.cpu[self.name(text)] += time.thread_time() - started

    def name(self, text: str) -> str:
        return self.names.get(text) or self.names.get(text.strip()) or text.split("(")[0][:40]


def connect(path: Path, synchronous: str, timed: bool = False) -> sqlite3.Connection:
    """The daemon's write connection settings (store/sqlite/database.py ``connect``)."""
    factory = TimedConnection if timed else sqlite3.Connection
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=factory)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA wal_autocheckpoint = 10000")
    return conn


def new_messages(
    count: int, destinations: int, now: float, event_ids: Iterator[str] | None
) -> list[NewMessage]:
    body = harness.webhook_body()
    headers = orjson.dumps(
        {"Content-Type": "application/json", "X-Signature": "sha256=" + "0" * 64}
    )
    return [
        NewMessage(
            source=SOURCE,
            received_at=now,
            event_type=EVENT_TYPE,
            event_id=next(event_ids) if event_ids is not None else None,
            dedup_window=86400.0,
            headers=headers,
            body=body,
            destinations=("sink",) * destinations,
        )
        for _ in range(count)
    ]


def delivered(delivery_ids: range, now: float) -> list[AttemptRecord]:
    return [
        AttemptRecord(
            delivery_id=i,
            started_at=now,
            duration_ms=0.4,
            status=200,
            error=None,
            response_snippet=b"ok",
            state="delivered",
            attempts=1,
            next_attempt_at=now,
        )
        for i in delivery_ids
    ]


def event_id_stream(prefix: str) -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"{prefix}-{n}"


def build(path: Path, rows: int, event_ids: bool, page_size: int) -> None:
    """The grown database, through the store's migrations and commit_batch only."""
    tmp = path.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(tmp)) as empty:
        if page_size:  # before the file has a page, so before WAL mode
            empty.execute(f"PRAGMA page_size = {page_size}")
            empty.execute("VACUUM")
    conn = connect(tmp, "OFF")
    for number, script in enumerate(sql.MIGRATIONS, 1):
        conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
    ids = Ids(message=0, delivery=0)
    stream = event_id_stream("fill") if event_ids else None
    settle: range = range(0)
    started = time.monotonic()
    done = 0
    while done < rows:
        size = min(FILL_BATCH, rows - done)
        now = time.time() - 3600
        writer.commit_batch(
            conn,
            new_messages(size, 1, now, stream),
            ids.messages(size, now),
            delivered(settle, now),
        )
        settle = range(ids.delivery + 1, ids.delivery + size + 1)
        ids.delivery += size
        done += size
        if done % 100_000 == 0 or done == rows:
            print(f"  filled {done:>9,} / {rows:,}  {time.monotonic() - started:6.1f}s", flush=True)
    writer.commit_batch(conn, [], [], delivered(settle, time.time()))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.close()
    tmp.rename(path)


def droppable(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """(kind, name, CREATE statement) of every secondary index and trigger."""
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master"
        " WHERE type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name"
    ).fetchall()
    return [(kind, name, text) for kind, name, text in rows]


@contextlib.contextmanager
def dropped(conn: sqlite3.Connection, objects: list[tuple[str, str, str]]) -> Iterator[None]:
    for kind, name, _ in objects:
        conn.execute(f"DROP {kind.upper()} {name}")
    try:
        yield
    finally:
        for _, _, text in objects:
            conn.execute(text)


def measure(
    conn: sqlite3.Connection,
    ids: Ids,
    args: argparse.Namespace,
    destinations: int,
    stream: Iterator[str] | None,
) -> tuple[float, float]:
    """(CPU µs per webhook, wall ms per commit): medians over --batches commits."""
    cpu: list[float] = []
    wall: list[float] = []
    settle: range = range(0)
    for n in range(args.warmup + args.batches):
        now = time.time()
        messages = new_messages(args.batch, destinations, now, stream)
        message_ids = ids.messages(args.batch, now)
        records = delivered(settle, now)
        started_cpu, started = time.thread_time(), time.perf_counter()
        writer.commit_batch(conn, messages, message_ids, records)
        took_cpu, took = time.thread_time() - started_cpu, time.perf_counter() - started
        settle = range(ids.delivery + 1, ids.delivery + args.batch * destinations + 1)
        ids.delivery += args.batch * destinations
        TimedConnection.commits += took_cpu
        if n >= args.warmup:
            cpu.append(took_cpu / args.batch * 1e6)
            wall.append(took * 1e3)
        if n % CHECKPOINT_EVERY == 0:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    writer.commit_batch(conn, [], [], delivered(settle, time.time()))
    return statistics.median(cpu), statistics.median(wall)


def by_statement(
    conn: sqlite3.Connection, ids: Ids, args: argparse.Namespace, stream: Iterator[str] | None
) -> None:
    """CPU µs per webhook of each statement commit_batch runs, the schema as it is."""
    for destinations in (0, 1):
        TimedConnection.cpu.clear()
        TimedConnection.commits = 0.0
        measure(conn, ids, args, destinations, stream)
        TimedConnection.cpu.pop("PRAGMA wal_checkpoint", None)  # untimed, outside commits
        webhooks = (args.warmup + args.batches) * args.batch
        print(f"\n{destinations} destination(s): µs of CPU per webhook, by statement")
        for name, cpu in TimedConnection.cpu.most_common():
            print(f"  {name:<40} {cpu / webhooks * 1e6:6.2f}")
        rest = TimedConnection.commits - sum(TimedConnection.cpu.values())
        print(f"  {'writer.py Python (rows, JSON)':<40} {rest / webhooks * 1e6:6.2f}")
        print(f"  {'commit_batch, all':<40} {TimedConnection.commits / webhooks * 1e6:6.2f}")


# What the outcome's write touches besides the row: the pending-only indexes it moves the
# row out of, the dead one it may move it into, the count trigger, the attempts' index.
OUTCOME_OBJECTS = (
    "deliveries_count_update",
    "deliveries_due",
    "deliveries_fifo",
    "deliveries_dead",
    "attempts_delivery",
)


class OutcomeTimer:
    """Wraps writer.record_attempts (which commit_batch calls) to add up its CPU."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.deliveries = 0
        self.untimed = writer.record_attempts

    def __call__(self, conn: sqlite3.Connection, records: list[AttemptRecord]) -> None:
        started = time.thread_time()
        self.untimed(conn, records)
        self.cpu += time.thread_time() - started
        self.deliveries += len(records)


def outcome_costs(conn: sqlite3.Connection, ids: Ids, args: argparse.Namespace) -> None:
    """µs of CPU of the outcome's write per delivery, by commit size and variant."""
    objects = {name: (kind, name, text) for kind, name, text in droppable(conn)}
    variants: list[tuple[str, list[tuple[str, str, str]]]] = [("as is", [])]
    for name in OUTCOME_OBJECTS:
        variants += [(f"- {name}", [objects[name]]), ("as is", [])]
    if args.only:
        wanted = set(args.only.split(","))
        variants = [v for v in variants if v[0] in wanted or v[0].removeprefix("- ") in wanted]
    sizes = sorted({8, 16, args.batch})
    timer = OutcomeTimer()
    writer.record_attempts = timer  # type: ignore[assignment]
    print(f"µs of CPU per delivery of record_attempts (means over {args.batches} commits)")
    print(f"{'variant':<40}" + "".join(f"{f'{size} a commit':>14}" for size in sizes))
    try:
        for name, objs in variants:
            figures = []
            with dropped(conn, objs):
                for size in sizes:
                    measure(conn, ids, argparse.Namespace(**{**vars(args), "batch": size}), 1, None)
                    figures.append(timer.cpu / timer.deliveries * 1e6)
                    timer.cpu, timer.deliveries = 0.0, 0
            print(f"{name:<40}" + "".join(f"{f:>14.2f}" for f in figures), flush=True)
    finally:
        writer.record_attempts = timer.untimed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--event-ids", action="store_true", help="a new event id per webhook")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/hookgate-commit-cost"))  # noqa: S108
    parser.add_argument(
        "--page-size", type=int, default=0, help="SQLite page size of the database built"
    )
    parser.add_argument("--only", default="", help="comma-separated variant names to run")
    parser.add_argument(
        "--statements", action="store_true", help="CPU per statement of the schema as it is"
    )
    parser.add_argument(
        "--outcomes", action="store_true", help="CPU per delivery of the outcome's write"
    )
    args = parser.parse_args()

    args.folder.mkdir(parents=True, exist_ok=True)
    keyed = "-keyed" if args.event_ids else ""
    paged = f"-p{args.page_size}" if args.page_size else ""
    base = args.folder / f"base-{args.rows}-m{len(sql.MIGRATIONS)}{keyed}{paged}.db"
    if not base.exists():
        print(f"growing {base} to {args.rows:,} messages")
        build(base, args.rows, args.event_ids, args.page_size)
    work = args.folder / "work.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(base, work)

    conn = connect(work, "FULL", timed=args.statements)
    last_message, last_delivery = conn.execute(
        "SELECT (SELECT max(id) FROM messages), (SELECT max(id) FROM deliveries)"
    ).fetchone()
    ids = Ids(message=last_message, delivery=last_delivery)
    objects = droppable(conn)
    if args.event_ids:  # without it each dedup lookup and expiry scans every message
        objects = [o for o in objects if o[1] != "messages_dedup"]
    variants: list[tuple[str, list[tuple[str, str, str]]]] = [("as is", [])]
    for obj in objects:
        variants += [(f"- {obj[1]}", [obj]), ("as is", [])]
    variants.append(("- every index and trigger above", objects))
    if args.only:
        wanted = set(args.only.split(","))
        variants = [v for v in variants if v[0] in wanted or v[0].removeprefix("- ") in wanted]

    stream = event_id_stream(f"run{time.time_ns()}") if args.event_ids else None
    if args.statements:
        by_statement(conn, ids, args, stream)
        return
    if args.outcomes:
        outcome_costs(conn, ids, args)
        return
    print(
        f"{args.rows:,} messages grown; batches of {args.batch}, {args.batches} timed commits"
        f" each (medians), synchronous = FULL, event ids: {'yes' if args.event_ids else 'no'}"
    )
    head = f"{'0 dest µs/wh':>13} {'ms/commit':>10} {'1 dest µs/wh':>13} {'ms/commit':>10}"
    print(f"{'variant':<40} {head}")
    for name, objs in variants:
        with dropped(conn, objs):
            none_cpu, none_wall = measure(conn, ids, args, 0, stream)
            one_cpu, one_wall = measure(conn, ids, args, 1, stream)
        print(
            f"{name:<40} {none_cpu:>13.1f} {none_wall:>10.2f} {one_cpu:>13.1f} {one_wall:>10.2f}",
            flush=True,
        )
    conn.close()


if __name__ == "__main__":
    main()
