"""The dispatcher: a worker per destination, started, reloaded and stopped together.

Workers send their requests through one ``Sender``: the ``HttpClient`` of this process
(pooled, keep-alive sessions), or the delivery processes that run that client on
other cores (processes.py). A worker that ends without being asked to resolves
``failed``, and the daemon stops: no zombie that still answers 2xx.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable

from hookgate.config import DestinationConfig
from hookgate.outbound.alerts import Alerter
from hookgate.outbound.client import HttpClient, Target
from hookgate.outbound.processes import DeliveryProcesses
from hookgate.outbound.worker import DestinationWorker
from hookgate.store import Store
from hookgate.transform import TransformPool


class Dispatcher:
    """Runs one worker per destination over one sender of requests."""

    def __init__(
        self,
        destinations: Iterable[DestinationConfig],
        store: Store,
        alerter: Alerter,
        sender: HttpClient | DeliveryProcesses | None = None,
    ) -> None:
        self.store = store
        self.alerter = alerter
        self._destinations = list(destinations)
        self.workers: dict[str, DestinationWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # The dispatcher owns its sender: it starts and closes it.
        self.sender = sender or HttpClient()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        # Shared by every destination's transform; no process starts until one runs.
        self.transforms = TransformPool()
        # Resolved when a worker ends without being asked to: the daemon stops then.
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def start_delivery_processes(self) -> None:
        """Start the delivery processes, if the sender is theirs, and wait until they are ready.

        The daemon calls this before it listens: once it answers, its children run.
        """
        if isinstance(self.sender, DeliveryProcesses):
            self.sender.failed.add_done_callback(self._on_sender_failed)
            await self.sender.start()

    async def start(self) -> None:
        self.sender.set_targets([Target.of(d) for d in self._destinations])
        coordination = self.store.coordination
        if coordination is not None:
            coordination.on_pause_changed(self._paused_elsewhere)
        paused = await self.store.paused_destinations()
        for destination in self._destinations:
            self._start_worker(destination, destination.name in paused)

    def _start_worker(self, destination: DestinationConfig, paused: bool) -> None:
        worker = DestinationWorker(
            destination,
            self.store,
            self.sender,
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

    def _on_sender_failed(self, failed: asyncio.Future[str]) -> None:
        if not self.failed.done():
            self.failed.set_result(failed.result())

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
        # Only once the changed ones are retired: their last requests used the old target.
        self.sender.set_targets([Target.of(d) for d in wanted.values()])
        await self.sender.close_unused()
        paused = await self.store.paused_destinations()
        for name, destination in wanted.items():
            if name not in self.workers:
                self._start_worker(destination, name in paused)

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
                worker.work_arrived()

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
        """Stop claiming, let in-flight requests finish within ``grace``, close the sender."""
        await asyncio.gather(*(self._retire(name, grace) for name in list(self.workers)))
        await self.sender.close()
        await self.transforms.close()
