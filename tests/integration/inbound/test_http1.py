"""The ingress's HTTP/1.1 server (``inbound/http1.py``) over raw sockets on 127.0.0.1.

Most tests serve the real ``Ingress`` over a real SQLite outbox; the commit can be
held at a gate (``GatedOutbox``) to show what happens while a request is in flight.
``Echo`` is an application that answers with what the server made of the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import sqlite3
import ssl
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hookgate import config
from hookgate.inbound import http1
from hookgate.inbound.listener import Ingress, tls_context
from hookgate.store import Accepted, NewMessage
from hookgate.store.sqlite import SQLiteStore

HOST = "127.0.0.1"
WAIT = 10.0  # the most any test waits for something that should happen at once

CONFIG = """
[server]
listen = "127.0.0.1:0"
max_body = "1KiB"
request_timeout = "{timeout}"

[sources.open]
path = "/hooks/open"
"""


class GatedOutbox:
    """The real store's commit, held until ``release`` when ``gate`` is set."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.identity = store.identity
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()

    def accept(self, message: NewMessage) -> asyncio.Future[Accepted]:
        return asyncio.ensure_future(self._accept(message))

    async def _accept(self, message: NewMessage) -> Accepted:
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        return await self.store.accept(message)


@dataclass
class Served:
    server: http1.Server
    outbox: GatedOutbox
    db: Path

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def stored(self) -> int:
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            count: int = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            return count


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(timeout: str = "2s", tls: ssl.SSLContext | None = None) -> Served:
        path = tmp_path / "hookgate.toml"
        path.write_text(textwrap.dedent(CONFIG).replace("{timeout}", timeout), encoding="utf-8")
        cfg = config.load(path, {})
        store = SQLiteStore(cfg.storage.path)
        await store.open()
        cleanups.append(store.close)
        outbox = GatedOutbox(store)
        server = Ingress(cfg, outbox).server(tls)
        await server.listen(HOST, 0)
        cleanups.append(lambda: server.close(1.0))
        return Served(server, outbox, Path(cfg.storage.path))

    try:
        yield start
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> dict[str, object]:
        payload: dict[str, object] = orjson.loads(self.body)
        return payload


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split(" ")[1]), headers, body)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection (WAIT at most)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(WAIT):
            while chunk := await reader.read(65536):
                data += chunk
    return data


