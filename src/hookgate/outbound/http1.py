"""HTTP/1.1 requests over kept-alive connections, answers parsed by httptools (llhttp).

A delivery is one POST and the start of its answer, so the client is small: a
``Connection`` is an asyncio protocol carrying one request at a time, and a ``Pool``
keeps the idle ones by (scheme, host, port) for one ``deny_networks`` list. aiohttp's
client did the same at 110-145 µs of CPU per request; this one takes about a third
(bench/sender.py, docs/benchmarks.md).

- A connection goes back to the pool only once its answer was read to the end, and
  only if the answer allows it (HTTP/1.1 without ``Connection: close``); one closed
  by the server while idle leaves the pool when the close arrives, so the next
  request opens a fresh one instead of failing on it. A POST is never sent twice: a
  failure is the attempt's answer and the worker retries it with backoff.
- Idle connections close after ``KEEPALIVE_TIMEOUT``; there is no cap on how many
  are open (each destination's concurrency is the cap).
- Host names resolve through ``egress.DenyingResolver`` and each address is checked
  against the deny list right before its socket is made, literal addresses too
  (``egress``'s policy).
- Of an answer, the status, ``Retry-After`` and the first ``SNIPPET_BYTES`` of the
  body are kept; up to ``DRAIN_BYTES`` of body are read, and the connection is
  closed rather than reused when there is more. Interim (1xx) answers are skipped.

Every failure is a ``RequestFailed`` whose text starts with the name aiohttp's
client gave the same failure (``ClientConnectorError: ...``), since attempts keep
their error text and operators search them.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httptools
import yarl
from aiohttp.abc import AbstractResolver

from hookgate import addresses
from hookgate.outbound import egress

KEEPALIVE_TIMEOUT = 30.0
SNIPPET_BYTES = 1024
# Read (and drop) at most this much of an answer's body so its connection can be reused.
DRAIN_BYTES = 64 * 1024
# The status line and headers of an answer: more is refused (llhttp sets no limit).
HEAD_BYTES = 64 * 1024

_FORBIDDEN = re.compile("[\r\n\0]")
# Framing and the connection are the client's; a caller's value would break them.
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})

Origin = tuple[bool, str, int]  # https, host, port


class RequestFailed(Exception):
    """A request that got no answer; ``str()`` is the attempt's error text."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A destination URL, taken apart once: where to connect and the request's first lines."""

    origin: Origin
    literal: bool  # the host is an IP address: no DNS
    request_line: str
    host: str  # the Host header's value, unless the caller gives one (as aiohttp)
    authorization: str | None  # from the URL's user:password, as aiohttp sent it

    @classmethod
    def of(cls, url: str) -> Endpoint:
        parsed = yarl.URL(url)
        https = parsed.scheme == "https"
        host = parsed.raw_host or ""
        port = parsed.port or (443 if https else 80)
        authorization = None
        if parsed.user is not None:
            credentials = f"{parsed.user}:{parsed.password or ''}".encode()
            authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        return cls(
            (https, host, port),
            addresses.parse_address(host) is not None,
            f"POST {parsed.raw_path_qs} HTTP/1.1\r\n",
            parsed.host_port_subcomponent or host,
            authorization,
        )


def request_head(endpoint: Endpoint, headers: Collection[tuple[str, str]], length: int) -> bytes:
    """The request's head; a header holding CR, LF or NUL is refused (``RequestFailed``)."""
    lines = [endpoint.request_line]
    given: set[str] = set()
    for name, value in headers:
        lowered = name.lower()
        if lowered not in _OWN_HEADERS:
            given.add(lowered)
            lines.append(f"{name}: {value}\r\n")
        elif _FORBIDDEN.search(name) or _FORBIDDEN.search(value):
            _refuse(name)
        if ":" in name:
            _refuse(name)
    if "host" not in given:
        lines.append(f"Host: {endpoint.host}\r\n")
    if "content-type" not in given:
        lines.append("Content-Type: application/octet-stream\r\n")
    if endpoint.authorization is not None and "authorization" not in given:
        lines.append(f"Authorization: {endpoint.authorization}\r\n")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    head = "".join(lines)
    # Each line ends with the one CR LF it was given (the last one with two): a CR, LF
    # or NUL inside a name or value shows in the counts, checked at once for all lines.
    ends = len(lines) + 1
    if head.count("\n") != ends or head.count("\r") != ends or "\0" in head:
        for name, value in headers:
            if _FORBIDDEN.search(name) or _FORBIDDEN.search(value):
                _refuse(name)
    return head.encode()


