"""The CPU of a delivery's HTTP request alone: the hand-off and the delivery process.

No store, no worker: this process builds signed requests the way a destination worker
does (``RequestBuilder.single``) and sends them through ``DeliveryProcesses`` (one
child) to a bare sink (bench/delivery.py's), ``--concurrency`` at a time, as one
destination's worker would; it reads the CPU time (user + system, from /proc) of
itself (the daemon's side: building, hand-off) and of the child over the window.
``--direct`` sends from this process with ``HttpClient`` instead (no child).
``--floor`` sends the same requests (built the same way) from this process through a
minimal keep-alive HTTP/1.1 client (an asyncio protocol and httptools' parser; no
pool limits, DNS, deny list, TLS or error mapping): what a request's client side
costs at least here, against ``HttpClient`` in ``--direct`` (aiohttp's client before
outbound/http1.py: ``--daemon-src`` with an older checkout's src/ measures that one).

Usage: python bench/sender.py [--requests 30000] [--concurrency 16] [--rounds 3]
                              [--direct | --floor] [--daemon-src DIR]
--daemon-src runs another checkout's src/ (main: before); interleave runs of both to
compare on this shared machine. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import delivery
import harness

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(url: str, args: argparse.Namespace) -> None:
    from hookgate.config import DeliveryPolicy, DestinationConfig, Duration, LogConfig
    from hookgate.outbound.client import HttpClient, Target
    from hookgate.outbound.processes import DeliveryProcesses
    from hookgate.outbound.requests import RequestBuilder
    from hookgate.store import DueDelivery

    destination = DestinationConfig(
        name="sink",
        url=url,
        sources=["github"],
        events=None,
        forward_headers=["X-GitHub-Event"],
        headers={},
        sign="standard",
        secret=SECRET,
        ordered=False,
        batch_max=1,
        batch_wait=Duration(0),
        policy=DeliveryPolicy(),
    )
    builder = RequestBuilder(destination, "bench")
    target = Target.of(destination)
    sender: HttpClient | DeliveryProcesses | FloorClient
    if args.floor:
        sender = FloorClient(url)
    elif args.direct:
        sender = HttpClient()
    else:
        sender = DeliveryProcesses(1, LogConfig())
        await sender.start()
    sender.set_targets([target])
    body = harness.webhook_body()
    headers = (
        b'{"content-type": "application/json", "user-agent": "provider/1.0",'
        b' "x-github-event": "push"}'
    )

    def due(n: int) -> DueDelivery:
        return DueDelivery(
            id=n,
            message_id=f"msg_{n:026d}",
            destination="sink",
            attempts=0,
            next_attempt_at=0.0,
            received_at=0.0,
            source="github",
            event_type="push",
            headers=headers,
            body=body,
        )

    async def one_sender(count: int, start: int) -> int:
        ok = 0
        for n in range(start, start + count):
            request = builder.single(due(n), int(time.time()))
            # A worker sends the built pairs (before them: a case-insensitive mapping).
            headers = getattr(request, "pairs", None) or request.headers
            answer = await sender.send("sink", request.body, headers)
            ok += answer.status == 200
        return ok

    per = args.requests // args.concurrency
    await asyncio.gather(*(one_sender(200, i * 200) for i in range(args.concurrency)))  # warm
    child = sender.pids[0] if isinstance(sender, DeliveryProcesses) else None
    for _ in range(args.rounds):
        mine, theirs = cpu_seconds(os.getpid()), cpu_seconds(child) if child else 0.0
        started = time.monotonic()
        oks = await asyncio.gather(*(one_sender(per, i * per) for i in range(args.concurrency)))
        elapsed = time.monotonic() - started
        mine = cpu_seconds(os.getpid()) - mine
        theirs = (cpu_seconds(child) - theirs) if child else 0.0
        total = per * args.concurrency
        print(
            f"  {total / elapsed:7.0f} req/s ({sum(oks)} ok)   this process"
            f" {mine / total * 1e6:6.1f} us/req"
            + (f"   delivery process {theirs / total * 1e6:6.1f} us/req" if child else "")
            + f"   load {os.getloadavg()[0]:.2f}"
        )
    await sender.close()


class _FloorConnection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses its answer with httptools."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.snippet = b""
        self.retry_after: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("server disconnected"))

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.snippet, self.retry_after = b"", None

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self.retry_after = value

    def on_body(self, body: bytes) -> None:
        if len(self.snippet) < 1024:
            self.snippet += body[: 1024 - len(self.snippet)]

    def on_message_complete(self) -> None:
        if self.answer is not None:
            self.answer.set_result(self.parser.get_status_code())


class FloorClient:
    """The least a client can do per request (see --floor); answers like HttpClient."""

    def __init__(self, url: str) -> None:
        import yarl

        parsed = yarl.URL(url)
        self.host, self.port = parsed.host or "", parsed.port or 80
        self.head = (
            f"POST {parsed.raw_path_qs} HTTP/1.1\r\nHost: {parsed.host_port_subcomponent}\r\n"
        )
        self.idle: list[_FloorConnection] = []
        self.loop = asyncio.get_running_loop()

    def set_targets(self, targets: object) -> None:
        pass

    async def send(self, target: str, body: bytes, headers: Any) -> Any:
        from hookgate.outbound.client import Answer

        connection = self.idle.pop() if self.idle else None
        if connection is None:
            _, connection = await self.loop.create_connection(
                _FloorConnection, self.host, self.port
            )
        answer = connection.answer = self.loop.create_future()
        timer = self.loop.call_at(self.loop.time() + 10.0, answer.cancel)
        items = headers.items() if isinstance(headers, Mapping) else headers
        lines = "".join(f"{name}: {value}\r\n" for name, value in items)
        head = f"{self.head}{lines}Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
        assert connection.transport is not None
        connection.transport.write(head + body)
        try:
            status = await answer
        finally:
            timer.cancel()
        self.idle.append(connection)
        retry_after = connection.retry_after
        return Answer(
            status,
            None if status < 300 else f"HTTP {status}",
            retry_after.decode("latin-1") if retry_after else None,
            connection.snippet,
        )

    async def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--direct", action="store_true", help="send from this process")
    parser.add_argument("--floor", action="store_true", help="a minimal client (httptools)")
    parser.add_argument("--daemon-src", type=Path, default=None, help="another checkout's src/")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        uvloop.run(run(args.url, args))
        return
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-sender-") as tmp:
        with delivery.sink(Path(tmp), "sink") as port:
            env = dict(os.environ)
            if args.daemon_src is not None:
                env["PYTHONPATH"] = str(args.daemon_src.resolve())
            # A fresh interpreter, so that --daemon-src decides which hookgate it imports.
            command = [sys.executable, __file__, "--child", "--url", f"http://127.0.0.1:{port}/in"]
            command += [f"--requests={args.requests}", f"--concurrency={args.concurrency}"]
            command += [f"--rounds={args.rounds}"]
            mode = "floor" if args.floor else "direct" if args.direct else "delivery process"
            command += {"floor": ["--floor"], "direct": ["--direct"]}.get(mode, [])
            print(f"src: {args.daemon_src or 'this checkout'} ({mode})")
            subprocess.run(command, env=env, check=True)


if __name__ == "__main__":
    main()
