"""Ingest processes: the ingress served by child processes, on the machine's other cores.

Per webhook, the HTTP server and hookgate's handler cost more than the store's writer
needs (docs/benchmarks.md), and all of it ran on the daemon's one event loop. With
``server.ingest_processes = N`` the daemon binds the ingress socket (so a port in use
still fails the start) and N children share it: each runs the same ``Ingress``
(routing, head checks, body limits and timeouts, verification, handshakes, extraction,
filters) and, where the daemon would commit, sends the ``NewMessage`` to the daemon
over a Unix socket. The daemon hands it to the store's writer and answers once the
commit returned: the child's 2xx still leaves only after the commit, and a store error
is the same 503 with Retry-After.

The counts stay whole in the daemon's /metrics and alert rules: the daemon counts
received and duplicate webhooks from the commits it answers, and a child reports each
rejection (source, reason) and signature failure in a frame.

Lifecycle (``hookgate.children``): one ``hookgate serve`` to systemd; a child that dies
is restarted (the socket stays bound in the daemon meanwhile, so the port keeps
answering); at shutdown the daemon asks each child to stop, and the child stops
accepting and finishes its requests (their commits) before the daemon's writer stops.
A reloaded config is sent to every child.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import pathlib
import socket
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog

from hookgate import children
from hookgate.config import Config, Duration, Size, parse_listen
from hookgate.errors import StoreError
from hookgate.inbound.listener import Counts, Ingress, tls_context
from hookgate.store import Accepted, NewMessage, Store

log = structlog.get_logger("hookgate.ingress")

# Run by the child: its main is in the CLI, which sets up logging (cli/ingest.py).
_CHILD_COMMAND = "from hookgate.cli.ingest import main; main()"
# After the shutdown grace, a child still finishing requests gets this long more.
_EXIT_WAIT = 5.0


# -- the daemon's frames to a child ------------------------------------------------------


class Configure(msgspec.Struct, array_like=True, tag=0):
    config: Config
    identity: str  # the store's: the Via name that detects loops


class Stored(msgspec.Struct, array_like=True, tag=1):
    id: int
    message_id: str
    duplicate: bool


class NotStored(msgspec.Struct, array_like=True, tag=2):
    id: int
    error: str


class Stop(msgspec.Struct, array_like=True, tag=3):
    pass


# -- a child's frames to the daemon ------------------------------------------------------


class Serving(msgspec.Struct, array_like=True, tag=0):
    pass


class Commit(msgspec.Struct, array_like=True, tag=1):
    id: int
    message: NewMessage


class Rejection(msgspec.Struct, array_like=True, tag=2):
    source: str
    reason: str


class SignatureFailure(msgspec.Struct, array_like=True, tag=3):
    source: str


def _encode_hook(value: Any) -> Any:
    """The config's own value types, as msgpack knows them."""
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, int):  # Size
        return int(value)
    if isinstance(value, float):  # Duration
        return float(value)
    raise NotImplementedError(type(value))


def _decode_hook(kind: type, value: Any) -> Any:
    if kind is Duration or kind is Size or kind is pathlib.Path:
        return kind(value)
    raise NotImplementedError(kind)


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_encode_hook)
_TO_CHILD = msgspec.msgpack.Decoder(Configure | Stored | NotStored | Stop, dec_hook=_decode_hook)
_TO_DAEMON = msgspec.msgpack.Decoder(Serving | Commit | Rejection | SignatureFailure)
_STOP = _ENCODER.encode(Stop())


# -- the daemon's side -------------------------------------------------------------------


