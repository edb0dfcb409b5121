"""Transformations: a destination's jq program reshapes each delivery's body and headers.

The contract (docs/interfaces.md, "Transformations"): the program reads
``{"body", "headers", "source", "event_type", "message_id"}`` (the stored inbound
JSON body and headers) and must output one object ``{"body": ..., "headers":
{...}}``: ``body`` (when present) is sent instead of the inbound body, as JSON;
``headers`` are set on the outbound request (never hookgate's own).

jq runs in C and a thread cannot be interrupted, so programs run in a small pool
of worker processes (``TransformPool``): a run that outlives its time limit has its
process killed and replaced, and an address-space limit stops one that eats
memory. Each worker compiles a program once and keeps it for the next runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import resource
import struct
import subprocess
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jq
import msgspec
import orjson

from hookgate import wire
from hookgate.errors import HookgateError

WORKERS = 2
"""Worker processes per daemon (started on first use; each ~25 MiB resident)."""
WORKER_NICENESS = 10
"""Added to the workers' nice value: under CPU contention the ingress goes first."""
MEMORY_LIMIT = 1024**3
"""A worker's address space, so that a program that allocates without end fails."""
_CACHED_PROGRAMS = 64
# Set by hookgate or by the HTTP client: a transform cannot replace them.
_RESERVED_HEADERS = wire.OWN_HEADERS | {"content-length", "host", "transfer-encoding", "connection"}
# RFC 9110 5.1 and 5.5: a header name is a token; a value holds no control character but tab.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_OUTPUT_KEYS = frozenset({"body", "headers"})


class TransformFailed(HookgateError):
    """The transform did not produce a request; the message says why (shown on the delivery)."""


@dataclass(frozen=True, slots=True)
class Transformed:
    """What a transform made of one delivery."""

    body: bytes | None
    """The new body (JSON), or None to send the inbound body as it is."""
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TransformInput:
    """One delivery as the program reads it (headers: the stored orjson object)."""

    body: bytes
    headers: bytes
    source: str
    event_type: str | None
    message_id: str


def compile_error(program: str) -> str | None:
    """Why jq cannot compile ``program``, or None when it can (checked at load)."""
    try:
        jq.compile(program)
    except ValueError as exc:
        return _jq_message(exc)
    return None


def run_program(
    program: Any, request: TransformInput, max_size: int
) -> tuple[bytes | None, tuple[tuple[str, str], ...]]:
    """Run compiled ``program`` on ``request`` (in a worker); TransformFailed says why not."""
    try:
        orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise TransformFailed("the inbound body is not JSON") from None
    document = orjson.dumps(
        {
            # Fragments: the bytes were checked just above (the body) or written by
            # hookgate (the headers), so nothing can be smuggled in beside them.
            "body": orjson.Fragment(request.body),
            "headers": orjson.Fragment(request.headers),
            "source": request.source,
            "event_type": request.event_type,
            "message_id": request.message_id,
        }
    )
    try:
        output, extra = _first_two_outputs(program, document.decode())
    except ValueError as exc:
        raise TransformFailed(f"jq: {_jq_message(exc)}") from None
    if output is _NONE:
        raise TransformFailed("the program produced no output")
    if extra is not _NONE:
        raise TransformFailed("the program produced more than one output")
    return _request_of(output, max_size)


_NONE = object()


def _first_two_outputs(program: Any, document: str) -> tuple[Any, Any]:
    """The program's first two outputs on ``document`` (``_NONE`` where there is none)."""
    outputs: Iterator[Any] = iter(program.input_text(document))
    try:
        return next(outputs, _NONE), next(outputs, _NONE)
    finally:
        # jq's result iterator (jq 1.13) crashes the interpreter (SIGSEGV) when the
        # garbage collector frees it as part of a cycle (tests/unit/test_transform.py
        # shows it). A traceback keeps this frame, and a caller that holds the
        # exception (`except ... as`, pytest.raises) makes a cycle of it; so the
        # iterator leaves the frame here, to be freed by its reference count.
        del outputs


def _request_of(output: Any, max_size: int) -> tuple[bytes | None, tuple[tuple[str, str], ...]]:
    if not isinstance(output, dict) or not output.keys() <= _OUTPUT_KEYS:
        raise TransformFailed(
            'the program must output an object with "body" and/or "headers", got '
            + _preview(output)
        )
    body = orjson.dumps(output["body"]) if "body" in output else None
    headers = _headers_of(output.get("headers", {}))
    size = (len(body) if body else 0) + sum(len(k) + len(v) for k, v in headers)
    if size > max_size:
        raise TransformFailed(f"the output is {size} bytes, over transform_max_size ({max_size})")
    return body, headers


