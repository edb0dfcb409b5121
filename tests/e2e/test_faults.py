"""Fault injection against the real daemon (issue 8).

Each case runs ``hookgate serve`` as a subprocess with a real downstream, breaks its
storage the way disks and operators do (disk full, immutable files, a corrupt page, a
locked or read-only database, a deleted or replaced file, a second instance), while a
monitoring loop polls /readyz, /metrics and the admin API every 50 ms. Per case it
counts acknowledged, delivered, lost (must be 0), duplicates (0 where nothing crashed),
the most requests one delivery took (bounded by the backoff: no hot loop), exit codes
and the time to exit; the table is printed at the end of the run.

The promise under test: a 2xx means the webhook is on disk and will be delivered; a
webhook that cannot be stored gets 503 with Retry-After; the daemon never answers 500,
never prints a traceback, never spins, and refuses to start (exit 1, one line) rather
than run on a database it cannot trust. Every case collects all its broken
expectations before failing, so one run shows every symptom.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import Downstream, Reply, free_port, to_toml, wait_for
from .faults import (
    REPORT,
    TOKEN,
    Load,
    Monitor,
    PipedDaemon,
    Row,
    Verdict,
    admin_call,
    checkpoint_truncate,
    database_files,
    delivery_stats,
    explain_missing,
    immutable,
    messages_leaf_in_the_middle,
    one_line_refusal,
    overwrite_page,
    post_once,
    readyz,
    require_tool,
    set_fsize,
    spawn_serve,
    stop_timed,
    table,
)

# Each case injects a fault under load and waits it out: ~45 s for the module.
pytestmark = pytest.mark.slow

MakeDaemon = Callable[..., Awaitable[PipedDaemon]]
SHUTDOWN_GRACE = 5.0  # server.shutdown_grace in the e2e base config
FAULT_SECONDS = 4.0


def relay(url: str, **destination: Any) -> dict[str, Any]:
    """One source, one destination, short backoff, an admin token."""
    return {
        "admin": {"token": TOKEN},
        "delivery": {
            "initial_backoff": "100ms",
            "max_backoff": "1s",
            "timeout": "5s",
            "max_attempts": 1000,
        },
        "sources": {
            "load": {"path": "/hooks/load", "event_type": "json:type", "event_id": "json:id"}
        },
        "destinations": {"sink": {"url": url, "sources": ["load"], **destination}},
    }


@pytest.fixture
async def daemons(tmp_path: Path) -> AsyncIterator[MakeDaemon]:
    """``await daemons(config)`` → a ready ``PipedDaemon`` with an absolute storage.path."""
    made: list[PipedDaemon] = []

    async def make(config: dict[str, Any]) -> PipedDaemon:
        folder = tmp_path / f"hookgate-{len(made)}"
        folder.mkdir()
        config = copy.deepcopy(config)
        config.setdefault("storage", {}).setdefault("path", str(folder / "hookgate.db"))
        daemon = PipedDaemon(folder, config)
        daemon.db_path = Path(config["storage"]["path"])
        made.append(daemon)
        await daemon.start()
        return daemon

    yield make
    for daemon in made:
        await daemon.close()


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Iterator[Row]:
    """This case's line in the report (printed now with -s, and in the summary)."""
    case = request.node.name.removeprefix("test_")
    line = REPORT.row(request.config, case)
    yield line
    print("\n" + "\n".join(table([line])))


async def settle(
    verdict: Verdict,
    predicate: Callable[[], Any],
    timeout: float,
    message: str | Callable[[], str],
) -> bool:
    """``wait_for``, its failure recorded in ``verdict`` instead of ending the case."""
    try:
        await wait_for(predicate, timeout, interval=0.05, message=message)
    except AssertionError as exc:
        verdict.failures.append(str(exc))
        return False
    return True


def acked_ids(*loads: Load) -> set[str]:
    return {message_id for load in loads for message_id in load.acked.values()}


def all_arrived(downstream: Downstream, ids: set[str]) -> Callable[[], bool]:
    return lambda: ids <= downstream.ids()


async def ready_is(session: aiohttp.ClientSession, daemon: PipedDaemon, status: int) -> bool:
    answer, _ = await readyz(session, daemon)
    return answer == status