async def bind(listen: str) -> list[socket.socket]:
    """The ingress's listening sockets, bound as the in-process ingress binds them.

    Raises OSError (a port in use, an address not here) before any child starts. One
    socket shared by every ingest process, not one SO_REUSEPORT socket each: another
    process (another hookgate) could then bind the same port too and silently take a
    share of the connections, and the connections the kernel queued for a dead child
    would wait for its restart instead of going to the others (docs/benchmarks.md).
    """
    host, port = parse_listen(listen)
    loop = asyncio.get_running_loop()
    # asyncio's own resolution and options (SO_REUSEADDR, a socket per address), the
    # same as aiohttp's TCPSite; never served here: the children accept.
    server = await loop.create_server(asyncio.Protocol, host, port, start_serving=False)
    sockets = [sock.dup() for sock in server.sockets]
    server.close()
    return sockets


class IngestProcesses(children.Supervisor):
    """``count`` children serving the ingress on ``sockets``; commits through ``store``."""

    kind = "ingest"
    command = _CHILD_COMMAND

    def __init__(
        self, count: int, config: Config, store: Store, sockets: Sequence[socket.socket]
    ) -> None:
        super().__init__(count)
        self._sockets = list(sockets)
        self._store = store
        self._log_config = config.log
        self._grace = float(config.server.shutdown_grace)
        self._counts = Counts()
        self._configure = b""
        self._committing: set[asyncio.Future[Accepted]] = set()
        self.apply(config)

    def arguments(self, child: children.Child) -> list[str]:
        fds = ",".join(str(fd) for fd in self.descriptors(child))
        return [fds, self._log_config.level, self._log_config.format]

    def descriptors(self, child: children.Child) -> list[int]:
        return [sock.fileno() for sock in self._sockets]

    def apply(self, config: Config) -> None:
        """Send a (re)loaded config to every child (and to those started later)."""
        self._counts.apply(config)
        self._configure = _ENCODER.encode(Configure(config, self._store.identity))
        for child in self.children:
            if child.link is not None:
                child.link.write(self._configure)

    def serving(self) -> str:
        """The readiness check: "ok" when every child serves the ingress."""
        count = sum(1 for child in self.children if child.serving)
        if count == len(self.children):
            return "ok"
        return f"failing: {count} of {len(self.children)} ingest processes serving"

    def started(self, child: children.Child, link: children.Link) -> None:
        link.write(self._configure)

    def stopping(self, child: children.Child, link: children.Link) -> None:
        link.write(_STOP)

    def on_frame(self, child: children.Child, frame: memoryview) -> None:
        message = _TO_DAEMON.decode(frame)
        if isinstance(message, Commit):
            self._commit(child, message)
        elif isinstance(message, Rejection):
            self._counts.rejected(message.source, message.reason)
        elif isinstance(message, SignatureFailure):
            self._counts.signature_failed(message.source)
        else:
            child.set_ready()

    def _commit(self, child: children.Child, request: Commit) -> None:
        link = child.link
        # The store's accept is a plain future (see Store.accept): no task is made here.
        committed = asyncio.ensure_future(self._store.accept(request.message))
        self._committing.add(committed)
        committed.add_done_callback(lambda done: self._committed(link, request, done))

    def _committed(
        self, link: children.Link | None, request: Commit, committed: asyncio.Future[Accepted]
    ) -> None:
        self._committing.discard(committed)
        error = None if committed.cancelled() else committed.exception()
        if error is not None or committed.cancelled():
            if not isinstance(error, StoreError):
                log.error("webhook.commit_failed", source=request.message.source, error=repr(error))
            reply = _ENCODER.encode(NotStored(request.id, str(error)))
        else:
            accepted = committed.result()
            self._counts.accepted(request.message, accepted)
            reply = _ENCODER.encode(Stored(request.id, accepted.message_id, accepted.duplicate))
        # A child that died meanwhile gets no answer: its client got no 2xx either.
        if link is not None:
            link.write(reply)

    async def close(self, wait: float | None = None) -> None:
        """Stop the children: they stop accepting and finish their requests, whose
        commits this process still makes; then close the listening sockets."""
        # New connections are refused once the children closed their copies too.
        for sock in self._sockets:
            sock.close()
        await super().close(self._grace + _EXIT_WAIT if wait is None else wait)
        if self._committing:
            await asyncio.wait(set(self._committing))


