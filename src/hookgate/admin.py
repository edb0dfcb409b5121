"""The admin listener: liveness, readiness (and later metrics and the admin API)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from hookgate.dispatch import Dispatcher
from hookgate.store import Store, StoreError

_WRITE_CHECK_TIMEOUT = 2.0


class Admin:
    def __init__(self, store: Store, dispatcher: Dispatcher, alive: Callable[[], bool]) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.alive = alive

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        if not self.alive():
            return _json(503, {"status": "failing"})
        return _json(200, {"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        checks = {"database": await self._database_check(), "delivery": self._delivery_check()}
        body: dict[str, Any] = {"status": "ok", "checks": checks}
        try:
            stats = await self.store.queue_stats()
        except StoreError as exc:
            checks["queue"] = f"failing: {exc}"
        else:
            now = time.time()
            body["queue"] = {
                "pending": stats.pending,
                "oldest_pending_age_s": _age(stats.oldest_pending_at, now),
                "dead": stats.dead,
            }
            body["destinations"] = {
                name: {
                    "state": self._destination_state(name),
                    "pending": stats.destinations[name].pending
                    if name in stats.destinations
                    else 0,
                }
                for name in self.dispatcher.workers
            }
        ready = all(v == "ok" for v in checks.values())
        body["status"] = "ok" if ready else "failing"
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
        if any(t.done() for t in self.dispatcher.tasks):
            return "failing: a delivery worker stopped"
        return "ok"

    def _destination_state(self, name: str) -> str:
        return self.dispatcher.workers[name].state


def _age(since: float | None, now: float) -> float:
    return 0.0 if since is None else round(max(0.0, now - since), 3)


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")
