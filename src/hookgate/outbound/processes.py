"""Delivery processes: the HTTP client side of deliveries, on the machine's other cores.

A delivery's costliest part for the daemon's CPU is aiohttp's client (about 200 us of a
core per request, docs/benchmarks.md); everything else a delivery needs (claims,
leases, retry decisions, the circuit, rate limits, the commit of its outcome) is cheap
and stays in the daemon, beside the store's single writer. So the daemon hands each
request (target name, body, headers) to a child process over a Unix socket, and the
child sends it with its own ``HttpClient`` and answers with the outcome. The store is
never opened by a child: only the daemon writes, and claims and leases stay the
store's own.

To the operator and to systemd it stays one ``hookgate serve``: the children are
started and restarted by the daemon, notify nothing, ignore SIGTERM and SIGINT (the
daemon drains them at its own shutdown), and end when their socket closes or, should
the daemon be killed, by ``PR_SET_PDEATHSIG``. A child that dies fails the requests it
had (an attempt "the delivery process exited", retried with backoff like any
connection error: nothing is lost) and is started again; the service keeps running.

The wire: frames of a 4-byte big-endian length and a msgpack message.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import msgspec
import structlog

from hookgate.config import LogConfig
from hookgate.outbound.client import Answer, Headers, HttpClient, Target

log = structlog.get_logger("hookgate.dispatch")

EXITED = Answer(None, "the delivery process exited", None, b"")
# A child that dies within this long of its start is restarted after a growing delay.
_STABLE_AFTER = 5.0
_RESTART_FIRST = 0.1
_RESTART_MAX = 5.0
# How long start-up waits for the children to import and say they are ready.
_READY_WAIT = 30.0
# How long a closing child gets to end its requests after the socket closes.
_EXIT_WAIT = 5.0
_PR_SET_PDEATHSIG = 1
# Run by the child: its main is in the CLI, which may set up logging (cli/delivery.py).
_CHILD_COMMAND = "from hookgate.cli.delivery import main; main()"


class Targets(msgspec.Struct, array_like=True, tag=0):
    targets: list[Target]


class Request(msgspec.Struct, array_like=True, tag=1):
    id: int
    target: str
    body: bytes
    headers: list[tuple[str, str]]


class Reply(msgspec.Struct, array_like=True):
    id: int  # 0: the child is ready (its answer says nothing)
    answer: Answer


_HELLO = 0


class _Link(asyncio.Protocol):
    """One end of the socket: writes frames (coalesced per loop turn), reads frames."""

    def __init__(self, on_frame: Callable[[memoryview], None]) -> None:
        self._on_frame = on_frame
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.lost = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)

    def write(self, payload: bytes) -> None:
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(len(payload).to_bytes(4, "big"))
        self._out.append(payload)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        end = len(buffer)
        view = memoryview(buffer)
        try:
            while end - start >= 4:
                size = int.from_bytes(view[start : start + 4], "big")
                if end - start - 4 < size:
                    break
                self._on_frame(view[start + 4 : start + 4 + size])
                start += 4 + size
        finally:
            view.release()
        del buffer[:start]

    def close(self) -> None:
        self._flush()
        if self.transport is not None:
            self.transport.close()


# -- the daemon's side ------------------------------------------------------------------


class _Child:
    """One slot: its running process (if any), its socket and its requests in flight."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.process: asyncio.subprocess.Process | None = None
        self.link: _Link | None = None
        self.inflight: dict[int, asyncio.Future[Answer]] = {}
        self.ready: asyncio.Future[None] | None = None

    def on_frame(self, frame: memoryview) -> None:
        reply = _REPLY.decode(frame)
        if reply.id == _HELLO:
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(None)
            return
        future = self.inflight.pop(reply.id, None)
        if future is not None and not future.done():
            future.set_result(reply.answer)

    def fail_inflight(self) -> None:
        inflight, self.inflight = self.inflight, {}
        for future in inflight.values():
            if not future.done():
                future.set_result(EXITED)


_ENCODER = msgspec.msgpack.Encoder()
_REPLY = msgspec.msgpack.Decoder(Reply)
_REQUEST = msgspec.msgpack.Decoder(Targets | Request)