def post(path: str = "/hooks/open", body: bytes = b'{"n":1}', *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: hookgate.test", *headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port)


async def hang_up(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_pipelined_requests_are_answered_in_order(serve: Serve) -> None:
    served = await serve()
    served.outbox.gate = gate = asyncio.Event()
    reader, writer = await connect(served.port)
    # The first waits for its commit; the two after it need none and would be
    # answered first by a server that handled them side by side.
    get = b"GET /hooks/open HTTP/1.1\r\nHost: hookgate.test\r\n\r\n"
    writer.write(post() + post("/nowhere") + get)
    await asyncio.wait_for(served.outbox.arrived.wait(), WAIT)
    gate.set()
    answers = [await read_answer(reader) for _ in range(3)]
    assert [a.status for a in answers] == [202, 404, 405]
    assert "connection" not in answers[-1].headers  # still kept alive
    await hang_up(writer)


async def test_keepalive_connection_serves_requests_then_closes_when_idle(serve: Serve) -> None:
    served = await serve(timeout="1s")  # keep-alive: min(15 s, request_timeout)
    reader, writer = await connect(served.port)
    for _ in range(3):
        writer.write(post())
        assert (await read_answer(reader)).status == 202
    assert await read_until_closed(reader) == b""
    assert reader.at_eof()
    assert served.stored() == 3
    await hang_up(writer)


async def test_a_head_not_complete_in_time_closes_with_no_answer(serve: Serve) -> None:
    served = await serve(timeout="1s")
    reader, writer = await connect(served.port)
    writer.write(b"POST /hooks/open HTTP/1.1\r\nHost: hookgate.test\r\n")
    assert await read_until_closed(reader) == b""
    assert reader.at_eof()
    await hang_up(writer)


async def test_a_body_not_complete_in_time_is_408_then_closed(serve: Serve) -> None:
    served = await serve(timeout="1s")
    reader, writer = await connect(served.port)
    writer.write(post(body=b"x" * 100).replace(b"Content-Length: 100", b"Content-Length: 500"))
    answer = await read_answer(reader)
    assert (answer.status, answer.json()["error"]) == (408, "request_timeout")
    assert await read_until_closed(reader) == b""  # the rest never came: closed
    assert served.stored() == 0
    await hang_up(writer)


async def test_a_chunked_body_is_cut_off_at_max_body(serve: Serve) -> None:
    served = await serve()
    reader, writer = await connect(served.port)
    writer.write(
        b"POST /hooks/open HTTP/1.1\r\nHost: hookgate.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    # 1.5 KiB of a 1 KiB limit, and the body never ends: the answer cannot wait for it.
    for _ in range(3):
        writer.write(b"200\r\n" + b"c" * 512 + b"\r\n")
    answer = await read_answer(reader)
    assert (answer.status, answer.json()["error"]) == (413, "payload_too_large")
    assert await read_until_closed(reader) == b""  # the body never ends: closed
    assert served.stored() == 0
    await hang_up(writer)


async def test_a_body_answered_early_is_read_and_dropped_and_the_connection_kept(
    serve: Serve,
) -> None:
    served = await serve()
    reader, writer = await connect(served.port)
    body = b"o" * 2048  # over the 1 KiB limit: refused on its Content-Length, before it
    writer.write(post(body=body).removesuffix(body))
    answer = await read_answer(reader)
    assert (answer.status, answer.json()["error"]) == (413, "payload_too_large")
    # A proxy streaming the body finishes sending it, then reuses the connection.
    assert "connection" not in answer.headers
    writer.write(body + post())
    assert (await read_answer(reader)).status == 202
    assert served.stored() == 1
    await hang_up(writer)


async def test_expect_100_continue_once_the_head_checks_passed(serve: Serve) -> None:
    served = await serve()
    reader, writer = await connect(served.port)
    body = b'{"n":2}'
    head = post("/hooks/open", body, "Expect: 100-continue").removesuffix(body)
    writer.write(head)
    async with asyncio.timeout(WAIT):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    assert (await read_answer(reader)).status == 202
    # A request the head checks refuse gets its answer instead, with no 100.
    writer.write(b"PUT /hooks/open HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    answer = await read_answer(reader)
    assert answer.status == 405
    # The client may send its body or not: the connection could not tell the body from
    # a next request, so it closes, and says so.
    assert answer.headers["connection"] == "close"
    assert await read_until_closed(reader) == b""
    await hang_up(writer)


async def test_a_post_offering_an_upgrade_is_stored_with_its_body(serve: Serve) -> None:
    """curl --http2 and Java's client offer h2c on plain HTTP; llhttp skips the body of
    such a request. The offer is not taken: the body is stored, the connection closes."""
    served = await serve()
    reader, writer = await connect(served.port)
    body = b'{"event":"paid"}'
    offer = ("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABk")
    request = post("/hooks/open", body, *offer)
    writer.write(request[:-5])
    await asyncio.sleep(0)
    writer.write(request[-5:])  # the body's end in a later read
    answer = await read_answer(reader)
    assert (answer.status, answer.headers["connection"]) == (202, "close")
    assert await read_until_closed(reader) == b""
    await hang_up(writer)
    with contextlib.closing(sqlite3.connect(served.db)) as conn:
        assert conn.execute("SELECT body FROM messages").fetchall() == [(body,)]


async def test_a_chunked_body_offering_an_upgrade_is_refused(serve: Serve) -> None:
    served = await serve()
    reader, writer = await connect(served.port)
    writer.write(
        b"POST /hooks/open HTTP/1.1\r\nHost: hookgate.test\r\nConnection: Upgrade\r\n"
        b'Upgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{"n":1}\r\n0\r\n\r\n'
    )
    answer = await read_answer(reader)
    assert (answer.status, answer.json()["error"]) == (400, "bad_request")
    await hang_up(writer)
    assert served.stored() == 0


async def test_http10_keepalive_is_answered_as_kept(serve: Serve) -> None:
    served = await serve()
    reader, writer = await connect(served.port)
    request = post("/hooks/open").replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    request = request.replace(b"\r\n", b"\r\nConnection: keep-alive\r\n", 1)
    writer.write(request)
    answer = await read_answer(reader)
    assert (answer.status, answer.headers["connection"]) == (202, "keep-alive")
    writer.write(request)
    assert (await read_answer(reader)).status == 202
    await hang_up(writer)


async def test_a_client_that_never_reads_its_answers_stops_being_read(serve: Serve) -> None:
    served = await serve(timeout="30s")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the answers back up soon
    sock.connect((HOST, served.port))
    sock.setblocking(False)
    _, writer = await asyncio.open_connection(sock=sock)
    request = b"GET /nowhere HTTP/1.1\r\nHost: hookgate.test\r\n\r\n"

    async def flood() -> None:
        for _ in range(2000):
            writer.write(request * 500)
            await writer.drain()

    sending = asyncio.create_task(flood())
    try:
        async with asyncio.timeout(WAIT):
            while not served.server.connections:
                await asyncio.sleep(0.01)
        [connection] = served.server.connections
        transport = connection.transport
        assert transport is not None
        async with asyncio.timeout(WAIT * 3):
            while transport.is_reading() and not sending.done():
                await asyncio.sleep(0.01)
        # The server stopped reading while the client still had most of it to send,
        # holding at most its transport's buffer of answers and a read of requests.
        assert not transport.is_reading()
        assert not sending.done()
        # Answers stop at the transport's high-water mark (64 KiB by default) plus one.
        assert transport.get_write_buffer_size() < 128 * 1024
        assert connection.queued * len(request) <= 256 * 1024  # uvloop reads 256 KiB at most
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        writer.transport.abort()
        await hang_up(writer)


async def test_shutdown_answers_the_request_in_flight_after_its_commit(serve: Serve) -> None:
    served = await serve()
    served.outbox.gate = gate = asyncio.Event()
    port = served.port
    idle_reader, idle_writer = await connect(port)
    reader, writer = await connect(port)
    writer.write(post())
    await asyncio.wait_for(served.outbox.arrived.wait(), WAIT)
    closing = asyncio.create_task(served.server.close(WAIT))
    # Idle connections close at once; no new connection is accepted.
    assert await read_until_closed(idle_reader) == b""
    with pytest.raises(OSError):
        await connect(port)
    assert not closing.done()
    gate.set()
    answer = await read_answer(reader)
    assert answer.status == 202
    assert answer.headers["connection"] == "close"
    assert await read_until_closed(reader) == b""
    await asyncio.wait_for(closing, WAIT)
    assert served.stored() == 1
    await hang_up(writer, idle_writer)


# -- what the server makes of a request ----------------------------------------------


@dataclass
class Echo:
    """An application answering with what the server made of the request."""

    max_body: int = 1024
    request_timeout: float = 5.0
    refusals: list[tuple[str | None, int, str]] = field(default_factory=list)

    async def handle(self, request: http1.Request) -> http1.Response:
        body = await request.read_body(self.request_timeout)
        seen = {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "query": list(request.query.items()),
            "scheme": request.scheme,
            "host": request.host,
            "remote": request.remote,
            "x_twice": request.headers.getall("x-TWICE", []),
            "content_length": request.content_length,
            "body": body.decode(),
        }
        return http1.Response(200, orjson.dumps(seen))

    def refused(self, peer: str | None, status: int, code: str) -> None:
        self.refusals.append((peer, status, code))


def certificate(folder: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = tls_context(str(folder / "cert.pem"), str(folder / "key.pem"))
    assert context is not None
    return context


ECHOED = (
    b"POST /hooks/%73igned?a=1&a=2&blank=&plus=x+y HTTP/1.1\r\nHost: example.test:8443\r\n"
    b"X-Twice: 1\r\nx-twice: 2\r\nContent-Length: 4\r\n\r\nbody"
)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_the_request_as_the_application_sees_it(tmp_path: Path, tls: bool) -> None:
    server = http1.Server(Echo(), certificate(tmp_path) if tls else None)
    await server.listen(HOST, 0)
    try:
        port = server.sockets[0].getsockname()[1]
        client = ssl.create_default_context(cafile=str(tmp_path / "cert.pem")) if tls else None
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client)
        writer.write(ECHOED)
        answer = await read_answer(reader)
        await hang_up(writer)
    finally:
        await server.close(1.0)
    assert answer.status == 200
    assert answer.json() == {
        "method": "POST",
        "path": "/hooks/signed",
        "raw_path": "/hooks/%73igned?a=1&a=2&blank=&plus=x+y",
        "query": [["a", "1"], ["a", "2"], ["blank", ""], ["plus", "x y"]],
        "scheme": "https" if tls else "http",
        "host": "example.test:8443",
        "remote": HOST,
        "x_twice": ["1", "2"],
        "content_length": 4,
        "body": "body",
    }
    assert answer.headers["content-type"] == "application/json"
    assert "date" in answer.headers


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/hooks/a#frag", "/hooks/a"),
        (b"/hooks/%61#frag", "/hooks/a"),
        (b"http://c[F,']@]+@", "http://c[F,']@]+@"),  # yarl raises IndexError on it
    ],
)
async def test_targets_and_header_whitespace_as_aiohttp_read_them(
    tmp_path: Path, target: bytes, path: str
) -> None:
    echo = Echo()
    server = http1.Server(echo)
    await server.listen(HOST, 0)
    try:
        reader, writer = await connect(server.sockets[0].getsockname()[1])
        writer.write(
            b"POST " + target + b" HTTP/1.1\r\nHost: h\r\nX-Twice:   v \t\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        answer = await read_answer(reader)
        await hang_up(writer)
    finally:
        await server.close(1.0)
    assert answer.status == 200
    assert (answer.json()["path"], answer.json()["x_twice"]) == (path, ["v"])
    assert echo.refusals == []


async def test_shutdown_does_not_wait_for_an_idle_tls_client(tmp_path: Path) -> None:
    """Closing TLS waits for the peer's close_notify; an idle pooled client that reads
    nothing never sends it. Its answers were written: the shutdown does not wait the
    grace for it (review finding)."""
    server = http1.Server(Echo(), certificate(tmp_path))
    await server.listen(HOST, 0)
    client = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    port = server.sockets[0].getsockname()[1]

    def one_request() -> tuple[ssl.SSLSocket, bytes]:
        # A blocking socket, off the loop: once answered, nothing reads it any more.
        sock = client.wrap_socket(
            socket.create_connection((HOST, port), WAIT), server_hostname=HOST
        )
        sock.sendall(ECHOED)
        answer = b""
        while b'"body":"body"}' not in answer:
            answer += sock.recv(65536)
        return sock, answer

    sock, answer = await asyncio.to_thread(one_request)
    try:
        assert answer.startswith(b"HTTP/1.1 200 ")
        # Kept alive, never read again; the grace is far longer than WAIT.
        await asyncio.wait_for(server.close(WAIT * 6), WAIT)
    finally:
        sock.close()


async def test_plain_http_on_the_tls_port_gets_no_answer(tmp_path: Path) -> None:
    server = http1.Server(Echo(), certificate(tmp_path))
    await server.listen(HOST, 0)
    try:
        reader, writer = await connect(server.sockets[0].getsockname()[1])
        writer.write(ECHOED)
        assert b"HTTP/1.1" not in await read_until_closed(reader)
        await hang_up(writer)
    finally:
        await server.close(1.0)


async def test_a_malformed_request_is_refused_once_and_noted(tmp_path: Path) -> None:
    echo = Echo()
    server = http1.Server(echo)
    await server.listen(HOST, 0)
    try:
        reader, writer = await connect(server.sockets[0].getsockname()[1])
        # A valid request, then garbage: the first is answered, then the refusal.
        writer.write(ECHOED + b"\x16\x03\x01garbage\r\n\r\n")
        first, refusal = await read_answer(reader), await read_answer(reader)
        assert await read_until_closed(reader) == b""
        await hang_up(writer)
    finally:
        await server.close(1.0)
    assert first.status == 200
    assert (refusal.status, refusal.json()["error"]) == (400, "bad_request")
    assert refusal.headers["connection"] == "close"
    assert echo.refusals == [(HOST, 400, "bad_request")]
