"""Start-up, signals, graceful shutdown and systemd notification."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from hookgate import __version__, retention
from hookgate.admin import Admin
from hookgate.config import Config, parse_listen
from hookgate.dispatch import Dispatcher
from hookgate.ingress import KEEPALIVE_TIMEOUT, Ingress
from hookgate.store import StoreError
from hookgate.store.sqlite import SQLiteStore

log = structlog.get_logger("hookgate.daemon")


class StartupError(Exception):
    """The daemon could not start (port in use, database unusable, bad TLS files)."""


def notify(message: str) -> None:
    """Send one sd_notify datagram when running under systemd (NOTIFY_SOCKET set)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("systemd.notify_failed", error=str(exc))


@dataclass
class _Running:
    store: SQLiteStore
    dispatcher: Dispatcher
    runners: list[web.BaseRunner] = field(default_factory=list)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self._failure: str | None = None

    async def run(self) -> int:
        """Serve until a signal or a crashed background task; return the exit code."""
        running = await self._start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_stop_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        watchdog = asyncio.create_task(self._watchdog(), name="systemd-watchdog")
        pruner = asyncio.create_task(
            retention.run(running.store, self.config.storage.retention), name="retention"
        )
        watched = [running.store.writer_task, *running.dispatcher.tasks, pruner]
        watcher = asyncio.create_task(self._watch(t for t in watched if t is not None))
        notify("READY=1")
        log.info(
            "daemon.ready",
            version=__version__,
            ingress=self.config.server.listen,
            admin=self.config.admin.listen,
        )
        await self._stop.wait()
        notify("STOPPING=1")
        for task in (watchdog, watcher, pruner):
            task.cancel()
        await self._shutdown(running)
        return 1 if self._failure else 0

    async def _start(self) -> _Running:
        store = SQLiteStore(self.config.storage.path, sync=self.config.storage.sync)
        try:
            await store.open()
        except StoreError as exc:
            raise StartupError(str(exc)) from exc
        dispatcher = Dispatcher(self.config.destinations.values(), store)
        store.on_commit(dispatcher.wake)
        running = _Running(store, dispatcher)
        try:
            await dispatcher.start()
            ingress = Ingress(self.config, store)
            admin = Admin(self.config, store, dispatcher, alive=lambda: self._failure is None)
            server = self.config.server
            running.runners.append(
                await _serve(
                    web.ServerRunner(ingress.server(), handler_cancellation=False),
                    server.listen,
                    _tls_context(server.tls_cert, server.tls_key),
                    server.shutdown_grace,
                )
            )
            running.runners.append(
                await _serve(
                    web.AppRunner(
                        admin.app(), access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT
                    ),
                    self.config.admin.listen,
                    None,
                    server.shutdown_grace,
                )
            )
        except (OSError, ssl.SSLError) as exc:
            await self._shutdown(running)
            raise StartupError(f"cannot listen: {exc}") from exc
        return running

    async def _shutdown(self, running: _Running) -> None:
        grace = self.config.server.shutdown_grace
        log.info("daemon.stopping", grace_s=float(grace))
        # Ingress first: stop accepting and let in-flight requests reach their commit.
        for runner in running.runners:
            await runner.cleanup()
        await running.dispatcher.stop(grace)
        await running.store.close()
        log.info("daemon.stopped")

    def _on_stop_signal(self, signum: int) -> None:
        if self._stop.is_set():
            log.warning("daemon.forced_exit", signal=signal.Signals(signum).name)
            os._exit(1)
        log.info("daemon.signal", signal=signal.Signals(signum).name)
        self._stop.set()

    def _on_reload_signal(self) -> None:
        log.warning("config.reload_unsupported", detail="restart the service to apply changes")

    async def _watch(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """A background task that dies stops the daemon: no zombie that still answers 2xx."""
        done, _ = await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
        task = next(iter(done))
        error = task.exception() if not task.cancelled() else None
        self._failure = f"{task.get_name()} stopped: {error!r}"
        log.critical("daemon.task_died", task=task.get_name(), error=repr(error))
        self._stop.set()

    @staticmethod
    async def _watchdog() -> None:
        usec = os.environ.get("WATCHDOG_USEC")
        if not usec or not usec.isdigit():
            return
        interval = int(usec) / 1_000_000 / 2
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)


async def _serve(
    runner: web.BaseRunner, listen: str, tls: ssl.SSLContext | None, grace: float
) -> web.BaseRunner:
    await runner.setup()
    host, port = parse_listen(listen)
    site = web.TCPSite(runner, host, port, ssl_context=tls, shutdown_timeout=grace)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