def judge_delivery(
    verdict: Verdict,
    row: Row,
    daemon: PipedDaemon,
    downstream: Downstream,
    acked: set[str],
    *,
    max_arrivals: int,
) -> None:
    """Lost 0; no delivery sent more than ``max_arrivals`` times; no duplicate at all."""
    stats = delivery_stats(downstream, acked)
    row.count(stats)
    verdict.check(stats.lost == 0, lambda: explain_missing(daemon, stats.missing))
    verdict.check(
        stats.max_arrivals <= max_arrivals,
        f"one delivery reached the downstream {stats.max_arrivals} times (bound"
        f" {max_arrivals}; {len(downstream.requests)} requests for {stats.delivered} ids)",
    )
    verdict.check(
        stats.duplicates == 0,
        f"{stats.duplicates} duplicate deliveries though nothing crashed"
        f" (highest Hookgate-Attempt {stats.max_attempt_header})",
    )


def judge_stored(verdict: Verdict, daemon: PipedDaemon, acked: set[str]) -> None:
    """Every acknowledged id is in the database: a 2xx meant it was committed."""
    try:
        stored = {f"msg_{n:016x}" for (n,) in daemon.query("SELECT id FROM messages")}
        attempts = daemon.query("SELECT coalesce(max(attempts), 0) FROM deliveries")[0][0]
    except sqlite3.Error as exc:
        verdict.failures.append(f"the database cannot be read after the fault: {exc}")
        return
    verdict.check(
        acked <= stored, f"{len(acked - stored)} acknowledged ids are not in the database"
    )
    verdict.check(attempts <= 2, f"a delivery recorded {attempts} attempts (downstream says 200)")


def judge_daemon(verdict: Verdict, daemon: PipedDaemon, monitor: Monitor) -> None:
    verdict.extend(monitor.failures())
    verdict.check(
        "Traceback" not in daemon.stderr(),
        lambda: f"a traceback on stderr: {daemon.stderr()[-2000:]}",
    )


async def stop_cleanly(verdict: Verdict, row: Row, daemon: PipedDaemon) -> None:
    verdict.check(daemon.running, lambda: f"the daemon died: {daemon.stderr()[-1500:]}")
    if not daemon.running:
        assert daemon.proc is not None
        row.exited("died", daemon.proc.returncode, None)
        return
    code, seconds = await stop_timed(daemon, SHUTDOWN_GRACE + 10)
    row.exited("stop", code, seconds)
    verdict.check(code == 0, f"SIGTERM: exit code {code} (None: killed after the grace)")


# -- 1. a second instance on the same database --------------------------------------------------


async def test_second_instance_refused_while_first_delivers(
    daemons: MakeDaemon, downstream: Downstream, row: Row, tmp_path: Path
) -> None:
    downstream.default = Reply(delay=0.3)  # slow: requests are in flight when it starts
    first = await daemons(relay(downstream.url(), concurrency=8))
    verdict = Verdict()
    second_config = copy.deepcopy(first.config)
    second_admin = free_port()
    second_config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    second_config["admin"]["listen"] = f"127.0.0.1:{second_admin}"
    second_config["storage"]["path"] = str(first.db_path)
    second_folder = tmp_path / "second"
    second_folder.mkdir()
    second_path = second_folder / "hookgate.toml"
    second_path.write_text(to_toml(second_config), encoding="utf-8")

    async with Monitor(first.admin_port) as monitor:
        load = Load(first, prefix="second", total=120, posters=16)
        await load.run()
        await downstream.wait_count(8)  # the first instance's requests are in flight
        verdict.check(
            Path(f"{first.db_path}.lock").exists(),
            f"no lock file {first.db_path}.lock beside the database",
        )
        async with Monitor(second_admin) as second_monitor:
            second = await spawn_serve(second_path, second_folder, "second", timeout=10)
        row.exited("second", second.code, second.seconds)
        verdict.check(
            second.code == 1,
            f"the second instance: exit code {second.code} within 10 s (None: it ran;"
            f" stopped by the test with {second.forced_code})",
        )
        verdict.check(
            "in use by another hookgate" in second.stderr and str(first.pid) in second.stderr,
            f"the second instance's stderr should say 'in use by another hookgate' and"
            f" pid {first.pid}: {second.stderr[-600:]!r}",
        )
        verdict.check("Traceback" not in second.stderr, f"a traceback: {second.stderr[-1500:]!r}")
        verdict.extend(
            [f"second instance {f}" for f in second_monitor.failures(expect_answers=False)]
        )
        acked = acked_ids(load)
        await settle(
            verdict,
            all_arrived(downstream, acked),
            40,
            lambda: explain_missing(first, frozenset(acked - downstream.ids())),
        )
        await asyncio.sleep(0.5)  # a duplicate must not turn up late
    judge_delivery(verdict, row, first, downstream, acked, max_arrivals=1)
    attempts = sorted({r.attempt for r in downstream.requests})
    verdict.check(attempts == [1], f"Hookgate-Attempt values seen: {attempts}")
    verdict.check(len(acked) == 120 and not load.failures, f"ingress: {load.failures[:5]}")
    readiness = monitor.statuses("/readyz")
    verdict.check(set(readiness) == {200}, f"the first instance's /readyz: {dict(readiness)}")
    judge_daemon(verdict, first, monitor)
    await stop_cleanly(verdict, row, first)
    verdict.verify()


