"""The ingress's HTTP/1.1 server: an asyncio protocol, requests parsed by httptools (llhttp).

aiohttp's server cost about 40 µs of CPU per webhook, two thirds of an ingest process
(docs/benchmarks.md); this one does what the ingress needs and no more: one request
at a time per connection, answered by the application's ``handle``, whose answer is
written in one piece.

- **Parsing**: llhttp in its strict mode refuses the smuggling shapes (Content-Length
  with Transfer-Encoding, two Content-Lengths, a signed or listed one), obs-fold,
  bad header tokens, bare LF, unknown methods and versions. On top of it, the limits
  aiohttp's parser had (request target and each header name or value at most
  ``MAX_LINE`` bytes, at most ``MAX_HEADERS`` header lines), a whole head of at most
  ``HEAD_BYTES``, ``Transfer-Encoding`` only ``chunked``, header values in UTF-8. A
  refused request gets a JSON error (400 ``bad_request``, 414 ``uri_too_long``, 431
  ``headers_too_large``), one log line (``Application.refused``) and the connection
  closes.
- **Time**: a connection must deliver a request head within ``keepalive`` of
  connecting or of its last answer (partial data or not), else it is closed with no
  answer; the same deadline closes idle keep-alive connections. The body's deadline
  is the application's (``Request.read_body``).
- **Bodies** are buffered up to the limit the application gave at the request's head
  (``Application.max_body``); past it the request is marked too large and the rest is
  dropped. ``Expect: 100-continue`` is answered when the application first waits for
  the body, that is once the checks that need no body passed.
- **Keep-alive and pipelining**: HTTP/1.1 keeps the connection unless ``Connection:
  close``, HTTP/1.0 only with ``keep-alive`` (llhttp's rule). Pipelined requests are
  answered in order; reading pauses while a parsed request waits for its turn or the
  transport's write buffer is full, so a client that does not read its answers holds
  at most a read's worth of requests and one body.
- **Closing**: an answer given before its request's body arrived (413, 405, 408...)
  keeps the connection, as aiohttp did: the rest of the body is parsed and dropped,
  and the connection closes only if it does not end within ``LINGER_TIME``. (With
  ``Connection: close`` on such an answer, a proxy streaming the body, Caddy, stopped
  sending it and reset its client.) After a refused head nothing more can be parsed:
  what comes is dropped for ``LINGER_TIME`` (so that the client gets the answer
  rather than a reset), then the connection closes. A connection still not closed
  ``CLOSE_TIME`` later (its peer reads nothing) is aborted.
- **Shutdown** (``Server.close``): stop accepting, close idle connections, let the
  requests in flight reach their answers within the grace, then abort the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import http
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import httptools
import msgspec
import structlog
import yarl
from multidict import CIMultiDict, MultiDict, MultiDictProxy

log = structlog.get_logger("hookgate.ingress")

# aiohttp's parser limits (max_line_size, max_field_size, max_headers), kept.
MAX_LINE = 8190
MAX_HEADERS = 128
# A whole request head: more is refused even if each line is within its limit.
HEAD_BYTES = 64 * 1024
KEEPALIVE_TIMEOUT = 15.0
LINGER_TIME = 1.0
CLOSE_TIME = 10.0
_BACKLOG = 128  # aiohttp's
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# At shutdown, how often connections still closing are looked at again.
_DRAIN_CHECK = 0.05
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


class BodyTooLarge(Exception):
    """The request's body went past the limit the application gave."""


class Response(msgspec.Struct, frozen=True):
    """An answer, written with Content-Type, Content-Length and Date."""

    # A msgspec Struct, not a frozen dataclass: one is made per request, and a frozen
    # dataclass's __init__ cost 0.6 µs of it (this, 0.07).
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class Deferred:
    """An answer that waits for ``future`` (a commit): ``answer(future)`` gives it once
    the future is done. The server follows the future with a callback: no task."""

    __slots__ = ("answer", "future")

    def __init__(
        self, future: asyncio.Future[Any], answer: Callable[[asyncio.Future[Any]], Response]
    ):
        self.future = future
        self.answer = answer


Answer = Response | Deferred | Awaitable[Response]
"""What ``Application.handle`` gives: the answer now, once a future is done, or once
a coroutine returns (run as a task)."""


