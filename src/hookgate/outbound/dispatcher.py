"""The dispatcher: a worker per destination, started, reloaded and stopped together.

All workers share pooled ``aiohttp.ClientSession``s (one per ``deny_networks`` list,
most destinations share the default one), so connections are kept alive across
deliveries. A worker that ends without being asked to resolves ``failed``, and
the daemon stops: no zombie that still answers 2xx.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable

import aiohttp

from hookgate import addresses
from hookgate.config import DestinationConfig
from hookgate.outbound import egress
from hookgate.outbound.alerts import Alerter
from hookgate.outbound.worker import DestinationWorker
from hookgate.store import Store
from hookgate.transform import TransformPool


class Dispatcher:
    """Runs one worker per destination over a shared pooled client session."""

    def __init__(
        self, destinations: Iterable[DestinationConfig], store: Store, alerter: Alerter
    ) -> None:
        self.store = store
        self.alerter = alerter
        self._destinations = list(destinations)
        self.workers: dict[str, DestinationWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sessions: dict[tuple[addresses.IPNetwork, ...], aiohttp.ClientSession] = {}
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        # Shared by every destination's transform; no process starts until one runs.
        self.transforms = TransformPool()
        # Resolved when a worker ends without being asked to: the daemon stops then.
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        coordination = self.store.coordination
        if coordination is not None:
            coordination.on_pause_changed(self._paused_elsewhere)
        paused = await self.store.paused_destinations()
        for destination in self._destinations:
            self._start_worker(destination, destination.name in paused)

    def _session_for(self, destination: DestinationConfig) -> aiohttp.ClientSession:
        """The pooled session of the destination's deny list (most share the default one)."""
        deny = addresses.parse_networks(destination.policy.deny_networks)
        session = self._sessions.get(deny)
        if session is None:
            # No per-host cap: each worker's own concurrency is the limit, so one
            # destination's slow requests never queue another's behind them. Cookies
            # are never kept and the process's proxy variables never used.
            session = aiohttp.ClientSession(
                connector=egress.make_connector(deny),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
            self._sessions[deny] = session
        return session

    def _start_worker(self, destination: DestinationConfig, paused: bool) -> None:
        worker = DestinationWorker(
            destination,
            self.store,
            self._session_for(destination),
            self._rng,
            self.alerter,
            self.transforms,
            paused=paused,
        )
        task = asyncio.create_task(worker.run(), name=f"worker-{worker.name}")
        task.add_done_callback(lambda t: self._on_worker_done(worker, t))
        self.workers[worker.name] = worker
        self._tasks[worker.name] = task

    def _on_worker_done(self, worker: DestinationWorker, task: asyncio.Task[None]) -> None:
        if worker.stopping or self.failed.done():
            return
        error = None if task.cancelled() else task.exception()
        self.failed.set_result(f"worker {worker.name} stopped: {error!r}")

    @property
    def running(self) -> bool:
        return not self.failed.done() and all(not t.done() for t in self._tasks.values())

    async def apply(self, destinations: Iterable[DestinationConfig], grace: float) -> None:
        """Reload: start new destinations, restart changed ones, retire removed ones.

        A changed or removed destination's in-flight requests finish (within
        ``grace``) before its new worker claims anything, so nothing is sent twice
        by the change; a removed one's deliveries stay in the store, visible.
        """
        wanted = {d.name: d for d in destinations}
        changed = [
            name for name, worker in self.workers.items() if wanted.get(name) != worker.destination
        ]
        await asyncio.gather(*(self._retire(name, grace) for name in changed))
        paused = await self.store.paused_destinations()
        for name, destination in wanted.items():
            if name not in self.workers:
                self._start_worker(destination, name in paused)
        await self._close_unused_sessions()

    async def _close_unused_sessions(self) -> None:
        """A reload may leave a deny list that no destination uses: close its pool."""
        used = {id(worker.session) for worker in self.workers.values()}
        for deny, session in list(self._sessions.items()):
            if id(session) not in used:
                del self._sessions[deny]
                await session.close()

    async def _retire(self, name: str, grace: float) -> None:
        worker = self.workers.pop(name)
        task = self._tasks.pop(name)
        worker.stop()
        await asyncio.gather(task, return_exceptions=True)
        await worker.drain(grace)
        coordination = self.store.coordination
        if coordination is not None and worker.destination.ordered:
            # Only once its last request ended: the next holder starts after it.
            await coordination.release_order(name)

    def wake(self, destinations: frozenset[str]) -> None:
        for name in destinations:
            worker = self.workers.get(name)
            if worker is not None:
                worker.wake.set()

    def _paused_elsewhere(self, destination: str, paused: bool) -> None:
        """Another process sharing the store paused or resumed ``destination``."""
        worker = self.workers.get(destination)
        if worker is not None:
            worker.set_paused(paused)

    async def set_paused(self, destination: str, paused: bool) -> None:
        """Pause or resume: durable in the store first, then the running worker."""
        await self.store.set_paused(destination, paused)
        worker = self.workers.get(destination)
        if worker is not None:
            worker.set_paused(paused)

    async def stop(self, grace: float) -> None:
        """Stop claiming, let in-flight requests finish within ``grace``, close the pool."""
        await asyncio.gather(*(self._retire(name, grace) for name in list(self.workers)))
        for session in self._sessions.values():
            await session.close()
        await self.transforms.close()