# -- the child's side --------------------------------------------------------------------


class _Daemon:
    """The child's view of the daemon: the ``Outbox`` that commits, the ``Tallies``."""

    def __init__(self) -> None:
        self.link = children.Link(self.on_frame)
        self.identity = ""
        self.waiting: dict[int, asyncio.Future[Accepted]] = {}
        self._ids = itertools.count(1)
        # Cached: asyncio.get_running_loop() costs a getpid() syscall per call on 3.11.
        self._loop = asyncio.get_running_loop()
        self.configs: asyncio.Queue[Config] = asyncio.Queue()
        self.stop = self._loop.create_future()

    def on_frame(self, frame: memoryview) -> None:
        message = _TO_CHILD.decode(frame)
        if isinstance(message, Stored):
            future = self.waiting.pop(message.id, None)
            if future is not None and not future.done():
                future.set_result(Accepted(message.message_id, message.duplicate))
        elif isinstance(message, NotStored):
            future = self.waiting.pop(message.id, None)
            if future is not None and not future.done():
                future.set_exception(StoreError(message.error))
        elif isinstance(message, Configure):
            self.identity = message.identity
            self.configs.put_nowait(message.config)
        elif not self.stop.done():
            self.stop.set_result(None)

    # Outbox
    def accept(self, message: NewMessage) -> asyncio.Future[Accepted]:
        """The daemon's answer to come; a plain future, no coroutine per request. The
        daemon answers every frame (or goes away: ``fail_waiting``), which removes it."""
        request_id = next(self._ids)
        future: asyncio.Future[Accepted] = self._loop.create_future()
        self.waiting[request_id] = future
        self.link.write(_ENCODER.encode(Commit(request_id, message)))
        return future

    def fail_waiting(self) -> None:
        """The daemon is gone: no request waiting for a commit may answer 2xx."""
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(StoreError("the daemon is gone"))

    # Tallies: the daemon counts accepted webhooks from its commits.
    def apply(self, config: Config) -> None:
        pass

    def accepted(self, message: NewMessage, accepted: Accepted) -> None:
        pass

    def rejected(self, source: str, reason: str) -> None:
        self.link.write(_ENCODER.encode(Rejection(source, reason)))

    def signature_failed(self, source: str) -> None:
        self.link.write(_ENCODER.encode(SignatureFailure(source)))


async def serve_child(fd: int, listen_fds: Sequence[int]) -> None:
    """Serve the ingress on ``listen_fds`` until the daemon says stop or goes away."""
    daemon = _Daemon()
    await children.connect(fd, daemon.link)
    config = await daemon.configs.get()
    ingress = Ingress(config, daemon, daemon)
    server = config.server
    tls = tls_context(server.tls_cert, server.tls_key)
    http_server = ingress.server(tls)
    for listen_fd in listen_fds:
        await http_server.serve_socket(socket.socket(fileno=listen_fd))
    # What start-up made lives as long as the process: out of the collector's way, so
    # that its collections walk only what requests allocate (docs/benchmarks.md:
    # "the group commit drained on the SQLite thread").
    # Start-up's garbage first: a frozen cycle is never collected.
    gc.collect()
    gc.freeze()
    daemon.link.write(_ENCODER.encode(Serving()))
    reloads = asyncio.create_task(_apply_configs(daemon, ingress))
    await asyncio.wait([daemon.stop, daemon.link.lost], return_when=asyncio.FIRST_COMPLETED)
    if daemon.link.lost.done():
        daemon.fail_waiting()
    # Stop accepting; the requests in flight get their commits' answers.
    await http_server.close(float(server.shutdown_grace))
    reloads.cancel()
    daemon.link.close()


async def _apply_configs(daemon: _Daemon, ingress: Ingress) -> None:
    while True:
        config = await daemon.configs.get()
        ingress.apply(config)
        log.debug("ingest_process.configured", sources=sorted(config.sources))
