"""The receivers in examples/ against the real daemon.

Each example (Python, Node, Go) runs as its own process; hookgate delivers to it
with sign = "standard". Checked: it accepts hookgate's real deliveries (singly and
batched), recognises a re-sent webhook-id as a duplicate, answers 401 to a forged,
tampered or stale request, and tolerates five minutes of clock skew. What each
receiver decided is read from the lines it prints on stdout.

Node and Go are not Python packages: `.ci/setup` installs them. When one is
missing the test fails (it does not skip), so CI cannot pass without covering it.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from .conftest import HOST, START_TIMEOUT, Daemon, free_port, post, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LANGUAGES = ["python", "node", "go"]
LINE = re.compile(r"^(accepted|duplicate|rejected|failed) id=(\S+)(.*)$")
# Each test sends its own requests; a receiver's answer should not take long.
TIMEOUT = aiohttp.ClientTimeout(total=10)

StartDaemon = Callable[..., Awaitable[Daemon]]


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"`{tool}` is not installed, so examples/ cannot be tested:"
            f" run .ci/setup (it installs the Debian package {package})"
        )
    return path


@pytest.fixture(scope="session")
def go_receiver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/go built once per session (offline: it uses the standard library only)."""
    go = require("go", "golang-go")
    folder = tmp_path_factory.mktemp("go-receiver")
    binary = folder / "receiver"
    env = {**os.environ, "GOCACHE": str(folder / "cache"), "GOPROXY": "off", "GOFLAGS": ""}
    result = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=EXAMPLES / "go",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"go build failed:\n{result.stderr}"
    return binary


def receiver_command(language: str, request: pytest.FixtureRequest) -> list[str]:
    if language == "python":
        return [sys.executable, str(EXAMPLES / "python" / "receiver.py")]
    if language == "node":
        return [require("node", "nodejs"), str(EXAMPLES / "node" / "receiver.js")]
    return [str(request.getfixturevalue("go_receiver"))]


class Receiver:
    """One example receiver process; what it decided is read from its stdout."""

    def __init__(self, command: list[str], folder: Path, secret: str) -> None:
        self.command = command
        self.secret = secret
        self.port = free_port()
        self.stdout_path = folder / "receiver.stdout"
        self.stderr_path = folder / "receiver.stderr"
        self._files: list[IO[bytes]] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str = "/webhooks") -> str:
        return f"http://{HOST}:{self.port}{path}"

    async def start(self) -> Receiver:
        stdout, stderr = self.stdout_path.open("wb"), self.stderr_path.open("wb")
        self._files += [stdout, stderr]
        env = {**os.environ, "WEBHOOK_SECRET": self.secret, "PORT": str(self.port), "HOST": HOST}
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env
        )
        await wait_for(self._listening, START_TIMEOUT, message=self.describe)
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the receiver exited: {self.describe()}")
        return any(line.startswith("listening ") for line in self.lines())

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for file in self._files:
            file.close()

    def lines(self) -> list[str]:
        return self.stdout_path.read_text(errors="replace").splitlines()

    def describe(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        return (
            f"{' '.join(self.command)} (exit code {code});\nstdout:\n"
            + "\n".join(self.lines()[-40:])
            + f"\nstderr:\n{self.stderr_path.read_text(errors='replace')[-3000:]}"
        )

    def outcomes(self) -> list[tuple[str, str, str]]:
        """(decision, id, rest of the line) of every request line printed so far."""
        return [(m[1], m[2], m[3]) for m in map(LINE.match, self.lines()) if m]

    def ids(self, decision: str) -> list[str]:
        return [i for d, i, _ in self.outcomes() if d == decision]

    async def wait_ids(self, decision: str, ids: set[str]) -> None:
        await wait_for(
            lambda: ids <= set(self.ids(decision)),
            message=lambda: f"{decision} {sorted(ids)}; {self.describe()}",
        )


@pytest.fixture(params=LANGUAGES)
async def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Receiver]:
    command = receiver_command(request.param, request)
    folder = tmp_path / f"receiver-{request.param}"
    folder.mkdir()
    started = Receiver(command, folder, whsec())
    try:
        yield await started.start()
    finally:
        started.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
        yield client


def relay_to(receiver: Receiver, **destination: Any) -> dict[str, Any]:
    """Source "shop" (unverified) → destination "receiver", signed "standard"."""
    return {
        "sources": {"shop": {"path": "/hooks/shop", "event_type": "json:type"}},
        "destinations": {
            "receiver": {
                "url": receiver.url(),
                "sources": ["shop"],
                "sign": "standard",
                "secret": receiver.secret,
                **destination,
            }
        },
        "log": {"level": "debug"},
    }


