"""The event loop's own work per ingested webhook, without sockets: a tight loop.

Part 1 (bench/targets.py) moves its 64 connections as one wave: the loop reads,
parses and handles the wave's requests, the group commit runs, then the loop resolves
the commits and writes the answers (docs/benchmarks.md, "A request's round trip at
part 1"). This replays that cycle in one process: the benchmark's request (~1 KB of
signed JSON, the shape wrk sends) fed to ``Connection.data_received`` of 64
connections whose transports drop the answers, the ingress's commits queued by an
outbox that resolves them all at once (as the writer's hand-off does), the loop run
until the 64 answers are written. No SQLite, no kernel: only the Python and uvloop
work per webhook of the server and of hookgate's handler.

The baseline, in the same run: the same server with an application that answers 202
at once (the server alone). Prints µs per webhook (this thread's CPU time, so that
other processes on a shared machine count less) and the ratio; asserts nothing.

Usage: python bench/ingress_loop.py [--waves 2000] [--rounds 5] [--daemon-src DIR]
--daemon-src imports hookgate from another checkout's src/ (main: before).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import delivery
import harness

CONNECTIONS = 64


class DroppingTransport(asyncio.Transport):
    """A connection's transport that counts the answers and drops them."""

    def __init__(self, written: list[int]) -> None:
        super().__init__()
        self._written = written

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._written[0] += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass  # a keep-alive timer of a finished round

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("peername", "sockname"):
            return ("127.0.0.1", 8080)
        return default

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class WaveOutbox:
    """Commits held until ``commit``, then resolved together, like one group commit."""

    identity = "bench"

    def __init__(self, accepted: Any) -> None:
        self._accepted = accepted
        self.queued: list[asyncio.Future[Any]] = []

    def accept(self, message: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queued.append(future)
        return future

    def commit(self) -> None:
        queued, self.queued = self.queued, []
        for n, future in enumerate(queued):
            future.set_result(self._accepted(f"msg_{n:026d}", False))


class AtOnce:
    """The server alone: every request answered 202 at once."""

    max_body = 1 << 20
    request_timeout = 10.0

    def __init__(self, response: Any) -> None:
        self._response = response

    async def handle(self, request: Any) -> Any:
        return self._response

    def refused(self, peer: str | None, status: int, code: str) -> None:
        raise AssertionError(f"refused: {status} {code}")


def request_bytes() -> bytes:
    body = harness.webhook_body()
    headers = delivery.signed_headers(body)
    head = [
        "POST /hooks/bench HTTP/1.1",
        "Host: 127.0.0.1:8080",
        *(f"{name}: {value}" for name, value in headers.items()),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def waves(app: Any, outbox: WaveOutbox | None, count: int) -> float:
    """Seconds per webhook over ``count`` waves of ``CONNECTIONS`` requests."""
    from hookgate.inbound import http1

    server = http1.Server(app)
    written = [0]
    connections = []
    for _ in range(CONNECTIONS):
        connection = http1.Connection(server)
        connection.connection_made(DroppingTransport(written))
        connections.append(connection)
    data = request_bytes()
    started = time.thread_time()
    for _ in range(count):
        target = written[0] + CONNECTIONS
        for connection in connections:
            connection.data_received(data)
        await asyncio.sleep(0)  # the handlers' tasks, where there are any
        if outbox is not None:
            outbox.commit()
        while written[0] < target:
            await asyncio.sleep(0)
    elapsed = time.thread_time() - started
    for connection in connections:
        connection.transport = None  # nothing to close
        connection.connection_lost(None)
    return elapsed / (count * CONNECTIONS)


def ingress(folder: Path, outbox: WaveOutbox) -> Any:
    from hookgate import config, logs
    from hookgate.inbound.listener import Ingress

    bench = delivery.Daemon(folder, {}, "full")
    cfg = config.load(bench.config, {})
    logs.configure(cfg.log)  # info, as the daemon's: no line per webhook
    return Ingress(cfg, outbox)


async def run(args: argparse.Namespace) -> None:
    from hookgate.inbound import http1
    from hookgate.store import Accepted

    with tempfile.TemporaryDirectory(prefix="hookgate-bench-loop-") as tmp:
        outbox = WaveOutbox(Accepted)
        app = ingress(Path(tmp), outbox)
        at_once = AtOnce(http1.Response(202, b'{"id":"msg_00000000000000000000000000"}'))
        await waves(app, outbox, 50)  # warm
        await waves(at_once, None, 50)
        gc.freeze()
        for _ in range(args.rounds):
            alone = await waves(at_once, None, args.waves)
            full = await waves(app, outbox, args.waves)
            print(
                f"  server alone {alone * 1e6:5.1f} us/webhook   server + ingress"
                f" {full * 1e6:5.1f} us   ingress's share {(full - alone) * 1e6:5.1f} us"
                f"   ratio {full / alone:4.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waves", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--daemon-src", type=Path, default=None, help="another checkout's src/")
    args = parser.parse_args()
    if args.daemon_src is not None:
        sys.path.insert(0, str(args.daemon_src.resolve()))
    import uvloop

    import hookgate

    print(f"hookgate from {Path(hookgate.__file__).parent}")
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
