"""Fault-injection harness: the pieces test_faults.py puts together.

- ``PipedDaemon``: the real ``hookgate serve``, its output read through pipes (a lowered
  RLIMIT_FSIZE must bite the database, not the daemon's own log file).
- ``Monitor``: polls /readyz, /metrics and the admin API every 50 ms in the background
  and remembers every status, every 500 and every body that shows a traceback.
- ``Load``: concurrent providers that send each event until it gets a 2xx.
- ``spawn_serve``: another ``hookgate serve`` that is expected to refuse to start.
- ``Row`` and ``REPORT``: one line per case (acknowledged, delivered, lost, duplicates,
  attempts, exit codes, time to exit), printed at the end of the run.

Every loop here is bounded in count and in time; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

from .conftest import Daemon, Downstream, clean_env, serve_command

TOKEN = "fault-injection-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MONITORED = ("/readyz", "/metrics", "/api/v1/stats", "/api/v1/messages?limit=5")
# Bounds, not expectations: a hung request or a runaway loop ends the case.
REQUEST_TIMEOUT = 10.0
MONITOR_MAX_SECONDS = 240.0


# -- the report -----------------------------------------------------------------------


@dataclass
class Row:
    """What one case counted. Filled in as the case runs, so a failing case still shows."""

    case: str
    acknowledged: int | None = None
    delivered: int | None = None
    lost: int | None = None
    duplicates: int | None = None
    max_attempts: int | None = None  # the most requests one webhook-id took downstream
    exits: list[tuple[str, int | None, float | None]] = field(default_factory=list)
    note: str = ""

    def exited(self, what: str, code: int | None, seconds: float | None) -> None:
        self.exits.append((what, code, seconds))

    def count(self, stats: DeliveryStats) -> None:
        self.acknowledged = stats.acknowledged
        self.delivered = stats.delivered
        self.lost = stats.lost
        self.duplicates = stats.duplicates
        self.max_attempts = stats.max_arrivals

    def cells(self) -> list[str]:
        def show(value: object) -> str:
            return "-" if value is None else str(value)

        codes = " ".join(f"{what}={show(code)}" for what, code, _ in self.exits)
        seconds = " ".join(
            f"{what}={'-' if s is None else f'{s:.1f}'}" for what, _, s in self.exits
        )
        return [
            self.case,
            show(self.acknowledged),
            show(self.delivered),
            show(self.lost),
            show(self.duplicates),
            show(self.max_attempts),
            codes or "-",
            seconds or "-",
            " | ".join(self.note.split("\n"))[:160],
        ]


HEADER = ["case", "acked", "delivered", "lost", "dups", "max/id", "exit code", "s to exit", "note"]


def table(rows: Sequence[Row]) -> list[str]:
    """The rows under a header, each column as wide as its widest cell."""
    lines = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]


class Report:
    """A pytest plugin registered at run time: prints every row in the terminal summary."""

    name = "hookgate-fault-report"

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def row(self, config: pytest.Config, case: str) -> Row:
        if not config.pluginmanager.has_plugin(self.name):
            config.pluginmanager.register(self, self.name)
        row = Row(case)
        self.rows.append(row)
        return row

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        terminalreporter.section("fault injection")
        for line in table(self.rows):
            terminalreporter.write_line(line)


REPORT = Report()


class Verdict:
    """Collects every broken expectation of a case, so one run shows all its symptoms."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, condition: object, message: str | Callable[[], str]) -> bool:
        if not condition:
            self.failures.append(message() if callable(message) else message)
        return bool(condition)

    def extend(self, failures: Sequence[str]) -> None:
        self.failures.extend(failures)

    def verify(self) -> None:
        if self.failures:
            raise AssertionError(
                f"{len(self.failures)} expectation(s) broken:\n- " + "\n- ".join(self.failures)
            )


# -- the daemon, with its output through pipes -------------------------------------------


