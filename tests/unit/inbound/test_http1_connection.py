"""The ingress server's connection state machine, driven in the order the event loop
runs its callbacks, where a socket cannot make that order happen on demand."""

from __future__ import annotations

import asyncio

from hookgate.inbound import http1


class Transport(asyncio.Transport):
    """Keeps what is written; closing is only noted."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.pauses = 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


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
    transport = Transport()
    connection.connection_made(transport)
    connection._idle_deadline = connection.loop.time() - 0.001  # passed in this turn
    connection.data_received(b"POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
    connection._on_timer()
    await asyncio.sleep(0)  # the start the read queued
    assert app.handled == 1
    assert transport.written.startswith(b"HTTP/1.1 202 ")
    assert not transport.closed


async def test_requests_read_one_at_a_time_never_pause_reading() -> None:
    """A request waits for its start only until the loop's next turn: reading is held
    back for requests queued behind one being answered, not for that wait (with
    asyncio's own loop each pause and resume is a system call)."""
    app = Accepting()
    connection = http1.Connection(http1.Server(app))
    transport = Transport()
    connection.connection_made(transport)
    for _ in range(10):
        connection.data_received(b"POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
        await asyncio.sleep(0)
    assert app.handled == 10
    assert transport.written.count(b"HTTP/1.1 202 ") == 10
    assert transport.pauses == 0


async def test_a_request_whose_connection_closes_before_it_starts_is_not_handled() -> None:
    """Closed between the read and the start (a shutdown, an idle close, a drained
    body's end): handling it would store a webhook whose answer cannot be written."""
    app = Accepting()
    connection = http1.Connection(http1.Server(app))
    transport = Transport()
    connection.connection_made(transport)
    connection.data_received(b"POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
    connection.close()
    await asyncio.sleep(0)
    assert app.handled == 0
    assert transport.written == b""
