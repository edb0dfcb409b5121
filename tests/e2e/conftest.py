"""End-to-end fixtures: the real daemon as a subprocess, real HTTP servers downstream.

Nothing here is mocked. ``Daemon`` runs ``python -m hookgate serve`` on a TOML file
written into ``tmp_path``; ``Downstream`` is an aiohttp server on 127.0.0.1 that
records every request and answers from a script. Tests wait for conditions with
``wait_for`` (a deadline, never a fixed sleep) and never assert how fast anything is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

HOST = "127.0.0.1"
# Bounds for waiting, not expectations of speed: a healthy run is far below them.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
DEFAULT_WAIT = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = DEFAULT_WAIT,
    *,
    interval: float = 0.02,
    message: str | Callable[[], str] = "",
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"condition not met within {timeout}s: {text or predicate}")
        await asyncio.sleep(interval)


# -- TOML ---------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer: nested mappings become [dotted.tables]."""
    lines: list[str] = []

    def table(node: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, Mapping) or k == "headers"}
        tables = {k: v for k, v in node.items() if k not in scalars}
        if prefix and (scalars or not tables):
            lines.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
        for key, value in scalars.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        if scalars:
            lines.append("")
        for key, value in tables.items():
            table(value, (*prefix, key))

    table(data, ())
    return "\n".join(lines) + "\n"


# -- the daemon ---------------------------------------------------------------------


def serve_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "hookgate", "serve", "-c", str(config_path)]


