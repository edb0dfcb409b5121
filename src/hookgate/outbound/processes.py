"""Delivery processes: the HTTP client side of deliveries, on the machine's other cores.

A delivery's costliest part for the daemon's CPU is aiohttp's client (about 200 us of a
core per request, docs/benchmarks.md); everything else a delivery needs (claims,
leases, retry decisions, the circuit, rate limits, the commit of its outcome) is cheap
and stays in the daemon, beside the store's single writer. So the daemon hands each
request (target name, body, headers) to a child process over a Unix socket, and the
child sends it with its own ``HttpClient`` and answers with the outcome. The store is
never opened by a child: only the daemon writes, and claims and leases stay the
store's own.

Lifecycle and wire (``hookgate.children``): one ``hookgate serve`` to systemd; the
children ignore SIGTERM and SIGINT (the daemon drains them at its own shutdown), and
end when their socket closes or, should the daemon be killed, by ``PR_SET_PDEATHSIG``.
A child that dies fails the requests it had (an attempt "the delivery process exited",
retried with backoff like any connection error: nothing is lost) and is started again;
the service keeps running.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Mapping, Sequence

import msgspec
import structlog

from hookgate import children
from hookgate.config import LogConfig
from hookgate.outbound.client import Answer, Headers, HttpClient, Target

EXITED = Answer(None, "the delivery process exited", None, b"")
# How long a closing child gets to end its requests after the socket closes.
_EXIT_WAIT = 5.0
# Run by the child: its main is in the CLI, which may set up logging (cli/delivery.py).
_CHILD_COMMAND = "from hookgate.cli.delivery import main; main()"


class Targets(msgspec.Struct, array_like=True, tag=0):
    targets: list[Target]


class Request(msgspec.Struct, array_like=True, tag=1):
    id: int
    target: str
    body: bytes
    headers: Sequence[tuple[str, str]]


class Reply(msgspec.Struct, array_like=True):
    id: int  # 0: the child is ready (its answer says nothing)
    answer: Answer


_HELLO = 0

_ENCODER = msgspec.msgpack.Encoder()
_REPLY = msgspec.msgpack.Decoder(Reply)
_REQUEST = msgspec.msgpack.Decoder(Targets | Request)


# -- the daemon's side ------------------------------------------------------------------


class DeliveryProcesses(children.Supervisor):
    """Sends requests through ``count`` child processes, restarting any that dies."""

    kind = "delivery"
    command = _CHILD_COMMAND

    def __init__(self, count: int, log_config: LogConfig) -> None:
        super().__init__(count)
        self._log_config = log_config
        self._targets: list[Target] = []
        # Each child's requests in flight, by its slot: a dead child's are failed.
        self._inflight: list[dict[int, asyncio.Future[Answer]]] = [{} for _ in self.children]
        self._ids = itertools.count(1)
        self._turn = itertools.cycle(self.children)
        self._live = asyncio.Event()
        # Cached: asyncio.get_running_loop() costs a getpid() syscall per call on 3.11.
        self._loop = asyncio.get_running_loop()

    def arguments(self, child: children.Child) -> list[str]:
        return [self._log_config.level, self._log_config.format]

    def started(self, child: children.Child, link: children.Link) -> None:
        link.write(_ENCODER.encode(Targets(self._targets)))
        self._live.set()

    def on_frame(self, child: children.Child, frame: memoryview) -> None:
        reply = _REPLY.decode(frame)
        if reply.id == _HELLO:
            child.set_ready()
            return
        future = self._inflight[child.slot].pop(reply.id, None)
        if future is not None and not future.done():
            future.set_result(reply.answer)

    def exited(self, child: children.Child) -> None:
        if all(c.link is None for c in self.children):
            self._live.clear()
        inflight, self._inflight[child.slot] = self._inflight[child.slot], {}
        for future in inflight.values():
            if not future.done():
                future.set_result(EXITED)

    def set_targets(self, targets: Sequence[Target]) -> None:
        self._targets = list(targets)
        frame = _ENCODER.encode(Targets(self._targets))
        for child in self.children:
            if child.link is not None:
                child.link.write(frame)

    async def close_unused(self) -> None:
        """The children close their unused pools when they get the new targets."""

    async def send(self, target: str, body: bytes, headers: Headers) -> Answer:
        live = self._next_live()
        while live is None:
            await self._live.wait()
            live = self._next_live()
        child, link = live
        # str(): a header name may be multidict's istr, which msgpack does not encode.
        # A worker's list of pairs (requests.py) holds plain strings: sent as it is.
        pairs: Sequence[tuple[str, str]]
        if isinstance(headers, Mapping):
            pairs = [(str(name), value) for name, value in headers.items()]
        else:
            pairs = headers
        request_id = next(self._ids)
        future: asyncio.Future[Answer] = self._loop.create_future()
        inflight = self._inflight[child.slot]
        inflight[request_id] = future
        link.write(_ENCODER.encode(Request(request_id, target, body, pairs)))
        try:
            return await future
        finally:
            inflight.pop(request_id, None)

    def _next_live(self) -> tuple[children.Child, children.Link] | None:
        for _ in self.children:
            child = next(self._turn)
            if child.link is not None:
                return child, child.link
        return None

    async def close(self, wait: float = _EXIT_WAIT) -> None:
        """Close every child's socket, give it ``wait`` seconds to end its requests,
        then kill it; the requests still in flight fail."""
        await super().close(wait)


# -- the child's side -------------------------------------------------------------------


class _ChildServer:
    def __init__(self) -> None:
        self.client = HttpClient()
        self.link = children.Link(self.on_frame)
        self.tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()  # cached: see DeliveryProcesses

    def on_frame(self, frame: memoryview) -> None:
        message = _REQUEST.decode(frame)
        if isinstance(message, Targets):
            self.client.set_targets(message.targets)
            task = asyncio.create_task(self.client.close_unused())
        else:
            task = self._loop.create_task(self.send(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send(self, request: Request) -> None:
        answer = await self.client.send(request.target, request.body, request.headers)
        self.link.write(_ENCODER.encode(Reply(request.id, answer)))


async def serve_child(fd: int) -> None:
    """Send the requests that arrive on the socket ``fd`` until the daemon closes it."""
    server = _ChildServer()
    await children.connect(fd, server.link)
    server.link.write(_ENCODER.encode(Reply(_HELLO, Answer(None, None, None, b""))))
    # What start-up made lives as long as the process: out of the collector's way, so
    # that a full collection walks only what requests allocate (17-28 ms pauses under
    # load before, 0.1-0.5 ms after: docs/benchmarks.md, "latency at half the
    # end-to-end rate").
    # Start-up's garbage first: a frozen cycle is never collected.
    gc.collect()
    gc.freeze()
    structlog.get_logger("hookgate.delivery").info(
        "delivery_process.serving", frozen_objects=gc.get_freeze_count()
    )
    await server.link.lost
    # The daemon closed the socket: it waits for no answer any more.
    for task in server.tasks:
        task.cancel()
    await asyncio.gather(*server.tasks, return_exceptions=True)
    await server.client.close()
