"""The delivery client (``HttpClient`` over http1.py) against real servers on 127.0.0.1.

An aiohttp server plays a well-behaved destination; a raw asyncio server writes the
answers aiohttp's server would never send (interim answers, HTTP/1.0, a body that ends
at the close, garbage). Connections are counted by the client's port the server saw.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hookgate.outbound.client import Answer, HttpClient, Target
from hookgate.outbound.http1 import DRAIN_BYTES, SNIPPET_BYTES, Endpoint, Pool

from ..harness import HOST, WAIT, wait_for

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Destination:
    """An aiohttp server recording each request and the client port it came from."""

    def __init__(self, handler: Handler, *, keepalive: float = 75.0) -> None:
        self.handler = handler
        self.keepalive = keepalive
        self.requests: list[tuple[web.Request, bytes]] = []
        self.peers: list[int] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.keepalive)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, 0, ssl_context=tls).start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request, await request.read()))
        self.peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        return await self.handler(request)


async def thanks(request: web.Request) -> web.StreamResponse:
    return web.Response(text="thanks")


@pytest.fixture
async def destination() -> AsyncIterator[Destination]:
    server = Destination(thanks)
    await server.start()
    yield server
    await server.close()


class RawServer:
    """Answers each connection with ``answer``'s bytes; counts connections and closes."""

    def __init__(self, answer: bytes, *, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.closed = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await read_request(reader):
                writer.write(self.answer)
                await writer.drain()
                if self.close_after:
                    break
        finally:
            writer.close()
            self.closed += 1


async def read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request (head and Content-Length body); False at the end of the stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return True


async def raw(answer: bytes, *, close_after: bool = False) -> RawServer:
    server = RawServer(answer, close_after=close_after)
    await server.start()
    return server


def client_for(url: str, *, timeout: float = WAIT) -> HttpClient:
    client = HttpClient()
    client.set_targets([Target("t", url, timeout, ())])
    return client


async def send_all(url: str, times: int, *, timeout: float = WAIT) -> list[Answer]:
    client = client_for(url, timeout=timeout)
    try:
        return [await client.send("t", b'{"n":1}', {}) for _ in range(times)]
    finally:
        await client.close()


def url_of(server: Destination | RawServer, path: str = "/hook") -> str:
    return f"http://{HOST}:{server.port}{path}"


async def answers_of(handler: Handler, times: int) -> tuple[list[Answer], Destination]:
    """``times`` requests to a fresh Destination answering with ``handler``, then closed."""
    server = Destination(handler)
    await server.start()
    try:
        return await send_all(url_of(server), times), server
    finally:
        await server.close()


# -- keep-alive ----------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(destination: Destination) -> None:
    answers = await send_all(url_of(destination), 3)
    assert [(a.status, a.error, a.snippet) for a in answers] == [(200, None, b"thanks")] * 3
    assert len(destination.peers) == 3
    assert len(set(destination.peers)) == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    """The server's keep-alive timeout closes the idle connection: the next request opens
    a new one and succeeds (the client saw the close; it did not send into it)."""
    server = Destination(thanks, keepalive=0.05)
    await server.start()
    client = client_for(url_of(server))
    try:
        assert (await client.send("t", b"1", {})).status == 200
        pool = client.pool("t")
        assert pool.idle_connections == 1
        await wait_for(lambda: pool.idle_connections == 0)
        assert (await client.send("t", b"2", {})).status == 200
    finally:
        await client.close()
        await server.close()
    assert len(set(server.peers)) == 2


async def test_idle_connections_close_after_the_keepalive_time(destination: Destination) -> None:
    pool = Pool([], keepalive=0.05)
    endpoint = Endpoint.of(url_of(destination))
    head = b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    try:
        reply = await pool.send(endpoint, head, b"", WAIT)
        assert reply.status == 200
        assert pool.idle_connections == 1
        await wait_for(lambda: pool.idle_connections == 0)
        assert reply.closed
    finally:
        await pool.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_answers_that_end_the_connection_are_not_reused(answer: bytes) -> None:
    server = await raw(answer)
    try:
        answers = await send_all(url_of(server), 2)
        assert [(a.status, a.snippet) for a in answers] == [(200, b"ok")] * 2
        assert server.connections == 2
    finally:
        await server.close()


# -- answers -------------------------------------------------------------------------


async def test_a_chunked_answer_is_read_and_its_connection_reused() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"a" * 700, b"b" * 700, b"c" * 10):
            await response.write(part)
        await response.write_eof()
        return response

    answers, server = await answers_of(chunked, 2)
    for answer in answers:
        assert answer.status == 200
        assert answer.snippet == b"a" * 700 + b"b" * (SNIPPET_BYTES - 700)
    assert len(set(server.peers)) == 1