def clean_env() -> dict[str, str]:
    """This process's environment without systemd's notification variables."""
    return {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key != "headers":
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class Daemon:
    """``hookgate serve`` in a subprocess, on its own ports, config and database."""

    def __init__(self, folder: Path, config: Mapping[str, Any]) -> None:
        self.folder = folder
        self.ingress_port = free_port()
        self.admin_port = free_port()
        base: dict[str, Any] = {
            "server": {"listen": f"{HOST}:{self.ingress_port}", "shutdown_grace": "5s"},
            "admin": {"listen": f"{HOST}:{self.admin_port}"},
            "storage": {"path": "hookgate.db"},
            "log": {"level": "info", "format": "json"},
        }
        self.config = _merge(base, config)
        self.config_path = folder / "hookgate.toml"
        self.config_path.write_text(to_toml(self.config), encoding="utf-8")
        self.db_path = folder / "hookgate.db"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._files: list[IO[bytes]] = []
        self.stdout_paths: list[Path] = []
        self.stderr_paths: list[Path] = []

    # URLs

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.ingress_port}{path}"

    def admin_url(self, path: str) -> str:
        return f"http://{HOST}:{self.admin_port}{path}"

    # lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, timeout: float = START_TIMEOUT) -> None:
        assert not self.running, "the daemon is already running"
        self.runs += 1
        stdout_path = self.folder / f"daemon-{self.runs}.stdout"
        stderr_path = self.folder / f"daemon-{self.runs}.stderr"
        self.stdout_paths.append(stdout_path)
        self.stderr_paths.append(stderr_path)
        self.proc = self.spawn(stdout_path, stderr_path)
        await wait_for(self._ready, timeout, interval=0.05, message=self._startup_failure)

    def spawn(self, stdout_path: Path, stderr_path: Path) -> subprocess.Popen[bytes]:
        """Run ``hookgate serve`` on the config, its output written to these files."""
        stdout = stdout_path.open("wb")
        stderr = stderr_path.open("wb")
        self._files += [stdout, stderr]
        return subprocess.Popen(
            serve_command(self.config_path),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=self.folder,
            env=clean_env(),
        )

    async def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(self._startup_failure())
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    self.admin_url("/readyz"), timeout=aiohttp.ClientTimeout(total=2)
                ) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _startup_failure(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        return (
            f"hookgate did not become ready (exit code {code});\n"
            f"stderr:\n{self.stderr()}\nstdout:\n{self.stdout()[-4000:]}"
        )

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        proc = self.proc
        assert proc is not None
        await wait_for(lambda: proc.poll() is not None, timeout, interval=0.02, message="exit")
        return int(proc.returncode)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait for the exit code."""
        self.signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to flush, close or answer anything."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    async def restart(self) -> None:
        if self.running:
            self.kill()
        await self.start()

    async def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for file in self._files:
            file.close()
        self._files.clear()

    # what it said

    def stdout(self) -> str:
        for file in self._files:
            file.flush()
        return "".join(p.read_text(errors="replace") for p in self.stdout_paths if p.exists())

    def stderr(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.stderr_paths if p.exists())

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.stdout().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    # what it answers and stores

    async def readyz(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.admin_url("/readyz")) as response,
        ):
            body: dict[str, Any] = await response.json()
            return body

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the daemon's database read-only (WAL lets us read beside its writer)."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def delivery_states(self) -> dict[str, int]:
        """How many deliveries are in each state (pending, delivered, dead)."""
        return dict(self.query("SELECT state, count(*) FROM deliveries GROUP BY state"))

    def delivery_rows(self, message_id: str) -> list[tuple[Any, ...]]:
        """(destination, state, attempts, last_status) of each delivery of ``message_id``."""
        number = int(message_id.removeprefix("msg_"), 16)
        return self.query(
            "SELECT destination, state, attempts, last_status FROM deliveries"
            " WHERE message_id = ? ORDER BY destination",
            (number,),
        )


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Daemon]]]:
    """``await start_daemon(sources=..., destinations=..., delivery=...)`` → a ready Daemon."""
    daemons: list[Daemon] = []

    async def start(**config: Any) -> Daemon:
        folder = tmp_path / f"hookgate-{len(daemons)}"
        folder.mkdir()
        daemon = Daemon(folder, config)
        daemons.append(daemon)
        await daemon.start()
        return daemon

    yield start
    for daemon in daemons:
        await daemon.close()


# -- the downstream -----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """How the downstream answers one request."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds before answering
    hang: bool = False  # never answer (until the server closes)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def attempt(self) -> int:
        return int(self.headers["Hookgate-Attempt"])


class Downstream:
    """A recording HTTP server; answers come from ``script`` (then ``default``)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[Received] = []
        self.script: collections.deque[Reply] = collections.deque()
        self.default = Reply()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        self.script.extend(replies)

    async def start(self) -> Downstream:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port).start()
        return self

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Received(
                request.method,
                request.path,
                CIMultiDict(request.headers),
                body,
                time.monotonic(),
            )
        )
        reply = self.script.popleft() if self.script else self.default
        if reply.hang:
            await self._release.wait()
        elif reply.delay:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(reply.delay):
                    await self._release.wait()
        return web.Response(status=reply.status, headers=dict(reply.headers), body=reply.body)

    # what arrived

    def for_id(self, message_id: str) -> list[Received]:
        return [r for r in self.requests if r.headers.get("webhook-id") == message_id]

    def ids(self) -> set[str]:
        return {r.headers["webhook-id"] for r in self.requests if "webhook-id" in r.headers}

    async def wait_count(self, count: int, timeout: float = DEFAULT_WAIT) -> list[Received]:
        await wait_for(
            lambda: len(self.requests) >= count,
            timeout,
            message=lambda: f"{count} requests downstream, got {len(self.requests)}",
        )
        return self.requests


@pytest.fixture
async def downstream_factory() -> AsyncIterator[Callable[..., Awaitable[Downstream]]]:
    servers: list[Downstream] = []

    async def make(port: int | None = None) -> Downstream:
        server = Downstream(port)
        servers.append(server)
        return await server.start()

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def downstream(downstream_factory: Callable[..., Awaitable[Downstream]]) -> Downstream:
    return await downstream_factory()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """The provider's side: a plain HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes | Any = b"{}",
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, dict[str, Any]]:
    """POST and return (status, JSON body)."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    async with session.post(url, data=body, headers=headers, **kwargs) as response:
        payload = await response.read()
        return response.status, json.loads(payload) if payload else {}


def run_cli(
    *args: str,
    timeout: float = 30.0,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hookgate ARGS`` to completion (bounded by ``timeout``).

    A process still running at ``timeout`` is killed and the test fails, showing what
    it printed: a command that hangs is a bug, not a slow machine.
    """
    environ = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    environ.update(env or {})
    try:
        return subprocess.run(
            [sys.executable, "-m", "hookgate", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = (
            exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        )
        pytest.fail(
            f"`hookgate {' '.join(args)}` did not exit within {timeout}s (killed);"
            f" stderr:\n{(stderr or '')[-3000:]}"
        )
