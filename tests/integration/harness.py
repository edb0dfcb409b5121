"""What the integration tests share: a recording downstream, the relay wired as the
daemon wires it, factories for the store's values, and ways to wait and to look.

The fixtures that hand these out are in ``conftest.py``; test modules import the
types and helpers from here (``from ..harness import Relay``), never from each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import textwrap
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiohttp import web
from multidict import CIMultiDict

from hookgate import config, metrics
from hookgate.config import DestinationConfig
from hookgate.outbound.alerts import Alerter
from hookgate.outbound.dispatcher import Dispatcher
from hookgate.store import (
    AttemptRecord,
    NewMessage,
    SkippedDestination,
    Store,
    format_message_id,
    parse_message_id,
)
from hookgate.store.postgres import PostgresStore
from hookgate.store.sqlite import SQLiteStore

HOST = "127.0.0.1"
WAIT = 10.0  # a bound for waiting, not an expectation of speed
DAY = 86400.0


# -- waiting and looking ----------------------------------------------------------------


async def wait_for(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll ``predicate`` until it is true, and return it; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def db_rows(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read through a separate, plain sqlite3 connection: what another process sees."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def query_plan(path: Path, sql: str, params: tuple[object, ...]) -> list[str]:
    """EXPLAIN QUERY PLAN's steps, with the sqlite3 module (and so the SQLite) hookgate runs on."""
    return [str(row[3]) for row in db_rows(path, "EXPLAIN QUERY PLAN " + sql, params)]


class CommitSizes:
    """Group commits seen by ``hookgate_group_commit_webhooks`` since this was made."""

    def __init__(self) -> None:
        self._start = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        name = "hookgate_group_commit_webhooks"
        get = metrics.REGISTRY.get_sample_value
        return get(f"{name}_count") or 0.0, get(f"{name}_sum") or 0.0

    def commits_and_webhooks(self) -> tuple[int, int]:
        """Commits that carried webhooks, and how many webhooks they carried in all."""
        count, total = self._now()
        return int(count - self._start[0]), int(total - self._start[1])


# -- the backends ---------------------------------------------------------------------------


@dataclass
class Backend:
    """A store backend under test: its stores, and its rows as another process sees them.

    ``kind`` is "sqlite" (``location`` a file) or "postgresql" (``location`` a URL of a
    database of the session's private server). Tests write SQL with ``?`` marks.
    """

    kind: str
    location: str
    lease: float = 30.0

    def make(self) -> Store:
        """A new store on this database, not yet opened."""
        if self.kind == "sqlite":
            return SQLiteStore(self.location)
        return PostgresStore(self.location, lease=self.lease)

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            return db_rows(Path(self.location), sql, params)
        with psycopg.connect(self.location, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s").encode(), params)
            return cursor.fetchall() if cursor.description else []


# -- the store's values ---------------------------------------------------------------------


def new_message(
    *,
    source: str = "stripe",
    event_id: str | None = None,
    event_type: str | None = "charge.succeeded",
    destinations: tuple[str, ...] = ("orders",),
    received_at: float | None = None,
    dedup_window: float = DAY,
    body: bytes = b'{"ok":true}',
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
    skipped: tuple[SkippedDestination, ...] = (),
) -> NewMessage:
    """A message as the ingress hands it to the store; ``headers`` are stored beside
    the content type."""
    return NewMessage(
        source=source,
        received_at=time.time() if received_at is None else received_at,
        event_type=event_type,
        event_id=event_id,
        dedup_window=dedup_window,
        headers=orjson.dumps({"content-type": content_type, **(headers or {})}),
        body=body,
        destinations=destinations,
        skipped=skipped,
    )


def record(
    delivery_id: int,
    *,
    state: str = "pending",
    attempts: int = 1,
    status: int | None = 500,
    error: str | None = "HTTP 500",
    next_attempt_at: float | None = None,
    started_at: float | None = None,
) -> AttemptRecord:
    """An attempt's outcome as a worker records it (by default a failed one, retried in 60 s)."""
    started = time.time() if started_at is None else started_at
    return AttemptRecord(
        delivery_id=delivery_id,
        started_at=started,
        duration_ms=12.5,
        status=status,
        error=error,
        response_snippet=b"oops",
        state=state,  # type: ignore[arg-type]
        attempts=attempts,
        next_attempt_at=started + 60 if next_attempt_at is None else next_attempt_at,
    )


# -- the downstream -------------------------------------------------------------------------


@dataclass
class Received:
    """One request the downstream got."""

    path: str
    headers: CIMultiDict[str]
    body: bytes
    at: float  # time.monotonic() once its body had arrived

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events a request carries: a batch's, or the single webhook itself."""
        if "Hookgate-Batch-Size" in self.headers:
            events: list[dict[str, Any]] = json.loads(self.body)["events"]
            return events
        return [{"id": self.headers["webhook-id"], "payload": self.body}]


Handler = Callable[[Received, int], Awaitable[web.StreamResponse]]


async def ok(received: Received, number: int) -> web.StreamResponse:
    return web.Response(status=200, text="thanks")


@dataclass
class Downstream:
    """A recording HTTP server on 127.0.0.1; ``handler`` answers each request, which
    it gets with its number (from 1)."""

    handler: Handler = ok
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def event_ids(self) -> list[str]:
        """The id of every event received, batched or not, in arrival order."""
        return [e["id"] for r in self.received for e in r.events]

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, 0).start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            received = Received(request.path, CIMultiDict(request.headers), body, time.monotonic())
            self.received.append(received)
            return await self.handler(received, len(self.received))
        finally:
            self.in_flight -= 1


# -- the relay ------------------------------------------------------------------------------