def _pump(pipe: IO[bytes], path: Path) -> None:
    with pipe, path.open("ab") as out:
        while chunk := pipe.read1(65536):
            out.write(chunk)
            out.flush()


class PipedDaemon(Daemon):
    """``Daemon`` whose stdout/stderr are pipes copied to files by this process."""

    def __init__(self, folder: Path, config: Any) -> None:
        super().__init__(folder, config)
        self._pumps: list[threading.Thread] = []

    def spawn(self, stdout_path: Path, stderr_path: Path) -> subprocess.Popen[bytes]:
        """Run ``hookgate serve`` with its output through pipes, copied to these files."""
        proc = subprocess.Popen(
            serve_command(self.config_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.folder,
            env=clean_env(),
        )
        assert proc.stdout is not None and proc.stderr is not None
        for pipe, path in ((proc.stdout, stdout_path), (proc.stderr, stderr_path)):
            pump = threading.Thread(target=_pump, args=(pipe, path), daemon=True)
            pump.start()
            self._pumps.append(pump)
        return proc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def close(self) -> None:
        await super().close()
        for pump in self._pumps:
            pump.join(5)
        self._pumps.clear()


async def stop_timed(daemon: Daemon, timeout: float) -> tuple[int | None, float | None]:
    """SIGTERM; (exit code, seconds to exit), or (None, None) if it had to be killed."""
    assert daemon.proc is not None
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    deadline = started + timeout
    while daemon.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if daemon.proc.poll() is None:
        daemon.kill()
        return None, None
    return daemon.proc.returncode, time.monotonic() - started


# -- another `hookgate serve` that should refuse to start ----------------------------------


@dataclass
class Spawned:
    pid: int
    code: int | None  # None: still running at the deadline (then stopped by the test)
    seconds: float | None  # from spawn to its own exit
    stdout: str
    stderr: str
    forced_code: int | None = None  # its exit code once the test stopped it


async def spawn_serve(config: Path, outputs: Path, name: str, timeout: float) -> Spawned:
    """Run ``hookgate serve -c CONFIG`` and wait up to ``timeout`` s for it to exit."""
    outputs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = outputs / f"{name}.stdout", outputs / f"{name}.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            serve_command(config),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=outputs,
            env=clean_env(),
        )
        deadline = started + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        code = proc.poll()
        seconds = time.monotonic() - started if code is not None else None
        forced = None
        if code is None:
            proc.send_signal(signal.SIGTERM)
            stop_deadline = time.monotonic() + 15
            while proc.poll() is None and time.monotonic() < stop_deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
            forced = proc.wait()
    return Spawned(
        proc.pid,
        code,
        seconds,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
        forced,
    )


def one_line_refusal(verdict: Verdict, spawned: Spawned, what: str) -> None:
    """Exit 1, one stderr line ``hookgate: cannot start: ...``, and no traceback."""
    verdict.check(
        spawned.code == 1,
        lambda: (
            f"{what}: exit code {spawned.code} (None: still running, stopped by the test"
            f" with {spawned.forced_code}), expected 1; stderr: {spawned.stderr[-800:]!r}"
        ),
    )
    lines = spawned.stderr.strip().splitlines()
    verdict.check(
        len(lines) == 1 and lines[0].startswith("hookgate: cannot start:"),
        lambda: f"{what}: stderr should be one 'hookgate: cannot start:' line: {lines[-8:]!r}",
    )
    verdict.check(
        "Traceback" not in spawned.stderr + spawned.stdout,
        lambda: f"{what}: a traceback was printed: {spawned.stderr[-1500:]!r}",
    )


# -- the monitoring loop --------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic() when the request was sent
    path: str
    status: int  # 0: connection error, -1: no answer within REQUEST_TIMEOUT
    detail: str = ""


