"""``hookgate send`` and ``hookgate listen`` over loopback; the admin client against a stand-in.

``listen`` runs as a subprocess on port 0 and says where it listens; ``send`` runs as
a subprocess too, so exit codes and output are the real ones. The admin commands run
in-process (in a thread, as they block) against an aiohttp stand-in for the admin
API that answers what each test scripts, so error paths need no broken daemon.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hookgate import cli
from hookgate.outbound import signing

WAIT = 20.0  # a bound for a subprocess to answer, not an expectation of speed
SECRET = "whsec_" + base64.b64encode(b"integration test key 0123").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"a different key entirely").decode()


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def hookgate(*args: str, stdin: bytes = b"") -> Ran:
    """Run ``python -m hookgate ARGS`` to completion."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hookgate", *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), WAIT)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


class Listener:
    """A ``hookgate listen`` subprocess and what it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url

    async def next_block(self) -> str:
        """The next request it printed: lines up to the blank line after the body."""
        assert self.proc.stdout is not None
        lines = []
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), WAIT)).decode()
            assert line, f"listen exited; so far: {lines}"
            if line == "\n":
                return "".join(lines)
            lines.append(line)
            if line.startswith("--- ") and line.rstrip().endswith(": 404"):
                return "".join(lines)

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signum)
        return await asyncio.wait_for(self.proc.wait(), WAIT)


@pytest.fixture
async def listen() -> AsyncIterator[Callable[..., Awaitable[Listener]]]:
    started: list[Listener] = []

    async def start(*args: str) -> Listener:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hookgate", "listen", "--listen", "127.0.0.1:0", *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode()
        match = re.match(r"listening on (http://\S+) \(Ctrl-C to stop\)$", first.strip())
        assert match, first
        listener = Listener(proc, match[1])
        started.append(listener)
        return listener

    yield start
    for listener in started:
        if listener.proc.returncode is None:
            listener.proc.kill()
            await listener.proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- send → listen ------------------------------------------------------------------


async def test_standard_signature_valid_then_invalid(
    listen: Callable[..., Awaitable[Listener]],
) -> None:
    receiver = await listen("--secret", SECRET)
    body = b'{"type": "order.created", "n": 1}'
    sent = await hookgate(
        "send", receiver.url, "--scheme", "standard", "--secret", SECRET, stdin=body
    )
    assert (sent.returncode, sent.stdout.splitlines()[0]) == (0, "HTTP 200 OK"), sent
    block = await receiver.next_block()
    assert block.startswith("--- POST /\n")
    assert re.search(r"^webhook-id: msg_[0-9a-f]{16}$", block, re.M), block
    assert re.search(r"^webhook-signature: v1,", block, re.M), block
    assert "signature: valid\n" in block
    assert block.endswith(f"body ({len(body)} bytes):\n{body.decode()}\n")

    forged = await hookgate(
        "send", receiver.url, "--scheme", "standard", "--secret", OTHER_SECRET, stdin=body
    )
    assert forged.returncode == 0  # listen answers --status whatever the signature
    assert "signature: INVALID (no signature matched)\n" in await receiver.next_block()


async def test_hmac_sha256_signature_valid_invalid_and_missing(
    listen: Callable[..., Awaitable[Listener]],
) -> None:
    receiver = await listen("--hmac-secret", "shared")
    hmac_args = ("--scheme", "hmac", "--header", "X-Webhook-Signature")
    for secret, expected in (("shared", "valid"), ("guess", "INVALID (no signature matched)")):
        sent = await hookgate("send", receiver.url, *hmac_args, "--secret", secret, stdin=b"hi")
        assert sent.returncode == 0, sent
        block = await receiver.next_block()
        assert f"signature: {expected}\n" in block, block
        assert re.search(r"^X-Webhook-Signature: [0-9a-f]{64}$", block, re.M), block
    unsigned = await hookgate("send", receiver.url, stdin=b"hi")
    assert unsigned.returncode == 0, unsigned
    assert "signature: INVALID (missing header)\n" in await receiver.next_block()


async def test_hookgate_outbound_signatures_are_valid(
    listen: Callable[..., Awaitable[Listener]],
) -> None:
    """Requests signed as the relay signs them (signing.Signer), not as ``send`` does."""
    standard = await listen("--secret", SECRET)
    hex_hmac = await listen("--hmac-secret", "relay-key")
    body = b'{"batch_id": "b", "events": []}'
    now = int(time.time())
    base = {"webhook-id": "msg_00000000000000aa", "webhook-timestamp": str(now)}
    async with aiohttp.ClientSession() as session:
        for receiver, mode, secret in (
            (standard, "standard", SECRET),
            (hex_hmac, "hmac-sha256", "relay-key"),
        ):
            signer = signing.Signer(mode, secret)  # type: ignore[arg-type]
            headers = {**base, **signer.headers(base["webhook-id"], now, body)}
            async with session.post(receiver.url, data=body, headers=headers) as response:
                assert response.status == 200
            assert "signature: valid\n" in await receiver.next_block()


async def test_no_secret_means_not_checked_and_status_is_answered(
    listen: Callable[..., Awaitable[Listener]],
) -> None:
    receiver = await listen("--status", "503", "--path", "/in")
    sent = await hookgate("send", receiver.url, stdin=b"{}")
    assert sent.returncode == 1
    assert sent.stdout.splitlines()[0] == "HTTP 503 Service Unavailable"
    assert "signature: not checked\n" in await receiver.next_block()

    elsewhere = await hookgate("send", receiver.url.removesuffix("/in") + "/other", stdin=b"{}")
    assert (elsewhere.returncode, elsewhere.stdout.splitlines()[0]) == (1, "HTTP 404 Not Found")
    assert await receiver.next_block() == "--- POST /other: 404\n"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_listen_exits_0_on_signal(
    listen: Callable[..., Awaitable[Listener]], signum: int
) -> None:
    receiver = await listen()
    assert await receiver.stop(signum) == 0
    assert receiver.proc.stderr is not None
    assert b"Traceback" not in await receiver.proc.stderr.read()


async def test_listen_on_a_busy_port_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ran = await hookgate("listen", "--listen", f"127.0.0.1:{port}")
    assert ran.returncode == 1
    assert ran.stderr == f"hookgate: cannot listen on 127.0.0.1:{port}: Address already in use\n"


async def test_send_to_nothing_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    ran = await hookgate("send", url, stdin=b"{}")
    assert ran.returncode == 1
    assert ran.stderr == f"hookgate: cannot connect to {url}: connection refused\n"


async def test_send_body_file(listen: Callable[..., Awaitable[Listener]], tmp_path: Path) -> None:
    receiver = await listen()
    (tmp_path / "body.json").write_bytes(b'{"from": "file"}')
    sent = await hookgate("send", receiver.url, "--body-file", str(tmp_path / "body.json"))
    assert sent.returncode == 0, sent
    assert '{"from": "file"}' in await receiver.next_block()
    missing = await hookgate("send", receiver.url, "--body-file", str(tmp_path / "none.json"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("hookgate: cannot read ")


# -- the admin client against a stand-in API ------------------------------------------


@dataclass
class StandIn:
    """An admin API that answers ``routes[(method, path)] = (status, body)``."""

    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    seen: list[web.Request] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request)
        status, body = self.routes.get((request.method, request.path), (404, {}))
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, content_type="text/plain")
        if status in (301, 302, 307, 308):
            return web.Response(status=status, headers={"Location": body})
        return web.json_response(body, status=status)


@pytest.fixture
async def stand_in(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StandIn]:
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    api = StandIn()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api.url = f"http://127.0.0.1:{port}"
    yield api
    await runner.cleanup()


async def admin_command(
    capsys: pytest.CaptureFixture[str], api: StandIn, argv: Sequence[str]
) -> Ran:
    """Run an admin command in a thread (it blocks) against the stand-in."""
    code = await asyncio.to_thread(
        cli.main, [*argv, "--admin-url", api.url, "--token", "test-token"]
    )
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


READY = {
    "status": "ok",
    "checks": {"database": "ok", "delivery": "ok"},
    "queue": {"pending": 0, "oldest_pending_age_s": 0.0, "dead": 0},
    "destinations": {"orders": {"state": "ok", "pending": 0}},
}
STATS = {
    "messages": 1,
    "deliveries": {"pending": 0, "delivered": 1, "dead": 0},
    "oldest_pending_age_s": 0.0,
    "destinations": {},
}


async def test_api_error_detail_and_bearer_token(
    capsys: pytest.CaptureFixture[str], stand_in: StandIn
) -> None:
    stand_in.routes[("GET", "/api/v1/messages/msg_a/b")] = (
        404,
        {"error": "not_found", "detail": "no such message"},
    )
    ran = await admin_command(capsys, stand_in, ["messages", "show", "msg_a/b"])
    assert (ran.returncode, ran.stdout, ran.stderr) == (1, "", "hookgate: no such message\n")
    request = stand_in.seen[-1]
    assert request.raw_path == "/api/v1/messages/msg_a%2Fb"
    assert request.headers["Authorization"] == "Bearer test-token"


async def test_error_that_is_not_json(
    capsys: pytest.CaptureFixture[str], stand_in: StandIn
) -> None:
    stand_in.routes[("POST", "/api/v1/destinations/orders/pause")] = (502, b"upstream down")
    ran = await admin_command(capsys, stand_in, ["pause", "orders"])
    assert ran.returncode == 1
    assert ran.stderr == "hookgate: the admin API answered HTTP 502 Bad Gateway\n"


async def test_redirect_is_not_followed(
    capsys: pytest.CaptureFixture[str], stand_in: StandIn
) -> None:
    stand_in.routes[("POST", "/api/v1/destinations/orders/resume")] = (307, "/elsewhere")
    ran = await admin_command(capsys, stand_in, ["resume", "orders"])
    assert ran.returncode == 1
    assert "HTTP 307" in ran.stderr
    assert [r.path for r in stand_in.seen] == ["/api/v1/destinations/orders/resume"]


async def test_list_passes_filters_and_prints_json_as_answered(
    capsys: pytest.CaptureFixture[str], stand_in: StandIn
) -> None:
    page = {"items": [], "next_cursor": None}
    stand_in.routes[("GET", "/api/v1/messages")] = (200, page)
    argv = ["messages", "list", "--source", "shop", "--state", "dead", "--limit", "5", "--json"]
    ran = await admin_command(capsys, stand_in, argv)
    assert ran.returncode == 0, ran
    assert json.loads(ran.stdout) == page
    assert dict(stand_in.seen[-1].query) == {"source": "shop", "state": "dead", "limit": "5"}


async def test_status_not_ready_exits_1(
    capsys: pytest.CaptureFixture[str], stand_in: StandIn
) -> None:
    failing = {**READY, "status": "failing", "checks": {"database": "failing: disk full"}}
    stand_in.routes[("GET", "/readyz")] = (503, failing)
    stand_in.routes[("GET", "/api/v1/stats")] = (200, STATS)
    ran = await admin_command(capsys, stand_in, ["status"])
    assert ran.returncode == 1
    assert ran.stdout.splitlines()[:2] == [
        f"hookgate at {stand_in.url}: NOT READY",
        "checks: database failing: disk full",
    ]
    stand_in.routes[("GET", "/readyz")] = (200, READY)
    ran = await admin_command(capsys, stand_in, ["status", "--json"])
    assert ran.returncode == 0
    assert json.loads(ran.stdout) == {"readyz": READY, "stats": STATS}


async def test_status_shows_readiness_even_when_stats_fail(
    capsys: pytest.CaptureFixture[str], stand_in: StandIn
) -> None:
    stand_in.routes[("GET", "/readyz")] = (200, READY)
    stand_in.routes[("GET", "/api/v1/stats")] = (
        401,
        {"error": "unauthorized", "detail": "a valid bearer token is required"},
    )
    ran = await admin_command(capsys, stand_in, ["status"])
    assert ran.returncode == 1
    assert ran.stdout.startswith(f"hookgate at {stand_in.url}: ready\n")
    assert ran.stderr == "hookgate: a valid bearer token is required\n"


async def test_answer_of_the_wrong_shape_is_one_line(
    capsys: pytest.CaptureFixture[str], stand_in: StandIn
) -> None:
    stand_in.routes[("POST", "/api/v1/deliveries/3/retry")] = (200, {"id": "three"})
    ran = await admin_command(capsys, stand_in, ["retry", "3"])
    assert ran.returncode == 1
    assert ran.stderr.startswith("hookgate: unexpected answer from the admin API")
    assert len(ran.stderr.splitlines()) == 1


async def test_admin_api_not_running_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = await asyncio.to_thread(cli.main, ["status", "--admin-url", url, "--token", "t"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"hookgate: cannot connect to {url}/readyz: connection refused\n"