# -- 2. the database file deleted or replaced under the running daemon ---------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_database_file_gone_while_running(
    daemons: MakeDaemon, downstream: Downstream, row: Row, tmp_path: Path, how: str
) -> None:
    daemon = await daemons(relay(downstream.url()))
    verdict = Verdict()
    async with Monitor(daemon.admin_port) as monitor, aiohttp.ClientSession() as session:
        load = Load(daemon, prefix="before", total=50, posters=8)
        await load.run()
        before = acked_ids(load)
        await downstream.wait_count(len(before))
        await wait_for(all_arrived(downstream, before))

        if how == "deleted":
            os.unlink(daemon.db_path)
        else:
            other = tmp_path / "other.db"
            conn = sqlite3.connect(other, isolation_level=None)
            conn.execute("CREATE TABLE other (x)")
            conn.execute("INSERT INTO other VALUES ('not hookgate')")
            conn.close()
            os.replace(other, daemon.db_path)
        gone_at = time.monotonic()

        # Every webhook from now on must get 503: a 2xx would go into a file nobody reads.
        answers = []
        for n in range(30):
            answers.append(await post_once(session, daemon, f"after_{n:03d}"))
            await asyncio.sleep(0.1)
        await settle(
            verdict,
            lambda: ready_is(session, daemon, 503),
            10,
            f"/readyz still 200 after the database file was {how}",
        )
        status, body = await readyz(session, daemon)
        database = str(body.get("checks", {}).get("database", ""))
        verdict.check(
            status == 503 and database.startswith("failing"),
            f"/readyz {status}, checks.database {database!r}: expected 503 and 'failing...'",
        )
    acked_after = {json.loads(a.body)["id"] for a in answers if a.status in (200, 202)}
    bad = [(a.status, a.retry_after, a.body[:120]) for a in answers if a.status != 503]
    verdict.check(
        not bad,
        f"{len(bad)} of {len(answers)} webhooks sent after the file was {how} were not"
        f" answered 503, e.g. {bad[:3]}",
    )
    verdict.check(
        all((a.retry_after or "").isdigit() for a in answers if a.status == 503),
        "a 503 without Retry-After",
    )
    stats = delivery_stats(downstream, before)
    row.count(stats)
    row.acknowledged = len(before) + len(acked_after)
    row.note = (
        f"{len(acked_after)} acked after the file was {how}; readyz {dict(monitor.statuses())}"
    )
    verdict.check(stats.lost == 0 and stats.duplicates == 0, f"before the fault: {stats}")
    readiness = [s for s in monitor.samples if s.path == "/readyz" and s.at >= gone_at]
    first_503 = next((s.at for s in readiness if s.status == 503), None)
    verdict.check(
        first_503 is None or all(s.status != 200 for s in readiness if s.at > first_503),
        f"/readyz went back to 200 after turning 503 on a {how} file",
    )
    judge_daemon(verdict, daemon, monitor)

    code, seconds = await stop_timed(daemon, SHUTDOWN_GRACE + 10)
    row.exited("stop", code, seconds)
    verdict.check(code is not None, "SIGTERM: the daemon had to be killed")

    if how == "deleted":
        restart = await spawn_serve(daemon.config_path, tmp_path / "restart", "restart", 10)
        row.exited("restart", restart.code, restart.seconds)
        mentions_missing = any(
            word in restart.stderr.lower()
            for word in ("missing", "no such", "not found", "does not exist", "deleted")
        )
        verdict.check(
            restart.code == 1 and "hookgate.db" in restart.stderr and mentions_missing,
            f"restart without the database file: exit {restart.code} (None: it ran, stopped"
            f" with {restart.forced_code}), stderr {restart.stderr[-600:]!r}; expected exit 1"
            " naming the missing database",
        )
        verdict.check(
            not daemon.db_path.exists(),
            "the restart created a new, empty database in place of the missing one",
        )
        verdict.check("Traceback" not in restart.stderr, f"traceback: {restart.stderr[-1500:]}")
    verdict.verify()