class Application(Protocol):
    """What the server serves: its limits (read at each request head) and its handler."""

    @property
    def max_body(self) -> int: ...

    @property
    def request_timeout(self) -> float: ...

    def handle(self, request: Request) -> Answer:
        """The answer to ``request``, called once its head is parsed and what arrived
        with it (often the whole body) is buffered; the body may still be arriving."""
        ...

    def refused(self, peer: str | None, status: int, code: str) -> None:
        """Note a request refused by the server itself (malformed, limits)."""


class Request:
    """One request, as the application reads it.

    ``path`` is percent-decoded (routing), ``raw_path`` the target as sent (URL
    signatures cover the bytes), ``query`` decoded, multi-valued, blank values kept;
    ``headers`` case-insensitive and multi-valued.
    """

    __slots__ = (
        "_chunks",
        "_connection",
        "_error",
        "_query",
        "_query_string",
        "_size",
        "_waiter",
        "body_complete",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "limit",
        "method",
        "path",
        "raw_path",
        "too_large",
        "version",
    )

    def __init__(
        self,
        connection: Connection,
        method: str,
        raw_path: str,
        headers: CIMultiDict[str],
        limit: int,
    ) -> None:
        self._connection = connection
        self.method = method
        self.raw_path = raw_path
        self.headers = headers
        self.limit = limit
        self.path, self._query_string = _split_target(raw_path, method)
        self._query: MultiDictProxy[str] | None = None
        self.content_length: int | None = None
        self.expect_continue = False
        self.keep_alive = True
        self.version = "1.1"
        self.body_complete = False
        self.too_large = False
        self._chunks: list[bytes] = []
        self._size = 0
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def query(self) -> MultiDictProxy[str]:
        query = self._query
        if query is None:
            if not self._query_string:
                query = self._query = _NO_QUERY
            else:
                query = self._query = yarl.URL.build(
                    query_string=self._query_string, encoded=True
                ).query
        return query

    @property
    def scheme(self) -> str:
        return "https" if self._connection.server.tls is not None else "http"

    @property
    def host(self) -> str:
        """The Host header, else the address the client connected to."""
        host = self.headers.get("Host")
        return host if host is not None else self._connection.local

    @property
    def remote(self) -> str | None:
        """The peer's IP address."""
        return self._connection.peer

    @property
    def body(self) -> bytes:
        """The whole body, once ``body_complete``; ``BodyTooLarge`` past the limit."""
        if self.too_large:
            raise BodyTooLarge()
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    async def read_body(self, timeout: float) -> bytes:
        """The whole body, waiting for it at most ``timeout`` seconds.

        Raises ``BodyTooLarge`` past the limit, ``TimeoutError``, or ``ConnectionError``
        when the client closed first. Answers ``Expect: 100-continue`` first.
        """
        if not self.body_complete and not self.too_large and self._error is None:
            connection = self._connection
            if self.expect_continue:
                self.expect_continue = False
                connection.write(_CONTINUE)
            waiter = self._waiter = connection.loop.create_future()
            timer = connection.loop.call_later(timeout, _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self._error is not None:
            raise self._error
        return self.body

    # -- the connection's side

    def receive(self, chunk: bytes) -> None:
        if self.too_large:
            return
        self._size += len(chunk)
        if self._size > self.limit:
            self.too_large = True
            self._chunks = []
            self._wake()
        else:
            self._chunks.append(chunk)

    def finish(self) -> None:
        self.body_complete = True
        self._wake()

    def fail(self, error: Exception) -> None:
        if not self.body_complete and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _split_target(target: str, method: str) -> tuple[str, str]:
    """The decoded path and the raw query string of a request target."""
    if target.startswith("/") and "%" not in target and "#" not in target:
        path, _, query = target.partition("?")
        return path, query
    if method == "CONNECT":
        return "", ""
    target = target.partition("#")[0]  # a fragment is not the server's (aiohttp dropped it)
    query = target.partition("?")[2]
    try:
        if target.startswith("/"):
            return yarl.URL.build(path=target.partition("?")[0], encoded=True).path, query
        return yarl.URL(target, encoded=True).path, query  # absolute-form, or "*"
    except (ValueError, IndexError):  # yarl raises IndexError for some malformed hosts
        return target, query


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request the server refuses."""


class Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered one at a time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.local = ""
        self._parser = httptools.HttpRequestParser(self)
        self._parsing: Request | None = None  # the request whose body is arriving
        self._answering: Request | None = None
        # Parsed and not started yet: started soon after the read that parsed them
        # (so that what arrived with a head, often the whole body, is buffered), one
        # at a time, in order.
        self._waiting: deque[Request] = deque()
        self._starting = False
        self._task: asyncio.Task[None] | None = None
        # The head being parsed
        self._in_head = True
        self._head_bytes = 0
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._content_length: int | None = None
        self._expect_continue = False
        # Bytes still to come of a body llhttp skipped (a request offering an Upgrade)
        self._skipped_body: int | None = None
        # The connection's state
        self._refusal: Response | None = None  # answered once the requests before it are
        self._discarding = False  # nothing more is parsed
        self._draining = False  # the body of a request already answered is dropped
        self._drain_timer: asyncio.TimerHandle | None = None
        self._eof = False
        self._closing = False  # close after the current answer
        self._lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._idle_deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._abort_timer: asyncio.TimerHandle | None = None

    @property
    def settled(self) -> bool:
        """Nothing left to answer or to write: closed, or closing with its answers sent."""
        transport = self.transport
        if transport is None or self._lost:
            return True
        return (
            self._answering is None
            and transport.is_closing()
            and transport.get_write_buffer_size() == 0
        )

    @property
    def queued(self) -> int:
        """Requests parsed and waiting behind the one being answered."""
        return len(self._waiting)

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else None
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            self.local = f"[{local[0]}]:{local[1]}" if ":" in local[0] else f"{local[0]}:{local[1]}"
        self.server.connections.add(self)
        if self.server.closing:
            self.close()
            return
        self._go_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._parsing is not None:
            self._parsing.fail(ConnectionResetError("the connection closed mid-body"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self.server.connections.discard(self)
        self.server.check_drained()

    def eof_received(self) -> bool:
        self._eof = True
        if self._parsing is not None:
            self._parsing.fail(ConnectionResetError("the connection closed mid-body"))
        busy = self._answering is not None or bool(self._waiting) or self._refusal is not None
        # A client that half-closed after its request still gets the answer (not
        # over TLS, where the close is the whole connection's).
        return busy and self.server.tls is None

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._start_waiting()  # held back while the client did not read
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._skipped_body is not None:
            self._receive_skipped_body(data)
            self._start_waiting()
            return
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops at an Upgrade or CONNECT request: it is answered (the
            # Upgrade not taken), then closed.
            if self._skipped_body is not None:
                self._receive_skipped_body(data[exc.args[0] :])
            else:
                self._discarding = True
                self._last_request_closes()
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Refused):  # else the callback refused it
                log.error("ingress.parser_callback_failed", error=repr(exc.__context__))
                self._refuse(400, "bad_request", "the request could not be parsed")
        except httptools.HttpParserError as exc:
            self._refuse(400, "bad_request", f"malformed request: {exc}")
        if self._in_head and self._head_bytes > HEAD_BYTES and not self._discarding:
            self._refuse(431, "headers_too_large", f"the request head exceeds {HEAD_BYTES} bytes")
        if self._waiting and self._answering is None:
            # Started from the loop's ready queue, where a task's first step ran
            # before: the loop's schedule stays the same (the reads of one poll, then
            # their handlers), only without the task. Handling them inside the read
            # measured no better (docs/benchmarks.md, issue 11, session 21).
            self.loop.call_soon(self._start_waiting)
        self._update_reading()

    # -- httptools' callbacks

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = b""
        self._headers = []
        self._content_length = None
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_LINE:
            self._refuse(414, "uri_too_long", f"the request target exceeds {MAX_LINE} bytes")
            raise _Refused()

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if len(headers) >= MAX_HEADERS:
            self._refuse(431, "headers_too_large", f"more than {MAX_HEADERS} header lines")
            raise _Refused()
        if len(name) > MAX_LINE or len(value) > MAX_LINE:
            self._refuse(431, "headers_too_large", f"a header line exceeds {MAX_LINE} bytes")
            raise _Refused()
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            self._content_length = int(value)  # llhttp checked: digits only, one header
        elif size == 17 and name.lower() == b"transfer-encoding":
            if value.strip().lower() != b"chunked":
                # llhttp would take "gzip, chunked" as chunked and leave it compressed.
                self._refuse(400, "bad_request", "the only transfer coding taken is chunked")
                raise _Refused()
        elif size == 6 and name.lower() == b"expect":
            self._expect_continue = value.strip().lower() == b"100-continue"
        try:
            text = value.decode()
        except UnicodeDecodeError:
            # Headers are stored and forwarded as UTF-8 text; llhttp lets any byte through.
            self._refuse(400, "bad_request", "a header value is not UTF-8")
            raise _Refused() from None
        if text and text[-1] in " \t":  # llhttp drops the leading whitespace, not this
            text = text.rstrip(" \t")
        headers.append((name.decode("latin-1"), text))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.0", "1.1"):  # llhttp takes 0.9 and 2.0 request lines
            self._refuse(400, "bad_request", f"HTTP/{version} is not taken: use HTTP/1.1")
            raise _Refused()
        upgrade = parser.should_upgrade() and parser.get_method() != b"CONNECT"
        if upgrade and "Transfer-Encoding" in CIMultiDict(self._headers):
            # llhttp would skip the body (below); a chunked one cannot be read without it.
            self._refuse(400, "bad_request", "a chunked body with an Upgrade offer is not taken")
            raise _Refused()
        request = Request(
            self,
            parser.get_method().decode("ascii"),
            self._url.decode("latin-1"),
            CIMultiDict(self._headers),
            self.app.max_body,
        )
        request.content_length = self._content_length
        request.expect_continue = self._expect_continue and version == "1.1"
        request.keep_alive = parser.should_keep_alive()
        request.version = version
        if upgrade:
            # A request offering an Upgrade (h2c: curl --http2, Java's client) is answered
            # in HTTP/1.1, then the connection closes. llhttp skips its body and stops
            # parsing: the body is read here, by its Content-Length.
            request.keep_alive = False
            if self._content_length:
                self._skipped_body = self._content_length
        self._parsing = request
        self._waiting.append(request)
        # A request under way: no idle close, even if the deadline passes before it starts.
        self._idle_deadline = None

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        if request is not None and not self._draining:
            request.receive(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # what comes next is the next request's head
        request = self._parsing
        if request is not None and self._skipped_body is None:
            self._parsing = None
            request.finish()
        if self._draining:
            self._draining = False
            if self._drain_timer is not None:
                self._drain_timer.cancel()
            self._go_idle()

    def _receive_skipped_body(self, data: bytes) -> None:
        """The body of a request offering an Upgrade, which llhttp skipped; what comes
        after it is not read (the connection closes after the answer)."""
        remaining = self._skipped_body or 0
        request = self._parsing
        chunk = data[:remaining]
        if chunk and request is not None:
            request.receive(chunk)
        remaining -= len(chunk)
        if remaining > 0:
            self._skipped_body = remaining
            return
        self._skipped_body = None
        self._discarding = True
        if request is not None:
            self._parsing = None
            request.finish()

    def _drain_expired(self) -> None:
        if self._draining:
            self._draining = False
            self._linger()

    # -- answering

    def _start_waiting(self) -> None:
        """Start the parsed requests in turn while nothing is being answered; one
        answered at once lets the next start here (a loop, not a recursion)."""
        if self._starting:
            return
        self._starting = True
        transport = self.transport
        try:
            # Never once the connection closes: a request stored could not be answered,
            # and its client would send it again.
            while (
                self._answering is None
                and self._waiting
                and not self._writing_paused
                and not self._lost
                and not (transport is None or transport.is_closing())
            ):
                self._start(self._waiting.popleft())
        finally:
            self._starting = False
        self._update_reading()

    def _start(self, request: Request) -> None:
        self._answering = request
        self._idle_deadline = None
        try:
            answer = self.app.handle(request)
        except Exception as exc:
            answer = self._failed(request, exc)
        if isinstance(answer, Response):
            self._respond(request, answer)
        elif isinstance(answer, Deferred):
            # The common webhook: its checks needed no await, and its answer waits only
            # for the commit; a callback on the commit's future answers it, no task.
            answer.future.add_done_callback(functools.partial(self._finish, request, answer))
        else:
            task = self._task = self.loop.create_task(self._answer(request, answer))
            self.server.tasks.add(task)

    def _finish(self, request: Request, deferred: Deferred, future: asyncio.Future[Any]) -> None:
        try:
            response = deferred.answer(future)
        except Exception as exc:
            response = self._failed(request, exc)
        self._respond(request, response)

    async def _answer(self, request: Request, answer: Awaitable[Response]) -> None:
        try:
            response = await answer
        except Exception as exc:
            response = self._failed(request, exc)
        finally:
            self.server.tasks.discard(cast(asyncio.Task[None], self._task))
        self._respond(request, response)

    def _failed(self, request: Request, exc: Exception) -> Response:
        """A bug in the application: one log line and a 500, never a traceback."""
        log.error("webhook.failed", path=request.path, peer=self.peer, error=repr(exc))
        return _error_response(500, "internal_error", "the request could not be handled")

    def _respond(self, request: Request, response: Response) -> None:
        self._answering = None
        if self._lost:
            self.server.check_drained()
            return
        # A client still waiting for its 100 (Continue) may send the body or not: the
        # connection cannot tell its next request from that body.
        waits_for_continue = request.expect_continue and not request.body_complete
        keep = request.keep_alive and not self._closing and not self._eof
        keep = keep and not waits_for_continue
        self.write(_encode(response, keep, request.method != "HEAD", request.version))
        if not keep:
            unread = bool(self._waiting) or self._refusal is not None or self._parsing is not None
            self._waiting.clear()
            if unread or not request.body_complete:
                self._linger()
            else:
                self.close()
        elif not request.body_complete:
            if self._discarding:  # the parser stopped: the rest cannot be read
                self._linger()
            else:
                # Answered before its body arrived (413, 405...): the rest is read and
                # dropped and the connection kept, as a proxy streaming the body
                # expects; closed if the body does not end soon.
                self._draining = True
                linger = min(LINGER_TIME, self.app.request_timeout)
                self._drain_timer = self.loop.call_later(linger, self._drain_expired)
        elif self._waiting:
            # Started once the client reads its answers (resume_writing): a client that
            # pipelines without reading gets no answers written past the buffer's limit.
            self._start_waiting()
            self._update_reading()
        elif self._refusal is not None:
            self._send_refusal(self._refusal)
        else:
            self._go_idle()
        self.server.check_drained()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer a request the server refuses, after the requests before it, then close."""
        if self._discarding:
            return
        self._discarding = True
        self.app.refused(self.peer, status, code)
        if self._draining:  # a body already answered: no second answer
            self._draining = False
            self._linger()
            return
        self._refusal = _error_response(status, code, detail)
        if self._parsing is not None:
            self._parsing.fail(ConnectionResetError("the request was refused"))
        if self._answering is None and not self._waiting:
            self._send_refusal(self._refusal)

    def _send_refusal(self, refusal: Response) -> None:
        self.write(_encode(refusal, False, True, "1.1"))
        self._idle_deadline = None
        self._linger()

    def _last_request_closes(self) -> None:
        last = self._waiting[-1] if self._waiting else self._answering
        if last is not None:
            last.keep_alive = False

    # -- reading, timers, closing

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._lost:
            return
        # Requests waiting behind one being answered hold the reads back (pipelining's
        # bound); one waiting only for its start (queued by the read) does not.
        waiting = bool(self._waiting) and self._answering is not None
        pause = (self._writing_paused or waiting) and not self._discarding
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _go_idle(self) -> None:
        """Wait for the next request head, until the keep-alive deadline."""
        if self._eof or self.server.closing:
            self.close()
            return
        keepalive = min(KEEPALIVE_TIMEOUT, self.app.request_timeout)
        self._idle_deadline = self.loop.time() + keepalive
        # One timer per keep-alive period, not per request: it re-arms itself.
        if self._timer is None:
            self._timer = self.loop.call_at(self._idle_deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._idle_deadline
        if deadline is None:
            return
        if self.loop.time() >= deadline:
            self.close()
        else:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _linger(self) -> None:
        """Read and drop what the client still sends for a moment, then close."""
        self._discarding = True
        self._update_reading()
        if self._eof:
            self.close()
        else:
            self.loop.call_later(min(LINGER_TIME, self.app.request_timeout), self.close)

    def shut_down(self) -> None:
        """The server stops: close now if idle, else after the current answer."""
        self._closing = True
        if self._answering is None and not self._waiting:
            self.close()

    def close(self) -> None:
        transport = self.transport
        if transport is None or self._lost or transport.is_closing():
            return
        self._idle_deadline = None
        transport.close()  # after the answer written
        # A peer that reads nothing would keep it open: aborted after a while.
        self._abort_timer = self.loop.call_later(CLOSE_TIME, self.abort)

    def abort(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.abort()


def _error_response(status: int, code: str, detail: str) -> Response:
    body = f'{{"error":"{code}","detail":{_json_string(detail)}}}'
    return Response(status, body.encode())


def _json_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if " " <= c < "\x7f" else f"\\u{ord(c):04x}" for c in escaped) + '"'


_date = (0, b"")
# The fixed parts of an answer's head, by (status, content type, keep-alive, HTTP/1.0):
# a handful in practice; bounded all the same.
_heads: dict[tuple[int, str, bool, bool], tuple[bytes, bytes]] = {}
_CACHED_HEADS = 256


def _http_date() -> bytes:
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]


def _encode(response: Response, keep_alive: bool, with_body: bool, version: str) -> bytes:
    status = response.status
    body = response.body
    key = (status, response.content_type, keep_alive, version == "1.0")
    parts = _heads.get(key)
    if parts is None:
        parts = _head_parts(*key)
        if len(_heads) < _CACHED_HEADS:
            _heads[key] = parts
    start, end = parts
    extra = _header_lines(response.headers) if response.headers else b""
    if status == 204:
        return b"%sDate: %s\r\n%s%s" % (start, _http_date(), extra, end)
    head = b"%s%d\r\nDate: %s\r\n%s%s" % (start, len(body), _http_date(), extra, end)
    return head + body if with_body else head


def _head_parts(
    status: int, content_type: str, keep_alive: bool, http10: bool
) -> tuple[bytes, bytes]:
    """An answer's head before the Content-Length's value (or before the Date, for a
    204), and after the Date and the answer's own headers."""
    start = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\nContent-Type: {content_type}\r\n"
    )
    if status != 204:
        start += "Content-Length: "
    end = "\r\n"
    if not keep_alive:
        end = "Connection: close\r\n\r\n"
    elif http10:  # an HTTP/1.0 client asked for keep-alive: say it is kept
        end = "Connection: keep-alive\r\n\r\n"
    return start.encode("latin-1", "replace"), end.encode("latin-1", "replace")