def _refuse(name: str) -> None:
    raise RequestFailed(f"ValueError: header {name!r} holds a line break, NUL or colon")


class Connection(asyncio.Protocol):
    """One connection to an origin: a request at a time, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        # Cached: asyncio.get_running_loop() costs a getpid() syscall per call on 3.11.
        self.loop = asyncio.get_running_loop()
        self._begin_answer()

    def _begin_answer(self) -> None:
        self.status = 0
        self.retry_after: str | None = None
        self.snippet = b""
        self.reusable = False
        self._head_bytes = 0  # of the headers parsed
        self._unparsed_head = 0  # received while the headers were not complete
        self._body_bytes = 0
        self._framed = False  # Content-Length or chunked; otherwise the body ends at close
        self._headers_done = False

    # -- the caller's side

    async def exchange(self, head: bytes, body: bytes, deadline: float) -> None:
        """Send a request and wait until its answer is read (or fails: ``RequestFailed``,
        or ``TimeoutError`` at ``deadline``, in the loop's time)."""
        waiter = self._waiter = self.loop.create_future()
        self._begin_answer()
        cast(asyncio.Transport, self.transport).write(head + body)
        # A timer, not asyncio.timeout(): that costs a task lookup, two getpid() calls
        # on 3.11 and a cancel to undo, per request.
        timer = self.loop.call_at(deadline, self._time_out)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _time_out(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done and not self._framed:
            self._finish(reusable=False)  # a body read until the close, now complete
        else:
            self._fail("ServerDisconnectedError: Server disconnected")

    def eof_received(self) -> bool:
        self.closed = True  # an idle connection the server closed leaves the pool now
        return False  # close our side too; connection_lost follows

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is not reusable
            return
        if not self._headers_done:
            self._unparsed_head += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish(reusable=False)  # 101: not HTTP any more
        except httptools.HttpParserError as exc:
            self._fail(f"ClientResponseError: invalid HTTP answer: {exc}")
        if self._head_bytes > HEAD_BYTES or (
            not self._headers_done and self._unparsed_head > HEAD_BYTES
        ):
            self._fail(f"ClientResponseError: answer headers over {HEAD_BYTES} bytes")
        elif self._body_bytes > DRAIN_BYTES:
            self._finish(reusable=False)

    # -- httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name)
        self._head_bytes += size + len(value)
        if size == 11 and name.lower() == b"retry-after":
            if self.retry_after is None:
                self.retry_after = value.decode("latin-1")
        elif (size == 14 and name.lower() == b"content-length") or (
            size == 17 and name.lower() == b"transfer-encoding"
        ):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._headers_done = self.status >= 200

    def on_body(self, body: bytes) -> None:
        if len(self.snippet) < SNIPPET_BYTES:
            self.snippet += body[: SNIPPET_BYTES - len(self.snippet)]
        self._body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.status < 200:
            self._begin_answer()  # an interim answer: the real one follows
            return
        parser = self._parser
        self._finish(reusable=parser.should_keep_alive() and parser.get_http_version() == "1.1")

    def _finish(self, *, reusable: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self.reusable = reusable and not self.closed
            waiter.set_result(None)

    def _fail(self, error: str) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(RequestFailed(error))
        if not self.closed:
            self.close()


class Pool:
    """The connections for one deny list: idle ones by origin, and those in use."""

    def __init__(
        self,
        deny: Sequence[addresses.IPNetwork],
        *,
        resolver: AbstractResolver | None = None,
        keepalive: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        self.deny = tuple(deny)
        self.closed = False
        self._given_resolver = resolver
        self._resolver: egress.DenyingResolver | None = None
        self._keepalive = keepalive
        self._idle: dict[Origin, list[Connection]] = {}
        self._busy: set[Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._tls: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the first send's

    async def send(
        self, endpoint: Endpoint, head: bytes, body: bytes, timeout: float
    ) -> Connection:
        """POST and read the answer; the connection holds it (status, snippet...).

        ``TimeoutError`` once ``timeout`` seconds passed, a new connection's set-up
        (DNS, connect, TLS) included.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = self._idle_connection(endpoint.origin)
        if connection is None:
            async with asyncio.timeout_at(deadline):
                connection = await self._connect(endpoint)
        self._busy.add(connection)
        try:
            await connection.exchange(head, body, deadline)
        except BaseException:
            connection.close()  # a timeout or a cancel too: its answer may still come
            raise
        finally:
            self._busy.discard(connection)
        if connection.reusable and not self.closed:
            self._keep(endpoint.origin, connection)
        else:
            connection.close()
        return connection

    @property
    def idle_connections(self) -> int:
        """How many idle connections are open, ready for the next request."""
        return sum(not c.closed for idle in self._idle.values() for c in idle)

    async def close(self) -> None:
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        for connection in self._busy:
            connection.close()
        if self._resolver is not None:
            await self._resolver.close()
        elif self._given_resolver is not None:
            await self._given_resolver.close()

    # -- idle connections

    def _idle_connection(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recent: the likeliest to be still open
            if not connection.closed:
                return connection
        return None

    def _keep(self, origin: Origin, connection: Connection) -> None:
        loop = connection.loop
        connection.idle_since = loop.time()
        self._idle.setdefault(origin, []).append(connection)
        if self._sweep is None:
            self._sweep = loop.call_later(self._keepalive, self._close_expired)

    def _close_expired(self) -> None:
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self._keepalive
        oldest: float | None = None
        for origin, idle in list(self._idle.items()):
            kept = []
            for connection in idle:
                if connection.closed:
                    continue
                if connection.idle_since <= cutoff:
                    connection.close()
                else:
                    kept.append(connection)
                    oldest = min(oldest or connection.idle_since, connection.idle_since)
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]
        self._sweep = None
        if oldest is not None:
            delay = oldest + self._keepalive - loop.time()
            self._sweep = loop.call_later(delay, self._close_expired)

    # -- new connections

    async def _connect(self, endpoint: Endpoint) -> Connection:
        https, host, port = endpoint.origin
        try:
            candidates = await self._addresses(endpoint)
        except OSError as exc:
            raise RequestFailed(_cannot_connect("ClientConnectorDNSError", endpoint, exc)) from exc
        error = OSError("no address to connect to")
        for family, address in candidates:
            try:
                if addresses.within(address, self.deny):
                    raise egress.EgressDenied(address, "this address is in deny_networks")
                _, connection = await asyncio.get_running_loop().create_connection(
                    Connection,
                    address,
                    port,
                    family=family,
                    ssl=self._tls_context() if https else None,
                    server_hostname=host if https else None,
                )
                return connection
            except ssl.SSLCertVerificationError as exc:
                name = "ClientConnectorCertificateError"
                raise RequestFailed(_cannot_connect(name, endpoint, exc)) from exc
            except ssl.SSLError as exc:
                name = "ClientConnectorSSLError"
                raise RequestFailed(_cannot_connect(name, endpoint, exc)) from exc
            except OSError as exc:
                error = exc
        raise RequestFailed(_cannot_connect("ClientConnectorError", endpoint, error)) from error

    async def _addresses(self, endpoint: Endpoint) -> list[tuple[int, str]]:
        """(family, address) to try in turn: the literal one, or the allowed DNS answers."""
        _, host, port = endpoint.origin
        if endpoint.literal:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            return [(family, host)]
        if self._resolver is None:
            self._resolver = egress.DenyingResolver(self.deny, self._given_resolver)
        answers = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        return [(answer["family"], answer["host"]) for answer in answers]

    def _tls_context(self) -> ssl.SSLContext:
        # aiohttp's default verification: the system's CAs, the host name checked.
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


def _cannot_connect(kind: str, endpoint: Endpoint, exc: BaseException) -> str:
    """aiohttp's wording: ``Cannot connect to host h:p ssl:default [reason]``."""
    _, host, port = endpoint.origin
    reason: Any = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"{type(exc).__name__}: {exc.verify_message}"
    return f"{kind}: Cannot connect to host {host}:{port} ssl:default [{reason}]"