# -- 3 and 4. writes failing under load: disk full, immutable files --------------------------


@contextmanager
def disk_full(daemon: PipedDaemon) -> Iterator[str]:
    """RLIMIT_FSIZE of the daemon at the current size of its largest database file."""
    require_tool("prlimit")
    files = [p for p in database_files(daemon.db_path) if not p.name.endswith("-shm")]
    limit = max(p.stat().st_size for p in files)
    set_fsize(daemon.pid, str(limit))
    try:
        yield f"fsize {limit}"
    finally:
        set_fsize(daemon.pid, "unlimited")


@contextmanager
def immutable_files(daemon: PipedDaemon) -> Iterator[str]:
    require_tool("chattr")
    files = database_files(daemon.db_path)
    with immutable(files):
        yield "+i " + ",".join(p.name for p in files)


async def write_fault_case(
    daemon: PipedDaemon,
    downstream: Downstream,
    row: Row,
    fault: Callable[[PipedDaemon], AbstractContextManager[str]],
) -> None:
    verdict = Verdict()
    async with Monitor(daemon.admin_port) as monitor, aiohttp.ClientSession() as session:
        load = Load(daemon, prefix="load", posters=8, pause=0.02, deadline=60).start()
        await wait_for(
            lambda: len(load.acked) >= 300 and len(downstream.requests) >= 100,
            30,
            message=lambda: f"{len(load.acked)} acked, {len(downstream.requests)} delivered",
        )
        # The WAL moved into the main file: the database can only grow from here.
        await asyncio.to_thread(checkpoint_truncate, daemon.db_path)
        with fault(daemon) as what:
            started = time.monotonic()
            await asyncio.sleep(FAULT_SECONDS)
            ended = time.monotonic()
        await asyncio.sleep(2.0)  # load goes on after the fault
        load.stop()
        await load.wait()

        during = load.statuses(started, ended)
        row.note = f"{what}; answers during the fault {dict(during)}"
        fault_readiness = monitor.readyz_between(started, ended + 1.0)
        verdict.check(
            503 in fault_readiness,
            f"/readyz never 503 during the fault: {sorted(set(fault_readiness))}",
        )
        await settle(
            verdict,
            lambda: ready_is(session, daemon, 200),
            20,
            "/readyz not 200 again after the fault",
        )
        acked = acked_ids(load)
        await settle(
            verdict,
            all_arrived(downstream, acked),
            30,
            lambda: explain_missing(daemon, frozenset(acked - downstream.ids())),
        )
        await asyncio.sleep(0.5)  # a duplicate must not turn up late
    verdict.extend(load.failures)
    verdict.check(not load.unacked, f"{len(load.unacked)} events never got a 2xx")
    judge_delivery(verdict, row, daemon, downstream, acked, max_arrivals=2)
    row.note += f"; readyz {dict(monitor.statuses())}"
    judge_stored(verdict, daemon, acked)
    judge_daemon(verdict, daemon, monitor)
    await stop_cleanly(verdict, row, daemon)
    verdict.verify()


async def test_disk_full_under_load(daemons: MakeDaemon, downstream: Downstream, row: Row) -> None:
    require_tool("prlimit")
    downstream.default = Reply(delay=0.02)
    daemon = await daemons(relay(downstream.url(), concurrency=16))
    await write_fault_case(daemon, downstream, row, disk_full)


