"""End to end: hostile requests against the real daemon's ingress.

One daemon (``hookgate serve`` as a subprocess, TOML in a temporary folder) and one
recording downstream serve the whole table. Each row sends its bytes over a raw
socket, because a client library would refuse to send most of them, and then checks:

- the exact status of each answer, in order (``()`` when the defined behaviour is a
  closed connection with no answer, marked ``closes``);
- that the messages table gained exactly the bodies the row calls legitimate (a
  source with ``scheme = "none"`` accepts anyone, so what it takes is legitimate);
- that ``GET /healthz`` on the admin listener still answers 200;
- that no line the daemon wrote (stdout and stderr) contains a configured secret, a
  signature or an ``Authorization`` value that was sent, or a traceback.

The last test checks that the downstream received exactly the stored messages, each
byte-identical, and none of the forged bodies.

Where the ingress's HTTP server (``inbound/http1.py``: llhttp in strict mode, and
the limits on the request head) refuses a request before hookgate's handler sees it,
the answer is still a JSON error (``bad_request``, ``uri_too_long``,
``headers_too_large``) with ``Connection: close``, and the connection closes; the
row's ``note`` says why where it may surprise.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import gzip
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from .conftest import HOST, Daemon, Downstream, post, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Room for the 200 KB deep-nesting body, and small enough that a request one byte
# over it still arrives in one read (aiohttp then has it all buffered at once).
MAX_BODY = 240 * 1024
REQUEST_TIMEOUT = 2.0
HMAC_SECRET = "hostile-hmac-" + secrets.token_hex(16)
STANDARD_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
BASIC_USER, BASIC_PASSWORD = "relay", "pw-" + secrets.token_hex(12)
SMALL_MAX_BODY = 64 * 1024  # the second daemon's limit: a whole request fits one read
ALLOWED_NET = "203.0.113.0/24"  # TEST-NET-3: never the loopback peer of these tests


# -- the daemon under attack ----------------------------------------------------------


def daemon_config(
    downstream: Downstream, max_body: int = MAX_BODY, ingest_processes: int = 0
) -> dict[str, object]:
    sources = {
        "raw": {"path": "/hooks/raw"},
        "json": {"path": "/hooks/json", "event_type": "json:type"},
        "signed": {
            "path": "/hooks/signed",
            "verify": {
                "scheme": "hmac",
                "header": "X-Signature",
                "prefix": "sha256=",
                "secrets": [HMAC_SECRET],
            },
        },
        "std": {
            "path": "/hooks/std",
            "verify": {"scheme": "standard", "secrets": [STANDARD_SECRET]},
        },
        "basic": {
            "path": "/hooks/basic",
            "verify": {"scheme": "basic", "secrets": [f"{BASIC_USER}:{BASIC_PASSWORD}"]},
        },
        "fenced": {"path": "/hooks/fenced", "allow_ips": [ALLOWED_NET]},
    }
    return {
        "server": {
            "max_body": f"{max_body // 1024}KiB",
            "request_timeout": f"{REQUEST_TIMEOUT:g}s",
            "trusted_proxies": ["10.0.0.0/8"],
            "ingest_processes": ingest_processes,
        },
        # debug logs every accepted webhook and delivery: the most there is to leak.
        "log": {"level": "debug"},
        "sources": sources,
        "destinations": {"sink": {"url": downstream.url("/sink"), "sources": list(sources)}},
    }


@dataclass
class Answer:
    version: str
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> dict[str, object]:
        payload: dict[str, object] = json.loads(self.body)
        return payload


@dataclass
class Exchange:
    answers: list[Answer]
    closed_after: float | None  # seconds from connecting until the server closed, if awaited
    leftover: bytes = b""  # bytes after the expected answers, before the close


@dataclass
class Harness:
    daemon: Daemon
    small: Daemon  # the same sources with max_body = SMALL_MAX_BODY
    downstream: Downstream
    forbidden: set[str] = field(default_factory=set)  # must never appear in a log line
    forged: list[bytes] = field(default_factory=list)  # must never be stored or delivered
    legit: list[bytes] = field(default_factory=list)  # this row's bodies that must be stored
    closes_within: float | None = None  # this row's default for ``exchange``

    @property
    def daemons(self) -> tuple[Daemon, Daemon]:
        return (self.daemon, self.small)

    def secret(self, value: str) -> str:
        """Remember a signature or credential that was sent: it must never be logged."""
        self.forbidden.add(value)
        return value

    def forge(self, body: bytes) -> bytes:
        self.forged.append(body)
        return body

    def expect_stored(self, body: bytes) -> bytes:
        self.legit.append(body)
        return body

    async def exchange(
        self,
        parts: Sequence[bytes],
        *,
        answers: int = 1,
        pause: float = 0.0,
        closes_within: float | None = None,
        timeout: float = 15.0,
        daemon: Daemon | None = None,
    ) -> Exchange:
        """Send ``parts`` on a fresh connection while reading up to ``answers`` answers.

        With ``closes_within``, the server must then close the connection within that
        many seconds; bytes it sends before closing are returned as ``leftover``.
        """
        port = (daemon or self.daemon).ingress_port
        reader, writer = await asyncio.open_connection(HOST, port)
        started = time.monotonic()

        async def feed() -> None:
            with contextlib.suppress(ConnectionError):
                for part in parts:
                    writer.write(part)
                    await writer.drain()
                    if pause:
                        await asyncio.sleep(pause)

        feeding = asyncio.create_task(feed())
        try:
            async with asyncio.timeout(timeout):
                got: list[Answer] = []
                while len(got) < answers and (answer := await read_answer(reader)) is not None:
                    got.append(answer)
            within = closes_within if closes_within is not None else self.closes_within
            if within is None:
                return Exchange(got, None)
            leftover = await read_until_closed(reader, within)
            return Exchange(got, time.monotonic() - started, leftover)
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2)


async def read_answer(reader: asyncio.StreamReader) -> Answer | None:
    """One HTTP answer, or None when the server closed the connection first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        assert not exc.partial, f"a truncated answer: {exc.partial[:300]!r}"
        return None
    except ConnectionResetError:
        return None
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(version, int(status), headers, body)


