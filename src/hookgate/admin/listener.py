"""The admin listener: liveness, readiness, metrics, the admin API and the dashboard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
import prometheus_client
from aiohttp import web

from hookgate import metrics
from hookgate.admin import answers
from hookgate.admin.api import AdminApi
from hookgate.admin.dashboard.app import Dashboard
from hookgate.config import Config
from hookgate.errors import StoreError
from hookgate.outbound.dispatcher import Dispatcher
from hookgate.store import QueueStats, Store

_WRITE_CHECK_TIMEOUT = 2.0


class Admin:
    def __init__(
        self,
        config: Config,
        store: Store,
        dispatcher: Dispatcher,
        alive: Callable[[], bool],
        ingress: Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.alive = alive
        # With ingest processes: whether they all serve the ingress ("ok" or why not).
        self.ingress = ingress
        self.api = AdminApi(config, store, dispatcher)
        self.dashboard = Dashboard(self.api)

    def apply(self, config: Config) -> None:
        """Take a reloaded config (destinations for replay, the API token)."""
        self.api.apply(config)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.api.errors])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_routes(self.api.routes())
        app.router.add_routes(self.dashboard.routes())
        app.cleanup_ctx.append(self.dashboard.sample_history)
        return app

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format; queue depths and circuit states are read now."""
        try:
            stats = await self.store.queue_stats()
        except StoreError:
            stats = None
        now = time.time()
        for name, worker in self.dispatcher.workers.items():
            queue = stats.destinations.get(name) if stats else None
            metrics.queue_pending.labels(name).set(queue.pending if queue else 0)
            oldest = queue.oldest_pending_at if queue else None
            metrics.queue_oldest_age.labels(name).set(_age(oldest, now))
            metrics.circuit_state.labels(name).set(metrics.CIRCUIT_VALUES[worker.circuit.state])
            metrics.destination_paused.labels(name).set(1 if worker.paused else 0)
        if stats is not None:
            metrics.queue_dead.set(stats.dead)
        return web.Response(
            body=prometheus_client.generate_latest(metrics.REGISTRY),
            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
        )

    async def healthz(self, request: web.Request) -> web.Response:
        if not self.alive():
            return _json(503, answers.Health("failing"))
        return _json(200, answers.Health("ok"))

    async def readyz(self, request: web.Request) -> web.Response:
        checks = {"database": await self._database_check(), "delivery": self._delivery_check()}
        if self.ingress is not None:
            checks["ingress"] = self.ingress()
        queue: answers.ReadyQueue | None = None
        destinations: dict[str, answers.ReadyDestination] | None = None
        try:
            stats = await self.store.queue_stats()
        except StoreError as exc:
            checks["queue"] = f"failing: {exc}"
        else:
            now = time.time()
            queue = answers.ReadyQueue(
                stats.pending, _age(stats.oldest_pending_at, now), stats.dead
            )
            destinations = {
                name: answers.ReadyDestination(worker.state_with(pending), pending)
                for name, worker in self.dispatcher.workers.items()
                for pending in (_pending(stats, name),)
            }
        ready = all(v == "ok" for v in checks.values())
        body = answers.Readiness("ok" if ready else "failing", checks, queue, destinations)
        return _json(200 if ready else 503, body)

    async def _database_check(self) -> str:
        try:
            async with asyncio.timeout(_WRITE_CHECK_TIMEOUT):
                await self.store.check_writable()
        except TimeoutError:
            return "failing: write check timed out"
        except StoreError as exc:
            return f"failing: {exc}"
        return "ok"

    def _delivery_check(self) -> str:
        return "ok" if self.dispatcher.running else "failing: a delivery worker stopped"


def _pending(stats: QueueStats, name: str) -> int:
    queue = stats.destinations.get(name)
    return queue.pending if queue is not None else 0


def _age(since: float | None, now: float) -> float:
    return 0.0 if since is None else round(max(0.0, now - since), 3)


def _json(status: int, payload: msgspec.Struct) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )
