"""The two ways the ingress answers a request, over raw sockets and a real SQLite outbox.

A request whose body arrived with its head is handled at once, and its answer follows
the commit's future with a callback (``http1.Deferred``, no task); one whose body is
still arriving is handled by a task that waits for it. Both must give the same
answers and store the same rows, fail the same way, and keep pipelined answers in
order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import sqlite3
import struct
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from hookgate import config
from hookgate.errors import StoreError
from hookgate.inbound import http1
from hookgate.inbound.listener import Ingress
from hookgate.store import Accepted, NewMessage
from hookgate.store.sqlite import SQLiteStore

from .test_http1 import Answer
from .test_http1 import read_answer as read_answer_with_date

HOST = "127.0.0.1"
WAIT = 10.0  # the most any test waits for something that should happen at once
SECRET = "s3cret-for-tests"

CONFIG = f"""
[server]
listen = "127.0.0.1:0"
max_body = "1KiB"
request_timeout = "5s"

[sources.signed]
path = "/hooks/signed"
event_type = "json:type"
event_id = "json:id"
[sources.signed.verify]
scheme = "hmac"
header = "X-Signature"
prefix = "sha256="
secrets = ["{SECRET}"]

[destinations.all]
url = "http://127.0.0.1:9/all"
sources = ["signed"]

[destinations.charges]
url = "http://127.0.0.1:9/charges"
sources = ["signed"]
events = ["charge.*"]
"""


class HeldOutbox:
    """The real store's commit behind a plain future, as the store gives it; held
    until ``release`` while ``hold`` is set, or failed with ``fail``."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.identity = store.identity
        self.hold = False
        self.held: list[tuple[NewMessage, asyncio.Future[Accepted]]] = []
        self.arrived = asyncio.Event()

    def accept(self, message: NewMessage) -> asyncio.Future[Accepted]:
        self.arrived.set()
        if not self.hold:
            return self.store.accept(message)
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self.held.append((message, future))
        return future

    def release(self) -> None:
        self.hold = False
        held, self.held = self.held, []
        for message, future in held:
            self.store.accept(message).add_done_callback(
                lambda committed, future=future: _copy(committed, future)
            )

    def fail(self, error: BaseException) -> None:
        held, self.held = self.held, []
        for _, future in held:
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(error)


def _copy(committed: asyncio.Future[Accepted], future: asyncio.Future[Accepted]) -> None:
    error = committed.exception()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(committed.result())