async def test_a_big_answer_is_cut_and_its_connection_closed() -> None:
    big = bytes(range(256)) * (4 * DRAIN_BYTES // 256)

    async def huge(request: web.Request) -> web.StreamResponse:
        return web.Response(body=big, status=500)

    answers, server = await answers_of(huge, 2)
    for answer in answers:
        assert (answer.status, answer.error) == (500, "HTTP 500")
        assert answer.snippet == big[:SNIPPET_BYTES]
    assert len(set(server.peers)) == 2


async def test_retry_after_and_the_snippet_are_kept() -> None:
    async def busy(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="later, please", headers={"Retry-After": "7"})

    (answer,), _ = await answers_of(busy, 1)
    assert answer == Answer(503, "HTTP 503", "7", b"later, please")
    assert answer.outcome.kind == "http_error"


async def test_interim_answers_are_skipped() -> None:
    server = await raw(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nRetry-After: 3\r\nContent-Length: 4\r\n\r\ndone"
    )
    try:
        answers = await send_all(url_of(server), 2)
    finally:
        await server.close()
    assert answers == [Answer(201, None, "3", b"done")] * 2
    assert server.connections == 1


async def test_a_body_that_ends_at_the_close_is_an_answer() -> None:
    server = await raw(b"HTTP/1.1 202 Accepted\r\n\r\nqueued until close", close_after=True)
    try:
        answers = await send_all(url_of(server), 2)
    finally:
        await server.close()
    assert answers == [Answer(202, None, None, b"queued until close")] * 2
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "ServerDisconnectedError: "),
        (b"", "ServerDisconnectedError: "),
        (b"SMTP ready\r\n\r\n", "ClientResponseError: invalid HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 70_000 + b"\r\n\r\n", "ClientResponseError: "),
    ],
    ids=["cut-body", "nothing", "garbage", "huge-header"],
)
async def test_broken_answers_are_connection_errors(answer: bytes, error: str) -> None:
    server = await raw(answer, close_after=True)
    try:
        (reply,) = await send_all(url_of(server), 1)
    finally:
        await server.close()
    assert reply.status is None
    assert reply.error is not None and reply.error.startswith(error), reply.error
    assert reply.outcome.kind == "connection_error"


# -- the request ---------------------------------------------------------------------


async def test_the_request_on_the_wire(destination: Destination) -> None:
    client = HttpClient()
    client.set_targets(
        [
            Target("plain", url_of(destination, "/in/hook?team=7&x=%20"), WAIT, ()),
            Target("auth", f"http://relay:s3cret@{HOST}:{destination.port}/a", WAIT, ()),
        ]
    )
    try:
        sent = await client.send("plain", b"\x00\x01body", [("X-Twice", "1"), ("X-Twice", "2")])
        assert sent.status == 200
        typed = await client.send("auth", b"{}", {"Content-Type": "application/json"})
        assert typed.status == 200
        hosted = await client.send("plain", b"", {"host": "hooks.example", "Connection": "x"})
        assert hosted.status == 200
    finally:
        await client.close()
    (first, body), (second, _), (third, _) = destination.requests
    assert (first.method, first.path_qs, body) == ("POST", "/in/hook?team=7&x=%20", b"\x00\x01body")
    assert first.version == (1, 1)
    assert first.headers["Host"] == f"{HOST}:{destination.port}"
    assert first.headers["Content-Length"] == "6"
    assert first.headers["Content-Type"] == "application/octet-stream"  # as aiohttp sent
    assert first.headers.getall("X-Twice") == ["1", "2"]
    assert "Authorization" not in first.headers
    assert second.headers["Content-Type"] == "application/json"
    assert second.headers["Authorization"] == "Basic cmVsYXk6czNjcmV0"  # the URL's user:password
    # A given Host replaces the URL's (as aiohttp); framing and Connection stay the client's.
    assert third.headers.getall("Host") == ["hooks.example"]
    assert third.headers.getall("Content-Length") == ["0"]
    assert "Connection" not in third.headers