class DeliveryProcesses:
    """Sends requests through ``count`` child processes, restarting any that dies."""

    def __init__(self, count: int, log_config: LogConfig) -> None:
        self._children = [_Child(slot) for slot in range(count)]
        self._log_config = log_config
        self._targets: list[Target] = []
        self._ids = itertools.count(1)
        self._turn = itertools.cycle(self._children)
        self._live = asyncio.Event()
        self._closing = False
        self._supervisors: list[asyncio.Task[None]] = []
        # Cached: asyncio.get_running_loop() costs a getpid() syscall per call on 3.11.
        self._loop = asyncio.get_running_loop()
        # Resolved if a supervisor ends without being asked to: the daemon stops then.
        self.failed: asyncio.Future[str] = self._loop.create_future()

    @property
    def pids(self) -> list[int]:
        """The running children's process ids."""
        return [c.process.pid for c in self._children if c.process and c.link]

    async def start(self) -> None:
        """Start every child and wait until each is ready to send (or has died)."""
        loop = asyncio.get_running_loop()
        for child in self._children:
            child.ready = loop.create_future()
            task = asyncio.create_task(self._supervise(child), name=f"delivery-{child.slot}")
            task.add_done_callback(self._on_supervisor_done)
            self._supervisors.append(task)
        # Ready also when the first try died: the supervisor restarts it meanwhile.
        await asyncio.wait(
            [asyncio.ensure_future(c.ready) for c in self._children if c.ready is not None],
            timeout=_READY_WAIT,
        )

    def _on_supervisor_done(self, task: asyncio.Task[None]) -> None:
        if self._closing or self.failed.done():
            return
        error = None if task.cancelled() else task.exception()
        self.failed.set_result(f"{task.get_name()} supervisor stopped: {error!r}")

    def set_targets(self, targets: Sequence[Target]) -> None:
        self._targets = list(targets)
        frame = _ENCODER.encode(Targets(self._targets))
        for child in self._children:
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
        items = headers.items() if isinstance(headers, Mapping) else headers
        pairs = [(str(name), value) for name, value in items]
        request_id = next(self._ids)
        future: asyncio.Future[Answer] = self._loop.create_future()
        child.inflight[request_id] = future
        link.write(_ENCODER.encode(Request(request_id, target, body, pairs)))
        try:
            return await future
        finally:
            child.inflight.pop(request_id, None)

    def _next_live(self) -> tuple[_Child, _Link] | None:
        for _ in self._children:
            child = next(self._turn)
            if child.link is not None:
                return child, child.link
        return None

    async def _supervise(self, child: _Child) -> None:
        delay = _RESTART_FIRST
        while not self._closing:
            started = time.monotonic()
            process, link = await self._spawn(child)
            returncode = await process.wait()
            await link.lost
            if child.ready is not None and not child.ready.done():
                child.ready.set_result(None)
            child.link = None
            if all(c.link is None for c in self._children):
                self._live.clear()
            child.fail_inflight()
            if self._closing:
                return
            log.error(
                "delivery_process.exited",
                slot=child.slot,
                pid=process.pid,
                returncode=returncode,
            )
            if time.monotonic() - started >= _STABLE_AFTER:
                delay = _RESTART_FIRST
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RESTART_MAX)

    async def _spawn(self, child: _Child) -> tuple[asyncio.subprocess.Process, _Link]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CHILD_COMMAND,
                str(theirs.fileno()),
                self._log_config.level,
                self._log_config.format,
                pass_fds=(theirs.fileno(),),
                env=_child_environment(),
            )
        finally:
            theirs.close()
        loop = asyncio.get_running_loop()
        _, link = await loop.create_connection(lambda: _Link(child.on_frame), sock=ours)
        link.write(_ENCODER.encode(Targets(self._targets)))
        child.process, child.link = process, link
        self._live.set()
        log.info("delivery_process.started", slot=child.slot, pid=process.pid)
        return process, link

    async def close(self) -> None:
        """Close every child's socket, give it time to end its requests, then kill it."""
        self._closing = True
        for child in self._children:
            if child.link is not None:
                child.link.close()
        for child in self._children:
            process = child.process
            if process is None or process.returncode is not None:
                continue
            try:
                await asyncio.wait_for(process.wait(), _EXIT_WAIT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        for child in self._children:
            child.fail_inflight()


# -- the child's side -------------------------------------------------------------------


def prepare_child() -> None:
    """What a delivery process does first: die with the daemon, leave signals to it."""
    _die_with_parent()
    # The daemon decides when its children stop: a Ctrl-C or a SIGTERM sent to the
    # whole group must not cut requests that the daemon still waits for.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _die_with_parent() -> None:
    """Linux: be killed when the daemon dies, however it dies (its socket closes too)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the daemon died before the line above ran
        os._exit(0)


def _child_environment() -> dict[str, str]:
    """The daemon's environment and import path, without systemd's: only it notifies."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


class _ChildServer:
    def __init__(self) -> None:
        self.client = HttpClient()
        self.link = _Link(self.on_frame)
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
    sock = socket.socket(fileno=fd)
    server = _ChildServer()
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: server.link, sock=sock)
    server.link.write(_ENCODER.encode(Reply(_HELLO, Answer(None, None, None, b""))))
    await server.link.lost
    # The daemon closed the socket: it waits for no answer any more.
    for task in server.tasks:
        task.cancel()
    await asyncio.gather(*server.tasks, return_exceptions=True)
    await server.client.close()