async def test_immutable_files_mid_delivery(
    daemons: MakeDaemon, downstream: Downstream, row: Row
) -> None:
    require_tool("chattr")
    downstream.default = Reply(delay=0.02)
    daemon = await daemons(relay(downstream.url(), concurrency=16))
    await write_fault_case(daemon, downstream, row, immutable_files)


# -- 5. a corrupt page ---------------------------------------------------------------------------


async def read_everything(
    session: aiohttp.ClientSession, daemon: PipedDaemon, seen: list[tuple[str, int, str, bytes]]
) -> None:
    """Page through every message (and one page of deliveries) through the API."""
    cursor = None
    for _ in range(40):
        path = "/api/v1/messages?limit=500" + (f"&cursor={cursor}" if cursor else "")
        status, content_type, body = await admin_call(session, daemon, "GET", path)
        seen.append((path, status, content_type, body))
        if status != 200:
            break
        cursor = json.loads(body).get("next_cursor")
        if not cursor:
            break
    path = "/api/v1/deliveries?limit=500"
    seen.append((path, *(await admin_call(session, daemon, "GET", path))))


async def test_corrupt_page(daemons: MakeDaemon, downstream: Downstream, row: Row) -> None:
    # No loss is asserted here: the disk destroyed stored webhooks, nothing can bring
    # them back. What is asserted: no hang, no crash, no 500, no traceback, not ready.
    daemon = await daemons(relay(downstream.url(), concurrency=32))
    verdict = Verdict()
    seen: list[tuple[str, int, str, bytes]] = []
    answers = []
    async with Monitor(daemon.admin_port) as monitor, aiohttp.ClientSession() as session:
        load = Load(daemon, prefix="fill", total=3000, posters=32, padding=300)
        await load.run()
        acked = acked_ids(load)
        await wait_for(all_arrived(downstream, acked), 60, message="the fill was not delivered")
        assert await asyncio.to_thread(checkpoint_truncate, daemon.db_path), "checkpoint busy"
        page = messages_leaf_in_the_middle(daemon.db_path)
        overwrite_page(daemon.db_path, page)

        not_ready = False
        ends = time.monotonic() + 20
        n = 0
        while time.monotonic() < ends and not not_ready:
            for _ in range(5):
                answers.append(await post_once(session, daemon, f"after_{n:04d}"))
                n += 1
            await read_everything(session, daemon, seen)
            status, _ = await readyz(session, daemon)
            not_ready = status == 503
            await asyncio.sleep(0.2)
        verdict.check(not_ready, "/readyz still 200 after queries hit the corrupt page")
        row.note = (
            f"page {page}; API statuses {sorted({s for _, s, _, _ in seen})};"
            f" posts {sorted({a.status for a in answers})}"
        )
    errors = [(p, s, b[:120]) for p, s, _, b in seen if s >= 500 and s != 503]
    verdict.check(not errors, f"{len(errors)} API answers were 5xx but 503, e.g. {errors[:2]}")
    not_json = [(p, s, t) for p, s, t, _ in seen if t != "application/json"]
    verdict.check(not not_json, f"{len(not_json)} API answers not JSON, e.g. {not_json[:2]}")
    verdict.check(not any(b"Traceback" in b for _, _, _, b in seen), "a traceback in an API answer")
    verdict.check(
        all(a.status in (200, 202, 503) for a in answers),
        f"ingress answers on a corrupt database: {sorted({a.status for a in answers})}",
    )
    verdict.check(not any(b"Traceback" in a.body for a in answers), "a traceback in an answer")
    stats = delivery_stats(
        downstream, acked | {json.loads(a.body)["id"] for a in answers if a.status in (200, 202)}
    )
    row.count(stats)
    judge_daemon(verdict, daemon, monitor)
    # It did not crash by itself, and SIGTERM still ends it within the grace period.
    verdict.check(daemon.running, lambda: f"the daemon died by itself: {daemon.stderr()[-1500:]}")
    if daemon.running:
        code, seconds = await stop_timed(daemon, SHUTDOWN_GRACE + 10)
        row.exited("stop", code, seconds)
        verdict.check(code is not None, f"no exit within {SHUTDOWN_GRACE + 10}s of SIGTERM")
    verdict.check("Traceback" not in daemon.stderr(), "a traceback on stderr after SIGTERM")
    verdict.verify()


