"""The daemon's child processes: started, watched, restarted, and the socket they talk over.

To the operator and to systemd it stays one ``hookgate serve``: the daemon starts its
children (``python -c COMMAND FD ARGS...`` with one end of a Unix socket pair, and any
other descriptors they need, such as a listening socket), restarts one that dies
(after a growing delay if it dies young), and the children notify nothing (no
``NOTIFY_SOCKET``), ignore SIGTERM and SIGINT (the daemon decides when they stop) and
die with the daemon (``PR_SET_PDEATHSIG``), however the daemon dies.

The wire: frames of a 4-byte big-endian length and a msgpack message, written once
per loop turn however many were queued in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import cast

import structlog

log = structlog.get_logger("hookgate.children")

# A child that dies within this long of its start is restarted after a growing delay.
_STABLE_AFTER = 5.0
_RESTART_FIRST = 0.1
_RESTART_MAX = 5.0
# How long start-up waits for the children to import and say they are ready.
_READY_WAIT = 30.0
_PR_SET_PDEATHSIG = 1


class Link(asyncio.Protocol):
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
        if self.transport is not None and out:
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


class Child:
    """One slot: its running process (if any), its socket, and whether it said ready."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.process: asyncio.subprocess.Process | None = None
        self.link: Link | None = None
        self.ready: asyncio.Future[None] | None = None
        self.serving = False

    def set_ready(self) -> None:
        """The child said it is ready (its first frame)."""
        self.serving = True
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(None)


class Supervisor:
    """Runs ``count`` children of one kind, restarting any that dies until ``close()``.

    A subclass says what the children run (``command``, ``arguments``), what to send a
    new child (``started``), what a frame from one means (``on_frame``, which calls
    ``Child.set_ready`` for the child's first), what a dead one leaves behind
    (``exited``) and how to ask one to stop (``stopping``).
    """

    kind = "child"
    """The log events' prefix: ``<kind>_process.started``, ``..._process.exited``."""
    command = ""
    """Python code run by ``python -c``; ``sys.argv[1]`` is the socket's descriptor."""

    def __init__(self, count: int) -> None:
        self.children = [Child(slot) for slot in range(count)]
        self._closing = False
        self._supervisors: list[asyncio.Task[None]] = []
        # Resolved if a supervisor ends without being asked to: the daemon stops then.
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    # -- what a subclass says ------------------------------------------------------------

    def arguments(self, child: Child) -> list[str]:
        """The child's arguments after its socket's descriptor."""
        return []

    def descriptors(self, child: Child) -> Sequence[int]:
        """Other descriptors the child inherits (named in its ``arguments``)."""
        return ()

    def started(self, child: Child, link: Link) -> None:
        """A new child is connected: send what it needs first."""

    def on_frame(self, child: Child, frame: memoryview) -> None:
        raise NotImplementedError

    def exited(self, child: Child) -> None:
        """A child died or stopped: forget what it had in hand."""

    def stopping(self, child: Child, link: Link) -> None:
        """Ask a child to stop (at ``close()``); by default its socket closes."""
        link.close()

    # -- supervision ---------------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """The running children's process ids."""
        return [c.process.pid for c in self.children if c.process and c.link]

    async def start(self) -> None:
        """Start every child and wait until each is ready (or has died once)."""
        loop = asyncio.get_running_loop()
        for child in self.children:
            child.ready = loop.create_future()
            task = asyncio.create_task(self._supervise(child), name=f"{self.kind}-{child.slot}")
            task.add_done_callback(self._on_supervisor_done)
            self._supervisors.append(task)
        # Ready also when the first try died: the supervisor restarts it meanwhile.
        await asyncio.wait(
            [asyncio.ensure_future(c.ready) for c in self.children if c.ready is not None],
            timeout=_READY_WAIT,
        )

    def _on_supervisor_done(self, task: asyncio.Task[None]) -> None:
        if self._closing or self.failed.done():
            return
        error = None if task.cancelled() else task.exception()
        self.failed.set_result(f"{task.get_name()} supervisor stopped: {error!r}")

    async def _supervise(self, child: Child) -> None:
        delay = _RESTART_FIRST
        while not self._closing:
            started = time.monotonic()
            process, link = await self._spawn(child)
            returncode = await process.wait()
            await link.lost
            if child.ready is not None and not child.ready.done():
                child.ready.set_result(None)
            child.link = None
            child.serving = False
            self.exited(child)
            if self._closing:
                return
            log.error(
                f"{self.kind}_process.exited",
                slot=child.slot,
                pid=process.pid,
                returncode=returncode,
            )
            if time.monotonic() - started >= _STABLE_AFTER:
                delay = _RESTART_FIRST
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RESTART_MAX)

    async def _spawn(self, child: Child) -> tuple[asyncio.subprocess.Process, Link]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                self.command,
                str(theirs.fileno()),
                *self.arguments(child),
                pass_fds=(theirs.fileno(), *self.descriptors(child)),
                env=child_environment(),
            )
        finally:
            theirs.close()
        loop = asyncio.get_running_loop()
        _, link = await loop.create_connection(
            lambda: Link(lambda frame: self.on_frame(child, frame)), sock=ours
        )
        child.process, child.link = process, link
        self.started(child, link)
        log.info(f"{self.kind}_process.started", slot=child.slot, pid=process.pid)
        return process, link

    async def close(self, wait: float) -> None:
        """Ask every child to stop, give each ``wait`` seconds to end, then kill it."""
        self._closing = True
        for child in self.children:
            if child.link is not None:
                self.stopping(child, child.link)
        deadline = time.monotonic() + wait
        for child in self.children:
            process = child.process
            if process is None or process.returncode is not None:
                continue
            try:
                await asyncio.wait_for(process.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        for child in self.children:
            if child.link is not None:
                child.link.close()
            self.exited(child)


# -- the child's side -------------------------------------------------------------------


def prepare_child() -> None:
    """What a child does first: die with the daemon, leave SIGTERM and SIGINT to it."""
    _die_with_parent()
    # The daemon decides when its children stop: a Ctrl-C or a SIGTERM sent to the
    # whole group must not cut work that the daemon still waits for.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


async def connect(fd: int, link: Link) -> None:
    """Talk over the inherited socket ``fd`` through ``link``."""
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: link, sock=socket.socket(fileno=fd))


def _die_with_parent() -> None:
    """Linux: be killed when the daemon dies, however it dies (its socket closes too)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the daemon died before the line above ran
        os._exit(0)


def child_environment() -> dict[str, str]:
    """The daemon's environment and import path, without systemd's: only it notifies."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env