class Monitor:
    """Polls the admin listener every ``interval`` s, one loop per endpoint, until stopped."""

    def __init__(self, admin_port: int, interval: float = 0.05) -> None:
        self.base = f"http://127.0.0.1:{admin_port}"
        self.interval = interval
        self.samples: list[Sample] = []
        self.bad_bodies: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Monitor:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT), headers=AUTH
        )
        self._tasks = [asyncio.create_task(self._poll(path)) for path in MONITORED]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _poll(self, path: str) -> None:
        assert self._session is not None
        ends = time.monotonic() + MONITOR_MAX_SECONDS
        while not self._stop.is_set() and time.monotonic() < ends:
            sent = time.monotonic()
            try:
                async with self._session.get(self.base + path) as response:
                    body = await response.read()
                self._record(Sample(sent, path, response.status), body)
            except TimeoutError:
                self.samples.append(Sample(sent, path, -1, "no answer"))
            except aiohttp.ClientError as exc:
                self.samples.append(Sample(sent, path, 0, repr(exc)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    def _record(self, sample: Sample, body: bytes) -> None:
        self.samples.append(sample)
        if b"Traceback" in body and len(self.bad_bodies) < 5:
            self.bad_bodies.append(f"{sample.path} {sample.status}: {body[-600:]!r}")

    # what it saw

    def statuses(self, path: str = "/readyz") -> collections.Counter[int]:
        return collections.Counter(s.status for s in self.samples if s.path == path)

    def readyz_between(self, start: float, end: float) -> list[int]:
        return [s.status for s in self.samples if s.path == "/readyz" and start <= s.at <= end]

    def summary(self) -> str:
        counts = {path: dict(self.statuses(path)) for path in MONITORED}
        return f"{len(self.samples)} polls: {counts}"

    def failures(self, *, expect_answers: bool = True) -> list[str]:
        """No 500, no traceback, no hang; and an answer to every poll (or to none)."""
        failures = []
        server_errors = [s for s in self.samples if s.status >= 500 and s.status != 503]
        if server_errors:
            failures.append(
                f"monitor: {len(server_errors)} answers were 5xx other than 503, e.g."
                f" {server_errors[:3]}"
            )
        if self.bad_bodies:
            failures.append(f"monitor: bodies with a traceback: {self.bad_bodies}")
        hung = [s for s in self.samples if s.status == -1]
        if hung:
            failures.append(
                f"monitor: {len(hung)} polls got no answer within {REQUEST_TIMEOUT}s: {hung[:3]}"
            )
        refused = [s for s in self.samples if s.status == 0]
        answered = [s for s in self.samples if s.status > 0]
        if expect_answers and refused:
            failures.append(f"monitor: {len(refused)} connection errors, e.g. {refused[:2]}")
        if not expect_answers and answered:
            failures.append(f"monitor: something answered on the admin port: {answered[:3]}")
        if expect_answers and not answered:
            failures.append("monitor: no poll was answered at all")
        return failures


# -- providers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    at: float
    status: int
    retry_after: str | None
    body: bytes


class Load:
    """Concurrent providers: each event is sent until a 2xx (a 503 is retried).

    ``total`` events, or new events until ``stop()`` when ``total`` is None. Answers
    other than 200/202/503, a 503 without ``Retry-After`` and any body with a traceback
    are remembered as failures; nothing is asserted inside the tasks.
    """

    def __init__(
        self,
        daemon: Daemon,
        *,
        prefix: str,
        total: int | None = None,
        posters: int = 16,
        pause: float = 0.0,
        deadline: float = 60.0,
        padding: int = 200,
    ) -> None:
        self.url = daemon.url("/hooks/load")
        self.prefix = prefix
        self.total = total
        self.posters = posters
        self.pause = pause
        self.deadline = deadline
        self.padding = "x" * padding
        self.acked: dict[str, str] = {}  # event id -> message id from the 2xx
        self.answers: list[Answer] = []
        self.failures: list[str] = []
        self.unacked: set[str] = set()
        self._next = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Load:
        self._task = asyncio.create_task(self._run())
        return self

    def stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        assert self._task is not None
        await self._task

    async def run(self) -> None:
        self.start()
        await self.wait()

    def statuses(self, start: float = 0.0, end: float = float("inf")) -> collections.Counter[int]:
        return collections.Counter(a.status for a in self.answers if start <= a.at <= end)

    def _take(self) -> int | None:
        if self._stop.is_set() or (self.total is not None and self._next >= self.total):
            return None
        if self._next >= 200_000:  # a bound for the open-ended mode
            return None
        self._next += 1
        return self._next - 1

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.posters)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT * 3)
        ends = time.monotonic() + self.deadline
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._poster(session, ends) for _ in range(self.posters)))

    async def _poster(self, session: aiohttp.ClientSession, ends: float) -> None:
        while (n := self._take()) is not None:
            event_id = f"{self.prefix}_{n:06d}"
            body = json.dumps(
                {"id": event_id, "type": "fault.test", "n": n, "pad": self.padding}
            ).encode()
            while time.monotonic() < ends:
                answer = await self._send(session, body)
                if answer.status in (200, 202):
                    self.acked[event_id] = json.loads(answer.body)["id"]
                    break
                await asyncio.sleep(0.05)  # a 503 (or worse): the provider tries again
            else:
                self.unacked.add(event_id)
            if self.pause:
                await asyncio.sleep(self.pause)

    async def _send(self, session: aiohttp.ClientSession, body: bytes) -> Answer:
        sent = time.monotonic()
        try:
            async with session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                payload = await response.read()
                answer = Answer(sent, response.status, response.headers.get("Retry-After"), payload)
        except (aiohttp.ClientError, TimeoutError) as exc:
            answer = Answer(sent, 0, None, repr(exc).encode())
        self.answers.append(answer)
        self._judge(answer)
        return answer

    def _judge(self, answer: Answer) -> None:
        if len(self.failures) >= 20:
            return
        if answer.status not in (200, 202, 503):
            self.failures.append(f"ingress answered {answer.status}: {answer.body[:300]!r}")
        elif answer.status == 503 and not (answer.retry_after or "").isdigit():
            self.failures.append(f"a 503 without a numeric Retry-After: {answer.body[:200]!r}")
        if b"Traceback" in answer.body:
            self.failures.append(f"a traceback in an ingress answer: {answer.body[-400:]!r}")