@pytest.mark.parametrize(
    "header",
    [
        ("X-Evil", "a\r\nInjected: 1"),
        ("X-Evil", "a\nb"),
        ("X-Evil", "a\rb"),
        ("X-Nul", "a\0"),
        ("X\r\nY", "1"),
        ("X:Y", "1"),
        # Framing headers are the client's and not sent, but refused all the same.
        ("Content-Length", "1\r\nInjected: 1"),
    ],
)
async def test_a_header_with_a_line_break_is_refused_unsent(
    destination: Destination, header: tuple[str, str]
) -> None:
    client = client_for(url_of(destination))
    try:
        # Among good headers: the check looks at every line, not only the first or last.
        answer = await client.send("t", b"{}", [("X-A", "1"), header, ("X-B", "2")])
    finally:
        await client.close()
    assert answer.status is None
    assert answer.error is not None and answer.error.startswith("ValueError: header ")
    assert "Injected" not in answer.error  # the value (perhaps a secret) is not echoed
    assert destination.requests == []


# -- failures ------------------------------------------------------------------------


async def test_a_timeout_closes_the_connection_and_the_next_request_succeeds() -> None:
    release = asyncio.Event()

    async def hang_once(request: web.Request) -> web.StreamResponse:
        if len(server.requests) == 1:
            await release.wait()
        return web.Response(text="late")

    def first_closed() -> bool:
        transport = server.requests[0][0].transport
        return transport is None or transport.is_closing()

    server = Destination(hang_once)
    await server.start()
    client = client_for(url_of(server), timeout=0.2)
    try:
        first = await client.send("t", b"{}", {})
        assert first == Answer(None, "timeout", None, b"")
        assert first.outcome.kind == "timeout"
        await wait_for(first_closed)
        assert (await client.send("t", b"{}", {})).status == 200
    finally:
        release.set()
        await client.close()
        await server.close()
    assert len(set(server.peers)) == 2


class SilentResolver(AbstractResolver):
    """DNS that never answers."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass


async def test_a_connection_that_cannot_be_made_in_time_is_a_timeout() -> None:
    """The timeout covers a new connection's set-up too (here: DNS that never answers)."""
    client = HttpClient(resolver=SilentResolver())
    client.set_targets([Target("t", "http://hooks.example/hook", 0.2, ())])
    try:
        answer = await client.send("t", b"{}", {})
    finally:
        await client.close()
    assert answer == Answer(None, "timeout", None, b"")


async def test_a_refused_connection_keeps_aiohttps_wording() -> None:
    server = await raw(b"")
    port = server.port
    await server.close()
    (answer,) = await send_all(f"http://{HOST}:{port}/hook", 1)
    assert answer.status is None
    assert answer.error is not None
    assert answer.error.startswith(f"ClientConnectorError: Cannot connect to host {HOST}:{port}")
    assert answer.outcome.kind == "connection_error"


async def test_an_unknown_host_is_a_dns_error() -> None:
    (answer,) = await send_all("http://no-such-host.invalid/hook", 1)
    assert answer.error is not None
    assert answer.error.startswith("ClientConnectorDNSError: Cannot connect to host no-such-host")


# -- TLS -----------------------------------------------------------------------------


def write_certificates(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA and a certificate it signed for 127.0.0.1 and localhost: the CA's file, and
    a server context holding the certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(certificate.public_bytes(pem))
    (folder / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "server.pem", folder / "server.key")
    return ca_file, server


@pytest.fixture
async def tls_destination(tmp_path: Path) -> AsyncIterator[tuple[Destination, Path]]:
    ca_file, context = write_certificates(tmp_path)
    server = Destination(thanks)
    await server.start(tls=context)
    yield server, ca_file
    await server.close()


async def test_an_untrusted_certificate_is_refused(
    tls_destination: tuple[Destination, Path],
) -> None:
    server, _ = tls_destination
    (answer,) = await send_all(f"https://localhost:{server.port}/hook", 1)
    assert answer.status is None
    assert answer.error is not None
    assert answer.error.startswith("ClientConnectorCertificateError: Cannot connect to host")
    assert "certificate" in answer.error
    assert server.requests == []


@pytest.mark.parametrize("host", ["localhost", HOST])
async def test_a_certificate_from_a_trusted_ca_is_accepted(
    tls_destination: tuple[Destination, Path], monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """The system's CAs as OpenSSL finds them, so SSL_CERT_FILE names another bundle
    (no config key: the same verification aiohttp's client did)."""
    server, ca_file = tls_destination
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    answers = await send_all(f"https://{host}:{server.port}/hook", 2)
    assert [(a.status, a.snippet) for a in answers] == [(200, b"thanks")] * 2
    assert len(set(server.peers)) == 1  # kept alive over TLS too