@dataclass
class Served:
    server: http1.Server
    ingress: Ingress
    outbox: HeldOutbox
    db: Path
    paths: list[str] = field(default_factory=list)  # "now" or "later", per request

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def rows(self) -> list[tuple[Any, ...]]:
        """Every stored message with its deliveries, without ids and times."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            messages = conn.execute(
                "SELECT id, source, event_type, event_id, headers, body FROM messages"
                " ORDER BY received_at"
            ).fetchall()
            rows = []
            for message_id, *values in messages:
                destinations = conn.execute(
                    "SELECT destination, state FROM deliveries WHERE message_id = ?"
                    " ORDER BY destination",
                    (message_id,),
                ).fetchall()
                rows.append((*values, destinations))
            return rows


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Served]]]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start() -> Served:
        folder = tmp_path / f"served{len(cleanups)}"  # each its own database
        folder.mkdir()
        path = folder / "hookgate.toml"
        path.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
        cfg = config.load(path, {})
        store = SQLiteStore(cfg.storage.path)
        await store.open()
        cleanups.append(store.close)
        outbox = HeldOutbox(store)
        ingress = Ingress(cfg, outbox)
        server = ingress.server()
        served = Served(server, ingress, outbox, Path(cfg.storage.path))
        handle = ingress.handle

        def noted(request: http1.Request) -> http1.Answer:
            answer = handle(request)
            done_now = isinstance(answer, http1.Response | http1.Deferred)
            served.paths.append("now" if done_now else "later")
            return answer

        ingress.handle = noted  # type: ignore[method-assign]
        await server.listen(HOST, 0)
        cleanups.append(lambda: server.close(1.0))
        return served

    try:
        yield start
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """The next answer, without its Date header (answers are compared whole)."""
    answer = await read_answer_with_date(reader)
    del answer.headers["date"]
    return answer


def head(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: hookgate.test", *headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def signed(payload: dict[str, Any], secret: str = SECRET) -> tuple[bytes, bytes]:
    """The head and the body of a webhook signed with ``secret``."""
    return signed_body(orjson.dumps(payload), secret)


def signed_body(body: bytes, secret: str = SECRET) -> tuple[bytes, bytes]:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return head("/hooks/signed", body, f"X-Signature: {signature}", "X-Custom: kept"), body


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.005)


async def send(served: Served, request: tuple[bytes, bytes], *, body_later: bool) -> Answer:
    """One request on a new connection: head and body in one write, or the body only
    once the ingress was asked for an answer without it."""
    reader, writer = await asyncio.open_connection(HOST, served.port)
    try:
        request_head, body = request
        if body_later:
            asked = len(served.paths)
            writer.write(request_head)
            await wait_until(lambda: len(served.paths) > asked)
            writer.write(body)
        else:
            writer.write(request_head + body)
        return await read_answer(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


REQUESTS: dict[str, Callable[[int], tuple[bytes, bytes]]] = {
    "accepted": lambda n: signed({"id": f"evt_{n}", "type": "charge.succeeded", "n": n}),
    "bad signature": lambda n: signed({"id": f"evt_{n}", "type": "x"}, secret="wrong"),
    "no signature": lambda n: (head("/hooks/signed", b'{"a":1}'), b'{"a":1}'),
    "missing event id": lambda n: signed({"type": "charge.succeeded"}),
    "not json": lambda n: signed_body(b"type=charge.succeeded"),
    "too large": lambda n: signed({"id": f"evt_{n}", "pad": "x" * 2000}),
    "no source": lambda n: (head("/nowhere", b"{}"), b"{}"),
}


@pytest.mark.parametrize("kind", REQUESTS)
async def test_both_paths_give_the_same_answer_and_rows(
    serve: Callable[[], Awaitable[Served]], kind: str
) -> None:
    now_served = await serve()
    at_once = await send(now_served, REQUESTS[kind](1), body_later=False)
    later_served = await serve()
    later = await send(later_served, REQUESTS[kind](1), body_later=True)
    assert now_served.paths == ["now"]
    # A body over the limit by its Content-Length is refused from the head alone.
    assert later_served.paths == ["now" if kind in ("too large", "no source") else "later"]
    if kind == "accepted":
        assert at_once.status == later.status == 202
        assert at_once.json().keys() == later.json().keys() == {"id"}
        assert at_once.headers == later.headers
    else:
        assert at_once == later
        assert at_once.status in (400, 401, 404, 413)
    assert now_served.rows() == later_served.rows()
    assert len(now_served.rows()) == (1 if kind == "accepted" else 0)


@pytest.mark.parametrize("body_later", [False, True])
@pytest.mark.parametrize("failure", ["store error", "cancelled", "store closed"])
async def test_a_commit_that_fails_is_503_on_both_paths(
    serve: Callable[[], Awaitable[Served]], body_later: bool, failure: str
) -> None:
    served = await serve()
    if failure == "store closed":
        await served.outbox.store.close()  # accept itself raises StoreError
    else:
        served.outbox.hold = True
    answering = asyncio.create_task(send(served, REQUESTS["accepted"](1), body_later=body_later))
    if failure != "store closed":
        await asyncio.wait_for(served.outbox.arrived.wait(), WAIT)
        error = StoreError("disk full") if failure == "store error" else asyncio.CancelledError()
        served.outbox.fail(error)
    answer = await asyncio.wait_for(answering, WAIT)
    assert answer.status == 503
    assert answer.json()["error"] == "unavailable"
    assert answer.headers["retry-after"] == "5"
    assert served.paths == ["later" if body_later else "now"]
    if failure != "store closed":
        assert served.rows() == []


async def test_a_client_gone_before_the_commit_leaves_the_webhook_stored(
    serve: Callable[[], Awaitable[Served]],
) -> None:
    served = await serve()
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    served.outbox.hold = True
    _, writer = await asyncio.open_connection(HOST, served.port)
    request_head, body = REQUESTS["accepted"](1)
    writer.write(request_head + body)
    await asyncio.wait_for(served.outbox.arrived.wait(), WAIT)
    # A reset, not a half-close (which still gets its answer): the connection is lost.
    linger = struct.pack("ii", 1, 0)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    writer.transport.abort()
    await wait_until(lambda: not served.server.connections)
    assert served.rows() == []
    served.outbox.release()
    await wait_until(lambda: len(served.rows()) == 1)
    await asyncio.wait_for(served.server.close(WAIT), WAIT)  # nothing left in flight
    assert not served.server.tasks
    assert errors == []
    assert served.paths == ["now"]


async def test_shutdown_waits_for_an_answer_that_follows_its_commit(
    serve: Callable[[], Awaitable[Served]],
) -> None:
    served = await serve()
    served.outbox.hold = True
    reader, writer = await asyncio.open_connection(HOST, served.port)
    request_head, body = REQUESTS["accepted"](1)
    writer.write(request_head + body)
    await asyncio.wait_for(served.outbox.arrived.wait(), WAIT)
    closing = asyncio.create_task(served.server.close(WAIT))
    with pytest.raises(OSError):  # the close began: no new connection is accepted
        await asyncio.open_connection(HOST, served.port)
    assert not closing.done()
    served.outbox.release()
    answer = await read_answer(reader)
    assert answer.status == 202
    assert answer.headers["connection"] == "close"
    await asyncio.wait_for(closing, WAIT)
    assert len(served.rows()) == 1
    writer.close()


async def test_pipelined_requests_keep_their_order_whichever_path_answers(
    serve: Callable[[], Awaitable[Served]],
) -> None:
    served = await serve()
    served.outbox.hold = True
    reader, writer = await asyncio.open_connection(HOST, served.port)
    requests = [
        REQUESTS["accepted"](1),  # waits for its commit
        REQUESTS["bad signature"](2),  # answered at once, once its turn comes
        REQUESTS["no source"](3),
        REQUESTS["accepted"](4),
    ]
    writer.write(b"".join(request_head + body for request_head, body in requests))
    await asyncio.wait_for(served.outbox.arrived.wait(), WAIT)
    served.outbox.release()
    answers = [await read_answer(reader) for _ in requests]
    assert [a.status for a in answers] == [202, 401, 404, 202]
    assert served.paths == ["now"] * 4
    assert [row[2] for row in served.rows()] == ["evt_1", "evt_4"]
    # Many answered at once in one read: started one after the other, not recursively.
    many = 2000
    writer.write(b"GET /nowhere HTTP/1.1\r\nHost: hookgate.test\r\n\r\n" * many)
    statuses = [(await read_answer(reader)).status for _ in range(many)]
    assert statuses == [404] * many
    writer.close()


class RecordingTransport(asyncio.Transport):
    """A connection's transport that keeps what is written (no socket: the test
    chooses when each event reaches the connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self.pauses = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        pass