async def post_once(session: aiohttp.ClientSession, daemon: Daemon, event_id: str) -> Answer:
    body = json.dumps({"id": event_id, "type": "fault.test"}).encode()
    sent = time.monotonic()
    try:
        async with session.post(
            daemon.url("/hooks/load"), data=body, headers={"Content-Type": "application/json"}
        ) as response:
            payload = await response.read()
            return Answer(sent, response.status, response.headers.get("Retry-After"), payload)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Answer(sent, 0, None, repr(exc).encode())


async def admin_call(
    session: aiohttp.ClientSession, daemon: Daemon, method: str, path: str
) -> tuple[int, str, bytes]:
    """(status, content type, body) of an admin-listener request with the token.

    Status 0: no connection (the daemon is gone); -1: no answer within REQUEST_TIMEOUT.
    """
    try:
        async with session.request(
            method,
            daemon.admin_url(path),
            headers=AUTH,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as response:
            return response.status, response.content_type, await response.read()
    except TimeoutError:
        return -1, "", b"no answer"
    except aiohttp.ClientError as exc:
        return 0, "", repr(exc).encode()


async def readyz(session: aiohttp.ClientSession, daemon: Daemon) -> tuple[int, dict[str, Any]]:
    status, _, body = await admin_call(session, daemon, "GET", "/readyz")
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {"unparsed": body[:300].decode(errors="replace")}


# -- what arrived downstream ----------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryStats:
    acknowledged: int
    delivered: int  # acknowledged ids that arrived downstream
    lost: int  # acknowledged ids that never arrived
    duplicates: int  # requests beyond the first per webhook-id
    max_arrivals: int  # the most requests one webhook-id took
    max_attempt_header: int
    missing: frozenset[str]


def delivery_stats(downstream: Downstream, acked: set[str]) -> DeliveryStats:
    arrivals = collections.Counter(
        r.headers["webhook-id"] for r in downstream.requests if "webhook-id" in r.headers
    )
    attempt_headers = [int(r.headers.get("Hookgate-Attempt", "0")) for r in downstream.requests]
    missing = frozenset(acked - set(arrivals))
    return DeliveryStats(
        acknowledged=len(acked),
        delivered=len(acked & set(arrivals)),
        lost=len(missing),
        duplicates=sum(arrivals.values()) - len(arrivals),
        max_arrivals=max(arrivals.values(), default=0),
        max_attempt_header=max(attempt_headers, default=0),
        missing=missing,
    )


def explain_missing(daemon: Daemon, missing: frozenset[str], limit: int = 200) -> str:
    """What the database says about acknowledged ids that never arrived."""
    states: collections.Counter[str] = collections.Counter()
    try:
        for message_id in sorted(missing)[:limit]:
            rows = daemon.delivery_rows(message_id)
            if not rows:
                states["not in the database"] += 1
            for _, state, attempts, _ in rows:
                states[f"{state} after {attempts} attempts"] += 1
    except sqlite3.Error as exc:
        return f"{len(missing)} missing; the database cannot be read: {exc}"
    return (
        f"{len(missing)} acknowledged ids never arrived; in the db (first {limit}): {dict(states)}"
    )


# -- faults -------------------------------------------------------------------------------------


def database_files(db: Path) -> list[Path]:
    """The database, its WAL and its shared-memory index: those that exist."""
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]