async def read_until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    data = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {within}s") from None
    return data


# The whole table twice: the daemon serving the ingress, and two ingest processes
# (server.ingest_processes) serving it, whose answers and logs must be the same.
@pytest_asyncio.fixture(
    scope="module", loop_scope="module", params=[0, 2], ids=["daemon", "ingest-processes"]
)
async def harness(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    downstream = await Downstream().start()
    folder: Path = tmp_path_factory.mktemp("hostile")
    small_folder: Path = tmp_path_factory.mktemp("hostile-small")
    processes: int = request.param
    daemon = Daemon(folder, daemon_config(downstream, ingest_processes=processes))
    small = Daemon(small_folder, daemon_config(downstream, SMALL_MAX_BODY, processes))
    try:
        await asyncio.gather(daemon.start(), small.start())
        yield Harness(
            daemon,
            small,
            downstream,
            forbidden={HMAC_SECRET, STANDARD_SECRET, STANDARD_SECRET.removeprefix("whsec_")}
            | {BASIC_PASSWORD, basic_credentials(BASIC_USER, BASIC_PASSWORD)},
        )
    finally:
        await daemon.close()
        await small.close()
        await downstream.close()


# -- building requests ------------------------------------------------------------------


def http(
    target: str | bytes,
    body: bytes = b"",
    headers: Sequence[tuple[str, str] | bytes] = (),
    *,
    method: bytes = b"POST",
    version: bytes = b" HTTP/1.1",
    length: bool = True,
) -> bytes:
    """A request head and body, byte for byte; ``bytes`` items are raw header lines."""
    path = target.encode() if isinstance(target, str) else target
    lines = [method + b" " + path + version, b"Host: hookgate.test"]
    for item in headers:
        lines.append(item if isinstance(item, bytes) else f"{item[0]}: {item[1]}".encode())
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(target: str, chunks: Sequence[bytes], headers: Sequence[bytes] = ()) -> list[bytes]:
    head = http(target, headers=[b"Transfer-Encoding: chunked", *headers], length=False)
    return [head, *(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks), b"0\r\n\r\n"]


def body_for(case: str, **extra: object) -> bytes:
    return json.dumps({"type": "hostile", "case": case, **extra}, separators=(",", ":")).encode()


def hmac_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()


def standard_headers(body: bytes, msg_id: str, timestamp: int) -> list[tuple[str, str]]:
    key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(mac).decode()
    return [
        ("webhook-id", msg_id),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-signature", signature),
    ]


def basic_credentials(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# -- the rows -----------------------------------------------------------------------------

Run = Callable[[Harness], Awaitable[Exchange]]


@dataclass(frozen=True)
class Case:
    expect: tuple[int, ...]  # the statuses answered, in order; () = no answer
    closes: bool  # the server must then close the connection, sending nothing more
    name: str
    run: Run
    note: str = ""  # where aiohttp's answer is not what a careful operator might expect

    def __str__(self) -> str:
        return self.name


def send(data: bytes | Callable[[Harness], bytes]) -> Run:
    """A row that sends one blob of bytes (built per run when ``data`` is callable)."""

    async def run(h: Harness) -> Exchange:
        return await h.exchange([data(h) if callable(data) else data])

    return run


def forged(target: str, case: str, headers: Sequence[tuple[str, str] | bytes] = ()) -> Run:
    """A row whose body must not be stored."""
    return send(lambda h: http(target, h.forge(body_for(case)), headers))


def legit(target: str, body: bytes, headers: Sequence[tuple[str, str] | bytes] = ()) -> Run:
    """A row whose body must be stored and delivered byte-identical."""
    return send(lambda h: http(target, h.expect_stored(body), headers))


async def oversized_with_length(h: Harness) -> Exchange:
    # Content-Length is checked before reading: the answer comes with 1 KiB sent.
    head = http("/hooks/raw", headers=[b"Content-Type: application/json"], length=False)
    head = head.replace(b"\r\n\r\n", b"\r\nContent-Length: %d\r\n\r\n" % (4 * MAX_BODY))
    h.forge(b"A" * 1024)
    return await h.exchange([head + b"A" * 1024])


async def oversized_chunked_stream(h: Harness) -> Exchange:
    chunks = [b"B" * 16384] * (4 * MAX_BODY // 16384)
    h.forge(b"".join(chunks))
    return await h.exchange(chunked("/hooks/raw", chunks))


def chunked_past_limit(*, small: bool, chunk: int | None) -> Run:
    """One byte over the limit, chunked, in one write: all of it may be buffered at once.

    ``chunk`` None: the body in two chunks (the limit, then one byte).
    """

    async def run(h: Harness) -> Exchange:
        limit = SMALL_MAX_BODY if small else MAX_BODY
        body = h.forge(b"C" * (limit + 1))
        size = chunk or limit
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        request = b"".join(chunked("/hooks/raw", chunks))
        return await h.exchange([request], daemon=h.small if small else None)

    return run


async def gzip_bomb(h: Harness) -> Exchange:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB → ~64 KiB
    assert len(bomb) < MAX_BODY
    h.forge(bomb)
    headers = [("Content-Encoding", "gzip"), ("Content-Type", "application/json")]
    return await h.exchange([http("/hooks/raw", bomb, headers)])


def many_headers(count: int) -> bytes:
    # Host and Content-Length count too: ``count`` header lines in all.
    extra = [b"X-Filler-%d: v" % i for i in range(count - 2)]
    return http("/hooks/raw", body_for("many-headers"), extra)


async def slow_headers(h: Harness) -> Exchange:
    head = http("/hooks/raw", body_for("slow-headers"))
    h.forge(body_for("slow-headers"))
    # A byte every 100 ms: the head would take a minute; the deadline is request_timeout.
    return await h.exchange(
        [bytes([b]) for b in head],
        answers=0,
        pause=0.1,
        closes_within=REQUEST_TIMEOUT + 4,
    )


async def slow_body(h: Harness) -> Exchange:
    head = http("/hooks/raw", headers=[b"Content-Length: 1000"], length=False)
    h.forge(b"E" * 10)
    started = time.monotonic()
    exchange = await h.exchange([head + b"E" * 10])
    assert time.monotonic() - started < REQUEST_TIMEOUT + 4
    return exchange


async def hangs_up_mid_body(h: Harness) -> Exchange:
    """The client (or a proxy giving up on it) closes after 10 of 1000 body bytes."""
    head = http("/hooks/raw", headers=[b"Content-Length: 1000"], length=False)
    h.forge(b"F" * 10)
    before = len(h.daemon.log_events())
    _, writer = await asyncio.open_connection(HOST, h.daemon.ingress_port)
    writer.write(head + b"F" * 10)
    await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    # Nobody is left to answer: the log says why (the table checks it has no traceback).
    await wait_for(
        lambda: any(e.get("reason") == "incomplete_body" for e in h.daemon.log_events()[before:])
    )
    return Exchange([], None)


HOSTILE_JSON = {
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "huge-number": b'{"type":"hostile","n":' + b"7" * 5000 + b"}",
    "nan": b'{"type":"hostile","n":NaN}',
    "invalid-utf8": b'{"type":"hostile \xff\xfe\xc3\x28"}',
}


def hostile_json(name: str, *, extracting: bool) -> Run:
    body = HOSTILE_JSON[name]
    headers = [("Content-Type", "application/json")]
    if extracting:
        return send(lambda h: http("/hooks/json", h.forge(body), headers))
    return legit("/hooks/raw", body, headers)


def forged_signature(h: Harness) -> bytes:
    body = h.forge(body_for("forged-signature"))
    signature = h.secret("sha256=" + secrets.token_hex(32))
    return http("/hooks/signed", body, [("X-Signature", signature)])


def wrong_basic(h: Harness) -> bytes:
    body = h.forge(body_for("wrong-basic"))
    credentials = h.secret(basic_credentials(BASIC_USER, "guess-" + secrets.token_hex(8)))
    return http("/hooks/basic", body, [("Authorization", f"Basic {credentials}")])


def malformed_authorization(h: Harness) -> bytes:
    # An Authorization value that aiohttp's parser refuses (a NUL in it): the 400 it
    # sends back quotes the line to the sender, but no log line may.
    credentials = h.secret(basic_credentials(BASIC_USER, BASIC_PASSWORD))
    body = h.forge(body_for("malformed-authorization"))
    line = b"Authorization: Basic " + credentials.encode() + b"\0"
    return http("/hooks/basic", body, [line])


def oversized_authorization(h: Harness) -> bytes:
    credentials = h.secret(basic_credentials(BASIC_USER, BASIC_PASSWORD) + "A" * 9000)
    body = h.forge(body_for("oversized-authorization"))
    return http("/hooks/basic", body, [("Authorization", f"Basic {credentials}")])


def stale_standard(h: Harness) -> bytes:
    body = h.forge(body_for("stale-timestamp"))
    headers = standard_headers(body, "msg_stale_" + secrets.token_hex(6), int(time.time()) - 3600)
    h.secret(headers[2][1].removeprefix("v1,"))
    return http("/hooks/std", body, headers)


def future_standard(h: Harness) -> bytes:
    body = h.forge(body_for("future-timestamp"))
    headers = standard_headers(body, "msg_future_" + secrets.token_hex(6), int(time.time()) + 3600)
    h.secret(headers[2][1].removeprefix("v1,"))
    return http("/hooks/std", body, headers)


async def replay_after_dedup(h: Harness) -> Exchange:
    body = h.expect_stored(body_for("replay"))
    headers = standard_headers(body, "msg_replay_" + secrets.token_hex(6), int(time.time()))
    h.secret(headers[2][1].removeprefix("v1,"))
    request = http("/hooks/std", body, headers)
    exchange = await h.exchange([request, request], answers=2)
    first, second = (a.json() for a in exchange.answers)
    assert second == {"id": first["id"], "duplicate": True}, (first, second)
    return exchange


def smuggle(first: bytes, marker: str) -> Callable[[Harness], bytes]:
    def build(h: Harness) -> bytes:
        hidden = h.forge(body_for(marker))
        return first + http("/hooks/raw", hidden)

    return build


CL_TE = (
    b"POST /hooks/raw HTTP/1.1\r\nHost: hookgate.test\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
)
TE_CL = (
    b"POST /hooks/raw HTTP/1.1\r\nHost: hookgate.test\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 90\r\n\r\n0\r\n\r\n"
)


async def pipelined_flood(h: Harness) -> Exchange:
    count = 1000
    requests = []
    for i in range(count):
        signature = h.secret("sha256=" + secrets.token_hex(32))
        body = h.forge(body_for("pipelined", n=i))
        requests.append(http("/hooks/signed", body, [("X-Signature", signature)]))
    good = h.expect_stored(body_for("pipelined-legit"))
    requests.append(http("/hooks/signed", good, [("X-Signature", h.secret(hmac_signature(good)))]))
    exchange = await h.exchange([b"".join(requests)], answers=count + 1, timeout=30)
    assert [a.status for a in exchange.answers] == [401] * count + [202]
    return Exchange(exchange.answers[-2:], None)  # the table shows the last two


def xff_spoof(h: Harness) -> bytes:
    headers = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-For", "203.0.113.8, 10.1.2.3"),
        ("X-Real-IP", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.10"),
    ]
    return http("/hooks/fenced", h.forge(body_for("xff-spoof")), headers)


GARBAGE = bytes(range(256)) * 4
TLS_CLIENT_HELLO = bytes.fromhex("16030100a5010000a10303") + bytes(32) + b"\x00\x00\x02\x13\x01"


LONG_LINE = http("/hooks/raw?" + "q" * 10240, b"{}")
BIG_HEADER = http("/hooks/raw", b"{}", [("X-Big", "h" * 9000)])
DUPLICATE_LENGTH = smuggle(http("/hooks/raw", b"{}", [b"Content-Length: 40"]), "dup-cl")
TE_LIST = http("/hooks/raw", b"0\r\n\r\n", [b"Transfer-Encoding: chunked, identity"], length=False)
SIGNED_LENGTH = http("/hooks/raw", b"{}", [b"Content-Length: +2"], length=False)
OBS_FOLD = http("/hooks/raw", b"{}", [b"X-Folded: a", b" folded"])
SPACE_IN_NAME = http("/hooks/raw", b"{}", [b"X Bad: a"])
SPACE_BEFORE_COLON = http("/hooks/raw", b"{}", [b"Content-Type : text/plain"])
BARE_LF = http("/hooks/raw", b"{}").replace(b"\r\n", b"\n")
NOT_UTF8 = http("/hooks/raw", b"{}", [b"X-Latin-1: caf\xe9"])
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ABSOLUTE_OPEN = legit("http://evil.example/hooks/raw", body_for("absolute-form-open"))
A = "the HTTP server refuses it before the handler sees it (bad_request)"

# fmt: off
CASES = [
    # statuses, closes, name, run, note
    Case((413,), False, "oversized, Content-Length", oversized_with_length),
    Case((413,), False, "oversized chunked stream, no Content-Length", oversized_chunked_stream),
    Case((413,), False, "chunked, 1 byte past 240 KiB, one write",
         chunked_past_limit(small=False, chunk=None)),
    Case((413,), False, "chunked, 1 byte past 240 KiB, 1000-byte chunks",
         chunked_past_limit(small=False, chunk=1000)),
    Case((413,), False, "chunked, 1 byte past 64 KiB, one write",
         chunked_past_limit(small=True, chunk=None)),
    Case((413,), False, "chunked, 1 byte past 64 KiB, 1000-byte chunks",
         chunked_past_limit(small=True, chunk=1000)),
    Case((415,), False, "gzip bomb, Content-Encoding: gzip", gzip_bomb),
    Case((431,), True, "129 header lines", send(many_headers(129)),
         "at most 128 header lines (aiohttp's limit; aiohttp answered 400)"),
    Case((431,), True, "one 9000-byte header", send(BIG_HEADER),
         "a header's name or value at most 8190 bytes (aiohttp answered 400)"),
    Case((414,), True, "10 KiB request line", send(LONG_LINE),
         "a request target at most 8190 bytes (aiohttp answered 400)"),
    Case((), True, "slow headers, a byte per 100 ms", slow_headers,
         "closed at the keep-alive deadline (request_timeout), with no 408"),
    Case((408,), False, "slow body, 10 of 1000 bytes then stall", slow_body,
         "the rest of the body is then read and dropped for 1 s at most, then closed"),
    Case((), False, "client hangs up mid-body, 10 of 1000 bytes", hangs_up_mid_body),
    Case((400,), False, "JSON nested 100k deep, json: source",
         hostile_json("deep-nesting", extracting=True)),
    Case((400,), False, "JSON 5000-digit number, json: source",
         hostile_json("huge-number", extracting=True)),
    Case((400,), False, "JSON NaN, json: source", hostile_json("nan", extracting=True)),
    Case((400,), False, "JSON invalid UTF-8, json: source",
         hostile_json("invalid-utf8", extracting=True)),
    Case((202,), False, "JSON nested 100k deep, raw source",
         hostile_json("deep-nesting", extracting=False)),
    Case((202,), False, "JSON 5000-digit number, raw source",
         hostile_json("huge-number", extracting=False)),
    Case((202,), False, "JSON NaN, raw source", hostile_json("nan", extracting=False)),
    Case((202,), False, "JSON invalid UTF-8, raw source",
         hostile_json("invalid-utf8", extracting=False)),
    Case((403,), False, "spoofed X-Forwarded-For from an untrusted peer", send(xff_spoof)),
    Case((401,), False, "forged hmac signature", send(forged_signature)),
    Case((401,), False, "missing signature", forged("/hooks/signed", "missing-signature")),
    Case((401,), False, "wrong Basic credentials", send(wrong_basic)),
    Case((400,), True, "Authorization with a NUL byte", send(malformed_authorization),
         f"{A}; neither the answer nor the log quotes the header"),
    Case((431,), True, "9000-byte Authorization", send(oversized_authorization),
         "a header's value at most 8190 bytes (aiohttp answered 400)"),
    Case((401,), False, "standard webhooks, stale timestamp (replay)", send(stale_standard)),
    Case((401,), False, "standard webhooks, future timestamp", send(future_standard)),
    Case((202, 200), False, "valid request replayed after dedup", replay_after_dedup),
    Case((400,), True, "CL.TE smuggling probe", send(smuggle(CL_TE, "cl-te-smuggled")), A),
    Case((400,), True, "TE.CL smuggling probe", send(smuggle(TE_CL, "te-cl-smuggled")), A),
    Case((400,), True, "duplicate Content-Length, different values", send(DUPLICATE_LENGTH), A),
    Case((400,), True, "Transfer-Encoding: chunked, identity", send(TE_LIST), A),
    Case((400,), True, "Content-Length: +2", send(SIGNED_LENGTH), A),
    Case((400,), True, "obs-fold continuation line", send(OBS_FOLD), A),
    Case((400,), True, "space inside a header name", send(SPACE_IN_NAME), A),
    Case((400,), True, "space before the colon", send(SPACE_BEFORE_COLON), A),
    Case((400,), True, "bare LF line endings", send(BARE_LF), A),
    Case((400,), True, "unknown method BREW", send(http("/hooks/raw", b"{}", method=b"BREW")),
         f"{A}: llhttp refuses unknown method tokens, so 400 rather than 405"),
    Case((405,), False, "DELETE on a source path",
         send(http("/hooks/raw", b"{}", method=b"DELETE"))),
    Case((405,), False, "GET on a source path",
         send(http("/hooks/raw", method=b"GET", length=False))),
    Case((401,), False, "absolute-form target, no signature",
         forged("http://evil.example/hooks/signed", "absolute-form")),
    Case((202,), False, "absolute-form target, open source", ABSOLUTE_OPEN,
         "RFC 9112 3.2.2: absolute-form must be accepted; its host part is ignored"),
    Case((404,), False, "OPTIONS *", send(http(b"*", method=b"OPTIONS", length=False))),
    Case((404,), False, "CONNECT authority-form",
         send(http(b"evil.example:443", method=b"CONNECT", length=False))),
    Case((404,), False, "dot segments /x/../hooks/signed",
         forged("/x/../hooks/signed", "dot-segments"), "not normalised, so no route"),
    Case((401,), False, "percent-encoded /hooks/%73igned, no signature",
         forged("/hooks/%73igned", "percent-encoded"),
         "routed on the decoded path; the signature check still applies"),
    Case((400,), True, "HTTP/0.9-style request line",
         send(http("/hooks/signed", version=b"", length=False)),
         "llhttp takes it as HTTP/0.9, the server refuses it; answered as HTTP/1.1"),
    Case((400,), True, "HTTP/1.2 version", send(http("/hooks/raw", b"{}", version=b" HTTP/1.2")),
         A),
    Case((400,), True, "HTTP/2.0 request line, open source",
         send(http("/hooks/raw", b"{}", version=b" HTTP/2.0")),
         "llhttp takes it, the server refuses it (it was stored and answered 202)"),
    Case((400,), True, "binary garbage", send(GARBAGE), A),
    Case((400,), True, "TLS ClientHello on the plain port", send(TLS_CLIENT_HELLO), A),
    Case((400,), True, "HTTP/2 prior-knowledge preface", send(HTTP2_PREFACE), A),
    Case((400,), True, "NUL byte in the request target", send(http(b"/hooks/raw\0", b"{}")), A),
    Case((400,), True, "header value not UTF-8", send(NOT_UTF8),
         f"{A}: headers are stored as UTF-8 text (aiohttp answered 500)"),
    Case((401, 202), False, "1000 forged requests pipelined, then one valid", pipelined_flood),
]
# fmt: on


# -- the checks ---------------------------------------------------------------------------


def log_text(daemon: Daemon) -> str:
    return daemon.stdout() + daemon.stderr()


def stored_since(daemon: Daemon, after_id: int) -> list[bytes]:
    rows = daemon.query("SELECT body FROM messages WHERE id > ? ORDER BY id", (after_id,))
    return [bytes(row[0]) for row in rows]


def last_message_id(daemon: Daemon) -> int:
    return int(daemon.query("SELECT coalesce(max(id), 0) FROM messages")[0][0])


async def delivery_states(daemon: Daemon) -> list[tuple[object, ...]]:
    return daemon.query("SELECT state, count(*) FROM deliveries GROUP BY state")


async def healthz(daemon: Daemon) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(daemon.admin_url("/healthz"), timeout=aiohttp.ClientTimeout(total=5)) as r,
    ):
        return r.status


def check_answers(case: Case, exchange: Exchange) -> None:
    statuses = tuple(a.status for a in exchange.answers)
    assert statuses == case.expect, (statuses, [a.body[:300] for a in exchange.answers])
    for answer in exchange.answers:
        if answer.status >= 400:
            body = answer.json()
            assert set(body) == {"error", "detail"}, body
            assert answer.headers["content-type"] == "application/json", answer.headers
        if case.closes:
            assert answer.headers.get("connection") == "close", answer.headers
        if answer.status == 405:
            assert answer.headers.get("allow") == "POST", answer.headers
    if case.closes:
        assert exchange.closed_after is not None
        assert exchange.leftover == b"", f"more than the expected answer: {exchange.leftover!r}"


# The slow clients wait out request_timeout: seconds each.
SLOW = pytest.mark.slow
ROWS = [pytest.param(c, marks=SLOW) if c.run in (slow_headers, slow_body) else c for c in CASES]


@pytest.mark.parametrize("case", ROWS, ids=str)
async def test_hostile_request(harness: Harness, case: Case) -> None:
    harness.legit = []
    harness.closes_within = 5.0 if case.closes else None
    forged_before = len(harness.forged)
    before = {d.ingress_port: last_message_id(d) for d in harness.daemons}

    exchange = await case.run(harness)

    check_answers(case, exchange)
    stored: list[bytes] = []
    for daemon in harness.daemons:
        assert daemon.running, daemon.stderr()
        stored += stored_since(daemon, before[daemon.ingress_port])
    assert stored == harness.legit
    for body in harness.forged[forged_before:]:
        assert body not in harness.legit
    received = harness.downstream.requests
    for body in harness.legit:
        await wait_for(lambda body=body: any(r.body == body for r in received))
    for daemon in harness.daemons:
        assert await healthz(daemon) == 200
        logs = log_text(daemon)
        assert "Traceback" not in logs, logs[-3000:]
        leaked = [value[:24] + "..." for value in harness.forbidden if value in logs]
        assert not leaked, f"logged: {leaked}"


async def test_deliveries_are_exactly_the_stored_messages(harness: Harness) -> None:
    """Runs after the table: byte-identical deliveries of what was stored, nothing forged."""
    # Not a sleep before "nothing else arrived": a marker through each daemon, last.
    # Once it is delivered and nothing is left undelivered, every claim made before
    # its own has been sent, so anything forged or sent twice would be here.
    async with aiohttp.ClientSession() as session:
        for d in harness.daemons:
            marker = body_for("marker", port=d.ingress_port)
            status, answer = await post(session, d.url("/hooks/raw"), marker)
            assert status == 202, answer
    for d in harness.daemons:
        await wait_for(
            lambda d=d: (
                d.query("SELECT count(*) FROM deliveries WHERE state != 'delivered'") == [(0,)]
            ),
            message=lambda d=d: f"undelivered: {delivery_states(d)}",
        )
    stored = [
        bytes(row[0]) for d in harness.daemons for row in d.query("SELECT body FROM messages")
    ]
    await harness.downstream.wait_count(len(stored))
    delivered = [r.body for r in harness.downstream.requests]
    assert collections.Counter(delivered) == collections.Counter(stored)
    # Bytes refused on one source may be legitimate on another (the hostile JSON).
    forged = set(harness.forged) - set(stored)
    assert not [body[:80] for body in delivered if body in forged]