def _headers_of(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise TransformFailed(f'"headers" must be an object, got {_preview(value)}')
    headers = []
    for name, text in value.items():
        if not isinstance(text, str):
            raise TransformFailed(f"header {name!r} must be a string, got {_preview(text)}")
        if not _HEADER_NAME.match(name):
            raise TransformFailed(f"{name!r} is not a valid header name")
        if _HEADER_VALUE_BAD.search(text):
            raise TransformFailed(f"the value of header {name!r} holds a control character")
        if name.lower() in _RESERVED_HEADERS:
            continue  # hookgate's own headers are never replaced (docs/interfaces.md 2)
        headers.append((name, text))
    return tuple(headers)


def _preview(value: Any) -> str:
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode(errors="replace")
    return text if len(text) <= 80 else f"{text[:77]}..."


def _jq_message(exc: ValueError) -> str:
    """jq's own words, on one line."""
    return " ".join(str(exc).split())[:500]


# -- worker processes ---------------------------------------------------------------
# A worker is `python -m hookgate.transform`, spoken to over its stdin and stdout in
# frames: a 4-byte big-endian length, then msgpack. A plain child process (not
# multiprocessing) so that nothing of the parent's __main__ is imported again.

_FRAME = struct.Struct(">I")
_Answer = tuple[str, Any]


def _worker_main() -> None:
    """A worker process: answer each request it reads, in order, until its stdin closes."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    with contextlib.suppress(OSError):
        # Transforms are delivery work: on a saturated machine they yield to the
        # ingress (which answers providers) and let the backlog wait in the outbox.
        os.nice(WORKER_NICENESS)
    frames_in = os.fdopen(os.dup(0), "rb")  # buffered: a batch of frames in few reads
    frames_out = os.fdopen(os.dup(1), "wb", buffering=0)
    # Whatever jq itself might print must not land among the frames.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    programs: dict[str, Any] = {}
    while True:
        head = frames_in.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return
        size = _FRAME.unpack(head)[0]
        payload = frames_in.read(size)
        if len(payload) < size:
            return
        text, max_size, *fields = msgspec.msgpack.decode(payload)
        answer = _answer(programs, text, TransformInput(*fields), max_size)
        encoded = msgspec.msgpack.encode(answer)
        # One answer at a time, as soon as it is known: the parent times each run.
        frames_out.write(_FRAME.pack(len(encoded)) + encoded)


def _answer(programs: dict[str, Any], text: str, request: TransformInput, max_size: int) -> _Answer:
    try:
        program = programs.get(text)
        if program is None:
            if len(programs) >= _CACHED_PROGRAMS:
                programs.clear()
            program = programs[text] = jq.compile(text)
        return ("ok", run_program(program, request, max_size))
    except TransformFailed as exc:
        return ("failed", str(exc))
    except MemoryError:
        return ("failed", "the program ran out of memory")
    except Exception as exc:  # a jq binding surprise: reported, the worker goes on
        return ("failed", f"{type(exc).__name__}: {exc}"[:500])


@dataclass(slots=True)
class _Job:
    """One run asked of the pool: its frame, its limit, and who waits for it."""

    frame: bytes
    timeout: float
    answer: asyncio.Future[_Answer]


class _Worker(asyncio.SubprocessProtocol):
    """One worker process. Jobs are written as they come (pipelined) and answered in
    order; the first one in flight is the one running, and its time limit runs from
    the answer before it (or from its sending, on an idle worker)."""

    def __init__(self, pool: TransformPool) -> None:
        self.pool = pool
        self.inflight: collections.deque[_Job] = collections.deque()
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.SubprocessTransport | None = None
        self.stdin: asyncio.WriteTransport | None = None
        self.gone = False
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports do not derive from asyncio's classes: cast, not check.)
        self.transport = typing.cast(asyncio.SubprocessTransport, transport)
        self.stdin = typing.cast(asyncio.WriteTransport, self.transport.get_pipe_transport(0))

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _FRAME.size:
            size = _FRAME.unpack_from(self.buffer)[0]
            end = _FRAME.size + size
            if len(self.buffer) < end:
                return
            kind, value = msgspec.msgpack.decode(bytes(self.buffer[_FRAME.size : end]))
            del self.buffer[:end]
            if not self.inflight:  # an answer nobody asked for: not a worker we know
                self._end("the transform process answered out of turn")
                return
            job = self.inflight.popleft()
            if not job.answer.done():
                job.answer.set_result((kind, value))
            self._time_head()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
        self._end("the transform process died (out of memory, or a crash in jq)")

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0 and not self.gone:  # its stdin closed under us: it is going
            self._end("the transform process died (out of memory, or a crash in jq)")

    # -- the pool's side

    def submit(self, job: _Job) -> None:
        assert self.stdin is not None  # noqa: S101 - set once started
        self.inflight.append(job)
        self.stdin.write(job.frame)
        if len(self.inflight) == 1:
            self._time_head()

    def _time_head(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.inflight:
            head = self.inflight[0]
            self.timer = asyncio.get_running_loop().call_later(head.timeout, self._overran)

    def _overran(self) -> None:
        self.timer = None
        self._end(_overran(self.inflight[0].timeout))

    def _end(self, reason: str) -> None:
        """The head job fails with ``reason``; the process goes, the others are re-run."""
        if self.gone:
            return
        self.gone = True
        if self.timer is not None:
            self.timer.cancel()
        if self.inflight:
            _fail(self.inflight.popleft(), reason)
        waiting = list(self.inflight)
        self.inflight.clear()
        self.kill()
        self.pool.retire(self, waiting)

    def kill(self) -> None:
        self.gone = True
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(ProcessLookupError):
                self.transport.kill()
            self.transport.close()


class TransformPool:
    """Runs jq programs in ``WORKERS`` processes, each run within a time and size limit.

    A run goes to the worker with the fewest runs in flight, written to it at once
    (under load, runs queue in the pipe instead of round-tripping one by one). A run
    that overruns fails, its process is killed and replaced, and the runs queued
    behind it are run again on another worker.
    """

    def __init__(self, workers: int = WORKERS) -> None:
        self._size = workers
        self._workers: list[_Worker] = []
        self._starting = asyncio.Lock()
        self._closed = False

    async def run(
        self, program: str, request: TransformInput, *, timeout: float, max_size: int
    ) -> Transformed:
        """``program`` run on ``request``; TransformFailed when it fails or overruns."""
        encoded = msgspec.msgpack.encode(
            [
                program,
                int(max_size),
                request.body,
                request.headers,
                request.source,
                request.event_type,
                request.message_id,
            ]
        )
        answer: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        await self._submit(_Job(_FRAME.pack(len(encoded)) + encoded, timeout, answer))
        kind, value = await answer
        if kind != "ok":
            raise TransformFailed(value)
        body, headers = value
        return Transformed(body, tuple((name, text) for name, text in headers))

    async def _submit(self, job: _Job) -> None:
        worker = self._least_busy()
        if worker is None or (worker.inflight and len(self._workers) < self._size):
            worker = await self._start() or worker
        if worker is None:
            _fail(job, "cannot start a transform process")
            return
        worker.submit(job)

    def _least_busy(self) -> _Worker | None:
        return min(self._workers, key=lambda w: len(w.inflight), default=None)

    async def _start(self) -> _Worker | None:
        async with self._starting:
            if self._closed:
                return None
            idle = self._least_busy()
            if idle is not None and (not idle.inflight or len(self._workers) >= self._size):
                return idle
            # The child finds hookgate where this process did (a venv, a zipapp's folder).
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            try:
                _, worker = await asyncio.get_running_loop().subprocess_exec(
                    lambda: _Worker(self),
                    sys.executable,
                    "-m",
                    "hookgate.transform",
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            except OSError:
                return idle
            self._workers.append(worker)
            return worker

    def retire(self, worker: _Worker, waiting: list[_Job]) -> None:
        """A worker was killed: forget it, and run what it still held elsewhere."""
        if worker in self._workers:
            self._workers.remove(worker)
        for job in waiting:
            if self._closed:
                _fail(job, "hookgate is stopping")
            elif not job.answer.done():
                asyncio.get_running_loop().create_task(self._submit(job))

    @property
    def processes(self) -> int:
        """Worker processes running now."""
        return len(self._workers)

    async def close(self) -> None:
        """Stop every worker process; runs still in flight fail."""
        self._closed = True
        workers, self._workers = self._workers, []
        for worker in workers:
            for job in worker.inflight:
                _fail(job, "hookgate is stopping")
            worker.inflight.clear()
            worker.kill()
        await asyncio.gather(*(worker.exited for worker in workers))


def _fail(job: _Job, reason: str) -> None:
    if not job.answer.done():
        job.answer.set_exception(TransformFailed(reason))


def _overran(timeout: float) -> str:
    return f"the program ran longer than transform_timeout ({timeout:g}s) and was stopped"


if __name__ == "__main__":
    _worker_main()
