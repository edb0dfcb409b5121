"""Start-up, signals, graceful shutdown and systemd notification."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from aiohttp import web

from hookgate import __version__
from hookgate import config as config_module
from hookgate.admin.listener import Admin
from hookgate.config import Config, parse_listen
from hookgate.errors import ConfigError, StartupError, StoreError
from hookgate.inbound import http1
from hookgate.inbound import processes as ingest_processes
from hookgate.inbound.listener import KEEPALIVE_TIMEOUT, Ingress, tls_context
from hookgate.outbound.alerts import Alerter
from hookgate.outbound.dispatcher import Dispatcher
from hookgate.outbound.processes import DeliveryProcesses
from hookgate.store import Store, open_store, retention

log = structlog.get_logger("hookgate.daemon")


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
    store: Store
    dispatcher: Dispatcher
    alerter: Alerter
    ingress: Ingress | None = None
    ingress_server: http1.Server | None = None
    ingest: ingest_processes.IngestProcesses | None = None
    admin: Admin | None = None
    runners: list[web.BaseRunner] = field(default_factory=list)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self._failure: str | None = None
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        """Serve until a signal or a crashed background task; return the exit code."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_error)
        # Before starting: a stop asked for during start-up (a migration, the delivery
        # processes starting) is a clean stop once started, not a kill.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_stop_signal, signum)
        running = await self._start()
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal, running)
        watchdog = asyncio.create_task(self._watchdog(), name="systemd-watchdog")
        pruner = asyncio.create_task(
            retention.run(running.store, self.config.storage.retention), name="retention"
        )
        alerts = asyncio.create_task(running.alerter.run(), name="alerts")
        watched: list[asyncio.Future[Any]] = [running.dispatcher.failed, pruner, alerts]
        if running.ingest is not None:
            watched.append(running.ingest.failed)
        if running.store.writer_task is not None:
            watched.append(running.store.writer_task)
        watcher = asyncio.create_task(self._watch(watched))
        # What start-up made (modules, config, connections) lives as long as the daemon:
        # out of the collector's way, so that its collections walk only what requests
        # allocate. A full collection of the whole heap stalled the event loop for tens of
        # milliseconds under load (docs/benchmarks.md: "latency at half the end-to-end rate").
        # Start-up's garbage first: a frozen cycle is never collected.
        gc.collect()
        gc.freeze()
        notify("READY=1")
        log.info(
            "daemon.ready",
            version=__version__,
            ingress=self.config.server.listen,
            admin=self.config.admin.listen,
            frozen_objects=gc.get_freeze_count(),
        )
        await self._stop.wait()
        notify("STOPPING=1")
        for task in (watchdog, watcher, pruner, alerts, *self._background):
            task.cancel()
        await self._shutdown(running)
        return 1 if self._failure else 0

    async def _start(self) -> _Running:
        server = self.config.server
        tls = tls_context(server.tls_cert, server.tls_key)
        try:
            store = await open_store(self.config.storage)
        except StoreError as exc:
            raise StartupError(str(exc)) from exc
        alerter = Alerter(store, self.config.alerts)
        alerter.apply(self.config)
        dispatcher = Dispatcher(self.config.destinations.values(), store, alerter, self._sender())
        store.on_commit(dispatcher.wake)
        running = _Running(store, dispatcher, alerter)
        try:
            await dispatcher.start_delivery_processes()
            # Listen first: a start that cannot bind its ports must not have sent anything.
            if server.ingest_processes:
                await self._bind_ingest(running, store)
            else:
                running.ingress = Ingress(self.config, store)
                await self._listen_ingress(running, running.ingress, tls)
            running.admin = Admin(
                self.config,
                store,
                dispatcher,
                alive=lambda: self._failure is None,
                ingress=running.ingest.serving if running.ingest is not None else None,
            )
            await self._listen_admin(running, running.admin)
            if running.ingest is not None:
                await running.ingest.start()
            await dispatcher.start()
        except OSError as exc:
            await self._shutdown(running)
            raise StartupError(f"cannot listen: {exc}") from exc
        except StoreError as exc:
            await self._shutdown(running)
            raise StartupError(str(exc)) from exc
        except BaseException:
            # Whatever went wrong, close what was opened: an open database thread
            # would keep a process that failed to start from ever exiting.
            await self._shutdown(running)
            raise
        return running

    def _sender(self) -> DeliveryProcesses | None:
        """The delivery processes the config asks for (None: this process sends)."""
        count = self.config.server.delivery_processes
        return DeliveryProcesses(count, self.config.log) if count else None

    async def _bind_ingest(self, running: _Running, store: Store) -> None:
        """Bind the ingress here; the ingest processes (started later) accept on it."""
        server = self.config.server
        sockets = await ingest_processes.bind(server.listen)
        running.ingest = ingest_processes.IngestProcesses(
            server.ingest_processes, self.config, store, sockets
        )

    async def _listen_ingress(
        self, running: _Running, ingress: Ingress, tls: ssl.SSLContext | None
    ) -> None:
        running.ingress_server = ingress.server(tls)
        await running.ingress_server.listen(*parse_listen(self.config.server.listen))

    async def _listen_admin(self, running: _Running, admin: Admin) -> None:
        server = self.config.server
        admin_runner = web.AppRunner(
            admin.app(), access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT
        )
        running.runners.append(
            await _serve(admin_runner, self.config.admin.listen, None, server.shutdown_grace)
        )

    async def _shutdown(self, running: _Running) -> None:
        grace = self.config.server.shutdown_grace
        log.info("daemon.stopping", grace_s=float(grace))
        # Ingress first: stop accepting and let in-flight requests reach their commit.
        if running.ingest is not None:
            await running.ingest.close()
        if running.ingress_server is not None:
            await running.ingress_server.close(float(grace))
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

    def _on_reload_signal(self, running: _Running) -> None:
        task = asyncio.create_task(self._reload(running), name="reload")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reload(self, running: _Running) -> None:
        """SIGHUP: re-read the config; an invalid file keeps the running one."""
        async with self._reload_lock:
            try:
                new = config_module.load(self.config.path)
            except ConfigError as exc:
                log.error("config.reload_failed", errors=exc.errors)
                return
            new = self._keep_restart_only(new)
            if running.ingress is not None:
                running.ingress.apply(new)
            if running.ingest is not None:
                running.ingest.apply(new)
            if running.admin is not None:
                running.admin.apply(new)
            running.alerter.apply(new)
            await running.dispatcher.apply(new.destinations.values(), new.server.shutdown_grace)
            self.config = new
            log.info(
                "config.reloaded",
                sources=sorted(new.sources),
                destinations=sorted(new.destinations),
            )

    def _keep_restart_only(self, new: Config) -> Config:
        """Listeners, storage and logging change only with a restart: keep the running ones."""
        old = self.config
        kept = msgspec.structs.replace(
            new,
            server=msgspec.structs.replace(
                new.server,
                listen=old.server.listen,
                tls_cert=old.server.tls_cert,
                tls_key=old.server.tls_key,
                delivery_processes=old.server.delivery_processes,
                ingest_processes=old.server.ingest_processes,
            ),
            admin=msgspec.structs.replace(new.admin, listen=old.admin.listen),
            storage=old.storage,
            log=old.log,
        )
        if kept != new:
            changed = [
                name
                for name in ("server", "admin", "storage", "log")
                if getattr(kept, name) != getattr(new, name)
            ]
            log.warning("config.restart_needed", sections=changed)
        return kept

    async def _watch(self, watched: Iterable[asyncio.Future[Any]]) -> None:
        """A background task that dies stops the daemon: no zombie that still answers 2xx."""
        done, _ = await asyncio.wait(set(watched), return_when=asyncio.FIRST_COMPLETED)
        future = next(iter(done))
        if future.cancelled():
            reason = "cancelled"
        elif future.exception() is not None:
            reason = repr(future.exception())
        else:
            reason = str(future.result())
        name = future.get_name() if isinstance(future, asyncio.Task) else "delivery"
        self._failure = f"{name} stopped: {reason}"
        log.critical("daemon.task_died", task=name, error=reason)
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


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own error reports (a task's unretrieved exception) as structured logs."""
    error = context.get("exception")
    log.error(
        "asyncio.error",
        message=context.get("message"),
        error=repr(error) if error is not None else None,
    )


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