def signed(secret: str, webhook_id: str, body: bytes, *, at: float | None = None) -> dict[str, str]:
    """The headers hookgate sends, signed by the official Standard Webhooks library."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, moment, body.decode()),
    }


async def send(
    session: aiohttp.ClientSession, receiver: Receiver, body: bytes, headers: dict[str, str]
) -> int:
    async with session.post(receiver.url(), data=body, headers=headers) as response:
        await response.read()
        return response.status


async def post_webhooks(
    session: aiohttp.ClientSession, daemon: Daemon, count: int
) -> dict[str, bytes]:
    """POST ``count`` webhooks into hookgate; {message id: body}."""
    sent: dict[str, bytes] = {}
    for n in range(count):
        body = b'{"type": "order.created", "order": %d, "note": "caf\xc3\xa9"}' % n
        status, answer = await post(session, daemon.url("/hooks/shop"), body)
        assert status == 202, answer
        sent[answer["id"]] = body
    return sent


async def wait_delivered(daemon: Daemon, message_ids: set[str]) -> None:
    """hookgate recorded a 2xx from the receiver for each message."""

    def states() -> dict[str, list[Any]]:
        return {m: [row[1] for row in daemon.delivery_rows(m)] for m in message_ids}

    await wait_for(
        lambda: all(s == ["delivered"] for s in states().values()),
        message=lambda: f"delivery states {states()}",
    )


# -- tests ----------------------------------------------------------------------------


@pytest.mark.slow  # builds examples/go, and runs Node and Go receivers
async def test_receiver_accepts_each_delivery_once(
    receiver: Receiver, start_daemon: StartDaemon, session: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(**relay_to(receiver))
    sent = await post_webhooks(session, daemon, 3)

    await receiver.wait_ids("accepted", set(sent))
    await wait_delivered(daemon, set(sent))
    accepted = {i: rest for d, i, rest in receiver.outcomes() if d == "accepted"}
    assert all("type=order.created" in accepted[m] for m in sent), accepted

    # The same webhook-id again, validly signed (as a retry after a lost answer is):
    # answered 200 and reported as a duplicate, not processed a second time.
    # (Counted, not just looked for: hookgate may itself have delivered an id twice,
    # as at-least-once allows, and the receiver must have caught that too.)
    message_id, body = next(iter(sent.items()))
    before = receiver.ids("duplicate").count(message_id)
    assert await send(session, receiver, body, signed(receiver.secret, message_id, body)) == 200
    await wait_for(
        lambda: receiver.ids("duplicate").count(message_id) == before + 1,
        message=receiver.describe,
    )
    assert receiver.ids("accepted").count(message_id) == 1, receiver.describe()

    # Signed with another secret: 401, and the id is not remembered as processed.
    forged_id = "msg_f0f0f0f0f0f0f0f0"
    forged = signed(whsec(), forged_id, body)
    assert await send(session, receiver, body, forged) == 401
    await receiver.wait_ids("rejected", {forged_id})
    assert forged_id not in receiver.ids("accepted") + receiver.ids("duplicate")


@pytest.mark.slow
async def test_receiver_deduplicates_batched_events_by_event_id(
    receiver: Receiver, start_daemon: StartDaemon, session: aiohttp.ClientSession
) -> None:
    # A full batch (3) goes at once; the long wait only keeps a slow machine from
    # sending the first event alone before the others are posted.
    daemon = await start_daemon(**relay_to(receiver, batch_max=3, batch_wait="10s"))
    sent = await post_webhooks(session, daemon, 3)

    await receiver.wait_ids("accepted", set(sent))
    await wait_delivered(daemon, set(sent))

    def batch_ids() -> set[str]:
        return {
            e["webhook_id"]
            for e in daemon.log_events()
            if e.get("event") == "delivery.delivered" and e["webhook_id"].startswith("batch_")
        }

    # The log line is written once the outcome's commit returned, which under load can
    # come after the rows read as delivered.
    await wait_for(batch_ids, message=lambda: f"no batch delivered: {daemon.stdout()[-3000:]}")
    # Each event counted under its own id, never under the batch's webhook-id.
    assert sorted(receiver.ids("accepted")) == sorted(sent), receiver.describe()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("valid", 200),
        ("four_minutes_old", 200),
        ("four_minutes_ahead", 200),
        ("six_minutes_old", 401),
        ("six_minutes_ahead", 401),
        ("tampered_body", 401),
        ("wrong_secret", 401),
        ("no_signature", 401),
    ],
)
async def test_receiver_checks_signature_and_clock_skew(
    receiver: Receiver, session: aiohttp.ClientSession, case: str, expected: int
) -> None:
    body = b'{"type": "invoice.paid", "amount": 1250}'
    webhook_id = f"msg_{secrets.token_hex(8)}"
    offsets = {
        "four_minutes_old": -240,
        "four_minutes_ahead": 240,
        "six_minutes_old": -360,
        "six_minutes_ahead": 360,
    }
    secret = whsec() if case == "wrong_secret" else receiver.secret
    headers = signed(secret, webhook_id, body, at=time.time() + offsets.get(case, 0))
    if case == "tampered_body":
        body = body.replace(b"1250", b"9999")
    if case == "no_signature":
        del headers["webhook-signature"]

    assert await send(session, receiver, body, headers) == expected
    decision = "accepted" if expected == 200 else "rejected"
    await receiver.wait_ids(decision, {webhook_id})
    assert [d for d, i, _ in receiver.outcomes() if i == webhook_id] == [decision]


def test_examples_are_documented() -> None:
    """examples/README.md tells how to run each receiver against hookgate."""
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for command in ("python receiver.py", "node receiver.js", "go run ."):
        assert command in readme, command
    assert 'sign = "standard"' in readme