# -- 6. refusing to start: locked, read-only, missing directory ----------------------------------


def standalone_config(folder: Path, db: Path) -> tuple[Path, int]:
    """A config for a daemon that should never listen; its admin port for the monitor."""
    admin_port = free_port()
    config = {
        "server": {"listen": f"127.0.0.1:{free_port()}", "shutdown_grace": "5s"},
        "admin": {"listen": f"127.0.0.1:{admin_port}", "token": TOKEN},
        "storage": {"path": str(db)},
        "log": {"level": "info", "format": "json"},
        "sources": {"load": {"path": "/hooks/load"}},
        "destinations": {"sink": {"url": "http://127.0.0.1:9/hook", "sources": ["load"]}},
    }
    path = folder / "refused.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    return path, admin_port


@contextmanager
def locked_database(db: Path) -> Iterator[None]:
    """Another process's exclusive lock on a rollback-journal database."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("CREATE TABLE holder (x)")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("INSERT INTO holder VALUES (1)")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@pytest.mark.parametrize("fault", ["locked", "read-only", "missing-directory"])
async def test_refuses_to_start(daemons: MakeDaemon, row: Row, tmp_path: Path, fault: str) -> None:
    store = tmp_path / "store"
    store.mkdir()
    db = store / "hookgate.db"
    if fault == "missing-directory":
        db = store / "no-such-folder" / "hookgate.db"
    if fault == "read-only":
        require_tool("chattr")
        # A real hookgate database first, left by a clean stop.
        made = await daemons({**relay("http://127.0.0.1:9/hook"), "storage": {"path": str(db)}})
        assert await made.stop() == 0
    config, admin_port = standalone_config(tmp_path, db)
    timeout = 20.0 if fault == "locked" else 10.0

    guard: AbstractContextManager[None]
    if fault == "locked":
        guard = locked_database(db)
    elif fault == "read-only":
        guard = immutable([*sorted(store.iterdir()), store])
    else:
        guard = nullcontext()
    with guard:
        async with Monitor(admin_port) as monitor:
            spawned = await spawn_serve(config, tmp_path / "outputs", fault, timeout)
    row.exited("serve", spawned.code, spawned.seconds)
    row.note = (spawned.stderr.strip().splitlines() or ["(no stderr)"])[-1][:120]
    verdict = Verdict()
    one_line_refusal(verdict, spawned, fault)
    verdict.extend(monitor.failures(expect_answers=False))
    verdict.verify()


# -- 8. a paused backlog, resumed -----------------------------------------------------------


async def test_paused_backlog_delivered_once_after_resume(
    daemons: MakeDaemon, downstream: Downstream, row: Row
) -> None:
    daemon = await daemons(relay(downstream.url(), concurrency=32))
    verdict = Verdict()
    async with Monitor(daemon.admin_port) as monitor, aiohttp.ClientSession() as session:
        status, _, body = await admin_call(
            session, daemon, "POST", "/api/v1/destinations/sink/pause"
        )
        assert status == 200, body
        load = Load(daemon, prefix="backlog", total=5000, posters=32, deadline=90)
        await load.run()
        acked = acked_ids(load)
        verdict.check(not downstream.requests, "deliveries went out while paused")
        status, _, body = await admin_call(
            session, daemon, "POST", "/api/v1/destinations/sink/resume"
        )
        assert status == 200, body
        await settle(
            verdict,
            all_arrived(downstream, acked),
            60,
            lambda: explain_missing(daemon, frozenset(acked - downstream.ids())),
        )
        await asyncio.sleep(0.5)  # a duplicate must not turn up late
    verdict.extend(load.failures)
    verdict.check(len(acked) == 5000, f"{len(acked)} of 5000 acknowledged")
    judge_delivery(verdict, row, daemon, downstream, acked, max_arrivals=1)
    attempts = sorted({r.attempt for r in downstream.requests})
    verdict.check(attempts == [1], f"Hookgate-Attempt values seen: {attempts}")
    judge_daemon(verdict, daemon, monitor)
    await stop_cleanly(verdict, row, daemon)
    verdict.verify()
