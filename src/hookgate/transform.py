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
import contextlib
import os
import re
import resource
import struct
import sys
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
_BATCH = 64
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
        outputs: Iterator[Any] = iter(program.input_text(document.decode()))
        output = next(outputs, _NONE)
        extra = next(outputs, _NONE)
    except ValueError as exc:
        raise TransformFailed(f"jq: {_jq_message(exc)}") from None
    if output is _NONE:
        raise TransformFailed("the program produced no output")
    if extra is not _NONE:
        raise TransformFailed("the program produced more than one output")
    return _request_of(output, max_size)


_NONE = object()


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


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None  # noqa: S101 - started with pipes
        assert process.stdout is not None  # noqa: S101
        self.stdin = process.stdin
        self.stdout = process.stdout

    @classmethod
    async def start(cls) -> _Worker:
        # The child finds hookgate where this process did (a venv, a zipapp's folder).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hookgate.transform",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        return cls(process)

    async def send(self, jobs: list[_Job]) -> None:
        self.stdin.write(b"".join(job.frame for job in jobs))
        await self.stdin.drain()

    async def next_answer(self) -> _Answer:
        head = await self.stdout.readexactly(_FRAME.size)
        kind, value = msgspec.msgpack.decode(await self.stdout.readexactly(_FRAME.unpack(head)[0]))
        return kind, value

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()


class TransformPool:
    """Runs jq programs in ``WORKERS`` processes, each run within a time and size limit.

    Each worker takes the runs waiting when it is free, up to ``_BATCH`` at once, in
    one write (under load, one pipe round trip serves many deliveries), and answers
    them one by one; each run's time limit counts from the answer before it. A run
    that overruns fails, its process is killed and replaced, and the runs queued
    behind it go back to the queue, untouched.
    """

    def __init__(self, workers: int = WORKERS) -> None:
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._workers = workers
        self._slots: list[asyncio.Task[None]] = []
        self._running: set[_Worker] = set()

    async def run(
        self, program: str, request: TransformInput, *, timeout: float, max_size: int
    ) -> Transformed:
        """``program`` run on ``request``; TransformFailed when it fails or overruns."""
        if not self._slots:
            self._slots = [
                asyncio.create_task(self._serve(), name="transform-worker")
                for _ in range(self._workers)
            ]
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
        answer = asyncio.get_running_loop().create_future()
        job = _Job(_FRAME.pack(len(encoded)) + encoded, timeout, answer)
        self._jobs.put_nowait(job)
        kind, value = await job.answer
        if kind != "ok":
            raise TransformFailed(value)
        body, headers = value
        return Transformed(body, tuple((name, text) for name, text in headers))

    async def _serve(self) -> None:
        """One worker slot: start a process when needed, feed it batches, read answers."""
        worker: _Worker | None = None
        try:
            while True:
                batch = [await self._jobs.get()]
                while len(batch) < _BATCH and not self._jobs.empty():
                    batch.append(self._jobs.get_nowait())
                batch = [job for job in batch if not job.answer.done()]  # callers gone
                if not batch:
                    continue
                if worker is None:
                    try:
                        worker = await _Worker.start()
                    except OSError as exc:
                        for job in batch:
                            _fail(job, f"cannot start a transform process: {exc}")
                        continue
                    self._running.add(worker)
                if not await self._run_batch(worker, batch):
                    self._running.discard(worker)
                    await asyncio.shield(worker.kill())
                    worker = None
        finally:
            if worker is not None:
                self._running.discard(worker)
                await asyncio.shield(worker.kill())

    async def _run_batch(self, worker: _Worker, batch: list[_Job]) -> bool:
        """Run ``batch`` on ``worker``; False when the worker must be replaced."""
        try:
            return await self._answers(worker, batch)
        except asyncio.CancelledError:
            for job in batch:
                _fail(job, "hookgate is stopping")
            raise

    async def _answers(self, worker: _Worker, batch: list[_Job]) -> bool:
        try:
            await worker.send(batch)
        except ConnectionError:
            self._requeue(batch)
            return False
        for done, job in enumerate(batch):
            try:
                async with asyncio.timeout(job.timeout):
                    answer = await worker.next_answer()
            except TimeoutError:
                _fail(job, _overran(job.timeout))
            except (asyncio.IncompleteReadError, ConnectionError):
                _fail(job, "the transform process died (out of memory, or a crash in jq)")
            else:
                if not job.answer.done():
                    job.answer.set_result(answer)
                continue
            self._requeue(batch[done + 1 :])
            return False
        return True

    def _requeue(self, jobs: list[_Job]) -> None:
        for job in jobs:
            self._jobs.put_nowait(job)

    async def close(self) -> None:
        """Stop every worker process; runs still waiting fail."""
        for slot in self._slots:
            slot.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)
        self._slots = []
        while not self._jobs.empty():
            _fail(self._jobs.get_nowait(), "hookgate is stopping")


def _fail(job: _Job, reason: str) -> None:
    if not job.answer.done():
        job.answer.set_exception(TransformFailed(reason))


def _overran(timeout: float) -> str:
    return f"the program ran longer than transform_timeout ({timeout:g}s) and was stopped"


if __name__ == "__main__":
    _worker_main()
