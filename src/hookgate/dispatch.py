"""The dispatcher: claims due deliveries per destination and attempts them.

One ``DestinationWorker`` per destination, each with its own concurrency, so a
slow destination cannot hold up the others. Workers sleep until a commit brings
them work, an attempt finishes, or their earliest ``next_attempt_at`` comes:
never a busy poll. All attempts share one pooled ``aiohttp.ClientSession``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterable

import aiohttp
import orjson
import structlog

from hookgate import __version__, retry
from hookgate.config import DestinationConfig
from hookgate.signing import Signer
from hookgate.store import AttemptRecord, DueDelivery, Store, StoreError

log = structlog.get_logger("hookgate.dispatch")

SNIPPET_BYTES = 1024
# Read (and drop) at most this much of a response so the connection can be reused.
_DRAIN_BYTES = 64 * 1024
USER_AGENT = f"hookgate/{__version__}"
# Headers that hookgate sets itself: forward_headers and headers cannot replace them.
_OWN_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-webhook-signature",
        "hookgate-source",
        "hookgate-event-type",
        "hookgate-attempt",
    }
)


class DestinationWorker:
    """Claims and attempts the deliveries of one destination."""

    def __init__(
        self,
        destination: DestinationConfig,
        store: Store,
        session: aiohttp.ClientSession,
        rng: random.Random,
    ) -> None:
        self.destination = destination
        self.store = store
        self.session = session
        self.rng = rng
        self.signer = Signer(destination.sign, destination.secret)
        self.timeout = aiohttp.ClientTimeout(total=destination.policy.timeout)
        self.wake = asyncio.Event()
        self.inflight: dict[int, asyncio.Task[None]] = {}
        self.consecutive_failures = 0
        self._stopping = False

    @property
    def name(self) -> str:
        return self.destination.name

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self.wake.clear()
            try:
                wait = await self._claim_and_start()
            except StoreError as exc:
                log.error("dispatch.claim_failed", destination=self.name, error=str(exc))
                wait = 1.0
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.wake.wait()

    async def _claim_and_start(self) -> float | None:
        """Start what is due; return how long to sleep (None: until woken)."""
        free = self.destination.policy.concurrency - len(self.inflight)
        if free <= 0:
            return None
        now = time.time()
        limit = free + len(self.inflight)
        due = await self.store.due_deliveries(self.name, now, limit)
        fresh = [d for d in due if d.id not in self.inflight][:free]
        for delivery in fresh:
            self.inflight[delivery.id] = asyncio.create_task(
                self._attempt(delivery), name=f"attempt-{delivery.id}"
            )
        if len(due) == limit and len(fresh) < free:
            return 0  # more may be due beyond this page
        if len(fresh) == free:
            return None
        next_due = await self.store.next_due_at(self.name, now)
        return None if next_due is None else max(0.0, next_due - time.time())

    async def _attempt(self, delivery: DueDelivery) -> None:
        try:
            record = await self._send(delivery)
            # Shielded: a cancel during shutdown must not lose a result already known.
            await asyncio.shield(self.store.record_attempt(record))
            self._log_result(delivery, record)
        except StoreError as exc:
            log.error("delivery.record_failed", delivery_id=delivery.id, error=str(exc))
        finally:
            del self.inflight[delivery.id]
            self.wake.set()

    async def _send(self, delivery: DueDelivery) -> AttemptRecord:
        attempt = delivery.attempts + 1
        started = time.time()
        timestamp = int(started)
        headers = self._headers(delivery, attempt, timestamp)
        outcome, snippet = await self._post(delivery.body, headers)
        ended = time.time()
        decision = retry.decide(
            outcome, attempt, delivery.received_at, ended, self.destination.policy, self.rng
        )
        self.consecutive_failures = 0 if outcome.succeeded else self.consecutive_failures + 1
        return AttemptRecord(
            delivery_id=delivery.id,
            started_at=started,
            duration_ms=(ended - started) * 1000,
            status=outcome.status,
            error=outcome.error,
            response_snippet=snippet,
            state=decision.state,
            attempts=attempt,
            next_attempt_at=decision.next_attempt_at,
        )

    def _headers(self, delivery: DueDelivery, attempt: int, timestamp: int) -> dict[str, str]:
        inbound: dict[str, str] = orjson.loads(delivery.headers)
        headers = {"User-Agent": USER_AGENT}
        if "content-type" in inbound:
            headers["Content-Type"] = inbound["content-type"]
        for name in self.destination.forward_headers:
            value = inbound.get(name.lower())
            if value is not None and name.lower() not in _OWN_HEADERS:
                headers[name] = value
        for name, value in self.destination.headers.items():
            if name.lower() not in _OWN_HEADERS:
                headers[name] = value
        headers["webhook-id"] = delivery.message_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["Hookgate-Source"] = delivery.source
        if delivery.event_type is not None:
            headers["Hookgate-Event-Type"] = delivery.event_type
        headers["Hookgate-Attempt"] = str(attempt)
        headers.update(self.signer.headers(delivery.message_id, timestamp, delivery.body))
        return headers

    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[retry.Outcome, bytes]:
        try:
            async with self.session.post(
                self.destination.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self.timeout,
            ) as response:
                snippet = await response.content.read(SNIPPET_BYTES)
                await _drain(response)
                outcome = retry.Outcome(
                    status=response.status,
                    error=None if response.status < 300 else f"HTTP {response.status}",
                    retry_after=response.headers.get("Retry-After"),
                )
                return outcome, snippet
        except TimeoutError:
            return retry.Outcome(None, "timeout"), b""
        except aiohttp.ClientError as exc:
            return retry.Outcome(None, f"{type(exc).__name__}: {exc}"[:500]), b""

    def _log_result(self, delivery: DueDelivery, record: AttemptRecord) -> None:
        fields = {
            "destination": self.name,
            "message_id": delivery.message_id,
            "attempt": record.attempts,
            "status": record.status,
            "duration_ms": round(record.duration_ms, 1),
        }
        if record.state == "delivered":
            log.debug("delivery.delivered", **fields)
        elif record.state == "dead":
            log.error("delivery.dead", error=record.error, **fields)
        else:
            retry_in = round(record.next_attempt_at - time.time(), 3)
            log.warning("delivery.failed", error=record.error, retry_in_s=retry_in, **fields)

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for in-flight attempts, then cancel the rest."""
        tasks = list(self.inflight.values())
        if not tasks:
            return
        _, still_running = await asyncio.wait(tasks, timeout=grace)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)


async def _drain(response: aiohttp.ClientResponse) -> None:
    remaining = _DRAIN_BYTES
    while remaining > 0 and not response.content.at_eof():
        chunk = await response.content.read(min(remaining, 16384))
        if not chunk:
            return
        remaining -= len(chunk)


class Dispatcher:
    """Runs one worker per destination over a shared pooled client session."""

    def __init__(self, destinations: Iterable[DestinationConfig], store: Store) -> None:
        self.store = store
        self._destinations = list(destinations)
        self.workers: dict[str, DestinationWorker] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        # Never follow redirects, never send the process's proxy or cookie state.
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
        )
        for destination in self._destinations:
            worker = DestinationWorker(destination, self.store, self._session, self._rng)
            self.workers[destination.name] = worker
            self._tasks.append(asyncio.create_task(worker.run(), name=f"worker-{worker.name}"))

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return self._tasks

    def wake(self, destinations: frozenset[str]) -> None:
        for name in destinations:
            worker = self.workers.get(name)
            if worker is not None:
                worker.wake.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming, let in-flight attempts finish within ``grace``, close the pool."""
        for worker in self.workers.values():
            worker.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(w.drain(grace) for w in self.workers.values()))
        if self._session is not None:
            await self._session.close()