@dataclass
class Relay:
    """A store and a dispatcher wired as the daemon wires them; one source, "stripe"."""

    tmp_path: Path
    downstream: Downstream
    backend: Backend | None = None  # None: SQLite in tmp_path
    store: Store | None = None
    dispatcher: Dispatcher | None = None

    @property
    def db(self) -> Path:
        return self.tmp_path / "hookgate.db"

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of the relay's database (SQL with ``?`` marks), as another process sees them."""
        if self.backend is None:
            return db_rows(self.db, sql, params)
        return self.backend.rows(sql, params)

    async def start(
        self,
        destinations_toml: str,
        *,
        paused: Collection[str] = (),
        store_type: type[SQLiteStore] = SQLiteStore,
    ) -> config.Config:
        """Load a config of the source and these destinations (``{url}``: the downstream's).

        ``paused`` destinations are paused in the store first, as the admin API does
        it, so their workers start paused.
        """
        path = self.tmp_path / "hookgate.toml"
        text = '[sources.stripe]\npath = "/hooks/stripe"\n'
        text += textwrap.dedent(destinations_toml).replace("{url}", self.downstream.url())
        path.write_text(text, encoding="utf-8")
        cfg = config.load(path, {})
        store: Store
        if self.backend is None or self.backend.kind == "sqlite":
            store = store_type(cfg.storage.path, sync=cfg.storage.sync)
        else:
            store = self.backend.make()
        await self.wire(store, cfg.destinations.values(), paused=paused)
        return cfg

    async def wire(
        self,
        store: Store,
        destinations: Iterable[DestinationConfig],
        *,
        paused: Collection[str] = (),
    ) -> None:
        """Open ``store``, and start a dispatcher of ``destinations`` that its commits wake."""
        await store.open()
        self.store = store
        for name in paused:
            await store.set_paused(name, True)
        self.dispatcher = Dispatcher(destinations, store, Alerter(store, None))
        store.on_commit(self.dispatcher.wake)
        await self.dispatcher.start()

    async def stop(self) -> None:
        """Stop the dispatcher (its requests in flight end first), then the store; idempotent."""
        dispatcher, self.dispatcher = self.dispatcher, None
        store, self.store = self.store, None
        if dispatcher is not None:
            await dispatcher.stop(grace=1.0)
        if store is not None:
            await store.close()

    async def resume(self, destination: str = "orders") -> None:
        assert self.dispatcher is not None
        await self.dispatcher.set_paused(destination, False)

    async def run_until_idle(self, timeout: float = WAIT) -> None:
        """Return once every worker is idle, as arq's burst mode runs until the queue is empty.

        Idle: no worker has a request in flight, and no destination that is not paused
        has a pending delivery due now. A delivery waiting for its backoff is not due:
        to see a retry, wait for it. What this cannot see is a claim query still
        running; a test about a late claim sends a marker after it (``settle``).
        """
        deadline = time.monotonic() + timeout
        while not (self._no_requests() and not await self._any_due() and self._no_requests()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the relay was still busy after {timeout}s")
            await asyncio.sleep(0.01)

    def _no_requests(self) -> bool:
        assert self.dispatcher is not None
        workers = self.dispatcher.workers.values()
        return all(not worker.requests and not worker.inflight for worker in workers)

    async def _any_due(self) -> bool:
        assert self.dispatcher is not None and self.store is not None
        now = time.time()
        for name, worker in self.dispatcher.workers.items():
            if not worker.paused and await self.store.due_deliveries(name, now, 1):
                return True
        return False

    async def settle(self) -> str:
        """Accept a marker, wait until its delivery is attempted, then stop; its id.

        Instead of sleeping before asserting that something was *not* sent: a worker
        claims one step at a time, so once the marker (accepted last) has been
        attempted, every claim made before has started its requests, and stopping
        waits for those to end. Whatever was going to be sent has been sent.
        """
        marker = await self.accept(b'{"type":"marker"}')
        await wait_for(lambda: self.delivery(marker)[0] != "pending")
        await self.stop()
        return marker

    async def accept(
        self,
        body: bytes = b'{"type":"charge.succeeded"}',
        content_type: str = "application/json",
        *,
        destinations: tuple[str, ...] = ("orders",),
        headers: Mapping[str, str] | None = None,
        event_type: str | None = "charge.succeeded",
    ) -> str:
        """Commit a message as the ingress does; its id."""
        assert self.store is not None
        accepted = await self.store.accept(
            new_message(
                body=body,
                content_type=content_type,
                headers=headers,
                event_type=event_type,
                destinations=destinations,
            )
        )
        return accepted.message_id

    def delivery(self, message_id: str) -> tuple[Any, ...]:
        """(state, attempts, last_status, last_error) of the message's only delivery."""
        (row,) = self.rows(
            "SELECT state, attempts, last_status, last_error FROM deliveries WHERE message_id = ?",
            (parse_message_id(message_id),),
        )
        return row

    def attempts(self, message_id: str) -> list[tuple[Any, ...]]:
        """(status, error, response_snippet, started_at, duration_ms) of each attempt."""
        return self.rows(
            "SELECT a.status, a.error, a.response_snippet, a.started_at, a.duration_ms"
            " FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
            " WHERE d.message_id = ? ORDER BY a.id",
            (parse_message_id(message_id),),
        )

    def states(self) -> dict[str, str]:
        """Each message's delivery state, by message id (one destination)."""
        return {
            format_message_id(message): state
            for message, state in self.rows("SELECT message_id, state FROM deliveries")
        }

    async def wait_state(self, message_id: str, state: str) -> tuple[Any, ...]:
        await wait_for(lambda: self.delivery(message_id)[0] == state)
        return self.delivery(message_id)

    async def wait_delivered(self, count: int) -> None:
        await wait_for(lambda: list(self.states().values()).count("delivered") == count)