async def test_a_request_and_a_half_close_read_together_are_still_answered(
    serve: Callable[[], Awaitable[Served]],
) -> None:
    # The request and the FIN can reach the connection in one poll of the loop,
    # before the request is started: the half-open connection is kept for its answer.
    served = await serve()
    connection = http1.Connection(served.server)
    transport = RecordingTransport()
    connection.connection_made(transport)
    request_head, body = REQUESTS["accepted"](1)
    connection.data_received(request_head + body)
    assert connection.eof_received() is True
    await wait_until(lambda: bool(transport.written))
    assert transport.written[0].startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert b"Connection: close\r\n" in transport.written[0]
    assert transport.closed
    assert len(served.rows()) == 1
    connection.connection_lost(None)


class Accepting:
    """Answers every request 202 at once and counts them."""

    max_body = 1024
    request_timeout = 5.0

    def __init__(self) -> None:
        self.handled = 0

    def handle(self, request: http1.Request) -> http1.Answer:
        self.handled += 1
        return http1.Response(202, b'{"id":"msg_1"}')

    def refused(self, peer: str | None, status: int, code: str) -> None:
        pass


async def test_a_request_read_in_the_turn_its_keepalive_deadline_passed_is_answered() -> None:
    """The loop runs a read's callback, then the timers due, then what the read queued
    (the request's start): the idle timer of that turn must not close a connection
    whose request will be handled (stored) and answered."""
    app = Accepting()
    connection = http1.Connection(http1.Server(app))
    transport = RecordingTransport()
    connection.connection_made(transport)
    connection._idle_deadline = connection.loop.time() - 0.001  # passed in this turn
    connection.data_received(b"POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
    connection._on_timer()
    await asyncio.sleep(0)  # the start the read queued
    assert app.handled == 1
    assert b"".join(transport.written).startswith(b"HTTP/1.1 202 ")
    assert not transport.closed


async def test_requests_read_one_at_a_time_never_pause_reading() -> None:
    """A request waits for its start only until the loop's next turn: reading is held
    back for requests queued behind one being answered, not for that wait (with
    asyncio's own loop each pause and resume is a system call)."""
    app = Accepting()
    connection = http1.Connection(http1.Server(app))
    transport = RecordingTransport()
    connection.connection_made(transport)
    for _ in range(10):
        connection.data_received(b"POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
        await asyncio.sleep(0)
    assert app.handled == 10
    assert b"".join(transport.written).count(b"HTTP/1.1 202 ") == 10
    assert transport.pauses == 0


async def test_a_request_whose_connection_closes_before_it_starts_is_not_handled() -> None:
    """Closed between the read and the start (a shutdown, an idle close, a drained
    body's end): handling it would store a webhook whose answer cannot be written."""
    app = Accepting()
    connection = http1.Connection(http1.Server(app))
    transport = RecordingTransport()
    connection.connection_made(transport)
    connection.data_received(b"POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
    connection.close()
    await asyncio.sleep(0)
    assert app.handled == 0
    assert transport.written == []