def checkpoint_truncate(db: Path, tries: int = 40) -> bool:
    """Move the WAL into the main file and truncate it, beside the running daemon."""
    conn = sqlite3.connect(db, timeout=5, isolation_level=None)
    try:
        for _ in range(tries):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                return True
            time.sleep(0.05)
        return False
    finally:
        conn.close()


def set_fsize(pid: int, limit: str) -> None:
    """RLIMIT_FSIZE of a running process (``prlimit --pid``); ``limit`` bytes or unlimited."""
    # The soft limit only: raising it back needs no privilege (the hard one stays).
    subprocess.run(
        ["prlimit", "--pid", str(pid), f"--fsize={limit}:unlimited"], check=True, timeout=10
    )


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not installed")
    return path


def chattr(flag: str, paths: Sequence[Path]) -> None:
    if paths:
        subprocess.run(["chattr", flag, *map(str, paths)], check=True, timeout=10)


@contextlib.contextmanager
def immutable(paths: Sequence[Path]) -> Iterator[None]:
    """``chattr +i`` on ``paths`` until exit; always undone."""
    done: list[Path] = []
    try:
        for path in paths:
            chattr("+i", [path])
            done.append(path)
        yield
    finally:
        for path in reversed(done):
            with contextlib.suppress(subprocess.CalledProcessError):
                chattr("-i", [path])


def page_size(db: Path) -> int:
    with db.open("rb") as file:
        header = file.read(100)
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def messages_leaf_in_the_middle(db: Path) -> int:
    """The page number of a leaf of the ``messages`` table halfway through the file."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        pages = [
            page
            for (page,) in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'messages' AND pagetype = 'leaf'"
                " ORDER BY pageno"
            )
        ]
    finally:
        conn.close()
    assert len(pages) >= 3, f"only {len(pages)} leaf pages of messages"
    return pages[len(pages) // 2]


def overwrite_page(db: Path, page: int) -> None:
    """Random bytes over page ``page`` (1-based), written and synced behind SQLite's back."""
    size = page_size(db)
    fd = os.open(db, os.O_WRONLY)
    try:
        os.pwrite(fd, os.urandom(size), (page - 1) * size)
        os.fsync(fd)
    finally:
        os.close(fd)