def _header_lines(headers: tuple[tuple[str, str], ...]) -> bytes:
    lines = []
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            continue  # a line break would split the answer
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1", "replace")


class Server:
    """The ingress's listeners and connections: ``listen``, ``serve_socket``, ``close``."""

    def __init__(self, app: Application, tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.tls = tls
        self.loop = asyncio.get_running_loop()
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self._listeners: list[asyncio.Server] = []
        self._drained: asyncio.Event | None = None

    @property
    def sockets(self) -> list[socket.socket]:
        return [sock for listener in self._listeners for sock in listener.sockets]

    async def listen(self, host: str | Sequence[str] | None, port: int) -> None:
        """Listen on ``host``:``port`` (every address of a name); OSError if it cannot."""
        listener = await self.loop.create_server(
            self._connection, host, port, ssl=self.tls, backlog=_BACKLOG
        )
        self._listeners.append(listener)

    async def serve_socket(self, sock: socket.socket) -> None:
        """Accept on a socket bound elsewhere (an ingest process's shared socket)."""
        listener = await self.loop.create_server(
            self._connection, sock=sock, ssl=self.tls, backlog=_BACKLOG
        )
        self._listeners.append(listener)

    def _connection(self) -> Connection:
        return Connection(self)

    async def close(self, grace: float) -> None:
        """Stop accepting; answer the requests in flight within ``grace``; close the rest."""
        self.closing = True
        for listener in self._listeners:
            listener.close()
        for connection in list(self.connections):
            connection.shut_down()
        self._drained = asyncio.Event()
        deadline = self.loop.time() + grace
        # Woken when a request is answered or a connection closes; looked at again now
        # and then for connections whose answers are still being written, or whose TLS
        # close waits for a peer that is not reading (idle pooled connections).
        while not self._is_drained():
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                log.warning(
                    "ingress.shutdown_timeout",
                    connections=len(self.connections),
                    tasks=len(self.tasks),
                )
                break
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), min(remaining, _DRAIN_CHECK))
        for connection in list(self.connections):
            if not connection.settled:  # a settled one finishes its close on its own
                connection.abort()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def check_drained(self) -> None:
        if self._drained is not None and self._is_drained():
            self._drained.set()

    def _is_drained(self) -> bool:
        return not self.tasks and all(c.settled for c in self.connections)
