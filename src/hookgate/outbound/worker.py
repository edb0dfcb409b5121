"""One destination's worker: claims its due deliveries and attempts them.

Each destination has its own worker, concurrency, rate limit and circuit, so a slow
or failing destination cannot hold up the others. A worker sleeps until a commit
brings it work, a request ends, or its earliest ``next_attempt_at`` comes: never a
busy poll (with a store that other processes share, it also looks now and then for
work that no wake-up announced). Once a claim found nothing more due, a request that
ends claims again only if something may have come due since (``work_arrived``).
Claims are bounded pages, so the backlog stays in the store, not in memory; a claim
leases its deliveries to this process. With SQLite, a worker that found nothing more
due takes a commit's new deliveries from the commit itself (``_taken_from_commit``),
leased as a claim would lease them, with no claim. What a
worker claims it starts at once or, with the store to itself (SQLite: leases that
never expire), keeps as the next page, ready for the slots that free meanwhile, so
that a slot that frees does not wait for a query; pausing, an open circuit or a stop
releases that page. An outcome is committed before its
delivery leaves ``inflight``, and one that cannot be committed is held and written
again, never sent again.

Where other processes share the store (``store.coordination``), an ordered
destination is delivered only by the process that holds it, the rate limit is the
destination's total across them, and an open circuit stops their claims too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Literal

import structlog

from hookgate import metrics
from hookgate.config import DestinationConfig
from hookgate.errors import StoreError
from hookgate.outbound import retry
from hookgate.outbound.alerts import Alerter
from hookgate.outbound.client import Sender
from hookgate.outbound.limits import CircuitBreaker, RateLimiter
from hookgate.outbound.requests import OutboundRequest, RequestBuilder, group_into_requests
from hookgate.outbound.shared import SharedRateLimiter
from hookgate.store import AttemptRecord, Coordination, DueDelivery, Store
from hookgate.transform import Transformed, TransformFailed, TransformInput, TransformPool
from hookgate.wire import DestinationState

log = structlog.get_logger("hookgate.dispatch")

_CLAIM_RETRY_DELAY = 1.0
# While the store cannot record outcomes, retry writing them this often (doubling).
_RECORD_RETRY_FIRST = 0.5
_RECORD_RETRY_MAX = 30.0
# How long an attempt that crashed (a bug) keeps its deliveries from being claimed.
_CRASH_HOLD = 30.0
# With the store to itself, a claim reads at least this many deliveries: what does not
# start at once waits in ``ready``. Under load a claim costs the event loop about 65 µs
# before its first row (it steps over every leased delivery still pending in the
# index) and about 5 µs a row after a commit (docs/benchmarks.md, "The delivery side,
# stage by stage"): fewer, larger claims. At most the store's loop-side page, so that
# the claim still reads on the event loop's thread.
_CLAIM_ROWS = 64


class DestinationWorker:
    """Claims and attempts the deliveries of one destination."""

    def __init__(
        self,
        destination: DestinationConfig,
        store: Store,
        sender: Sender,
        rng: random.Random,
        alerter: Alerter,
        transforms: TransformPool,
        *,
        paused: bool = False,
    ) -> None:
        self.destination = destination
        self.transforms = transforms
        self.alerter = alerter
        self.policy = destination.policy
        self.store = store
        self.sender = sender
        self.rng = rng
        self.builder = RequestBuilder(destination, store.identity)
        self.coordination = store.coordination
        self.limiter: RateLimiter | None = None
        self.shared_limiter: SharedRateLimiter | None = None
        if self.policy.rate_limit and self.coordination is not None:
            self.shared_limiter = SharedRateLimiter(
                self.coordination, destination.name, self.policy.rate_limit, self.policy.timeout
            )
        elif self.policy.rate_limit:
            self.limiter = RateLimiter(self.policy.rate_limit)
        self._rate_slot_freed = asyncio.Event()
        self.circuit = CircuitBreaker(self.policy.circuit_failures, self.policy.circuit_cooldown)
        self.paused = paused
        self.attempt_seconds = metrics.attempt_seconds.labels(destination.name)
        self.attempt_outcomes = {
            kind: metrics.attempts.labels(destination.name, kind)
            for kind in ("success", "http_error", "timeout", "connection_error")
        }
        self.delivered = metrics.delivered.labels(destination.name)
        self.dead = metrics.dead.labels(destination.name)
        self.tally = metrics.destination_tally(destination.name)
        self.wake = asyncio.Event()
        self.inflight: set[int] = set()
        self.requests: set[asyncio.Task[None]] = set()
        # Outcomes handed to the store, not yet committed: no task waits for them (a
        # task resumed per commit cost the loop a wake-up and a shield per delivery).
        self.recording: set[asyncio.Future[Any]] = set()
        # Requests not yet answered. With the store to itself, an answered one's slot is
        # free while its outcome commits (its lease keeps it from a new claim); ordered
        # or shared: only once committed (``unsettled``).
        self.sending = 0
        # Requests started whose outcome is not yet committed (or whose deliveries are
        # not yet released).
        self.unsettled = 0
        # Read once: a filtered log call still costs about a microsecond per delivery.
        self._log_delivered = log.is_enabled_for(logging.DEBUG)
        # Claimed, not yet started: requests for the next free slots (see _claim_due).
        self.ready: collections.deque[list[DueDelivery]] = collections.deque()
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        # Cached: asyncio.get_running_loop() costs a getpid() syscall per call on 3.11.
        self._event_loop = asyncio.get_running_loop()
        # Skipping claims that cannot find anything: ``_changes`` counts what may have
        # made deliveries due (a commit of new ones, a retry recorded, a release, a
        # resume); ``_drained`` is that count when a claim last found nothing more due,
        # and when the next delivery comes due after it. A request that ends then frees
        # a slot without a claim. Only with the store to itself: shared stores are polled.
        self._changes = 0
        self._drained: tuple[int, float | None] | None = None
        # The worker's loop sleeps (between two steps): an arrival may claim for it.
        self._parked = False

    @property
    def name(self) -> str:
        return self.destination.name

    @property
    def state(self) -> DestinationState:
        if self.paused:
            return "paused"
        if self.circuit.state != "closed":
            return "open"
        return "backing_off" if self.circuit.failures else "ok"

    def state_with(self, pending: int) -> DestinationState:
        """The state as an operator reads it: no backing off with nothing left to send."""
        state = self.state
        return "ok" if state == "backing_off" and pending == 0 else state

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.work_arrived()

    def work_arrived(self) -> None:
        """Deliveries may have come due (a commit, a retry, a release): claim again."""
        self._changes += 1
        if not self._taken_from_commit() and not self._claimed_at_once():
            self.wake.set()

    def _taken_from_commit(self) -> bool:
        """Take the deliveries that the commit being announced brought, from the commit
        itself, if a claim now would find exactly those: returns whether it did, and
        the worker may sleep on.

        That holds when the last claim found nothing more due and nothing changed since
        (``_drained``), the next known delivery is not yet due, and the store can hand
        them over (SQLite, from a commit's announcement). They start at once in the
        free slots, or wait in ``ready`` (bounded by a claim's page: what does not fit
        stays in the store for the next claim). The same conditions as a claim at once
        otherwise: unordered, one delivery per request, not paused, circuit closed.
        """
        drained = self._drained
        if (
            drained is None
            or drained[0] != self._changes - 1
            or self._stopping
            or self.coordination is not None
            or self.destination.ordered
            or self.destination.batch_max != 1
            or self.paused
            or self.circuit.state != "closed"
        ):
            return False
        next_due = drained[1]
        if next_due is not None and next_due <= time.time():
            return False
        # Behind deliveries already waiting in ``ready``: they are older.
        free = 0 if self.ready else max(self.policy.concurrency - self.sending, 0)
        room = free + self._page_rows() - len(self.ready)
        if room <= 0:
            return False
        handed = self.store.claim_committed(self.name, room)
        if handed is None:
            return False
        fresh, complete = handed
        for delivery in fresh[:free]:
            self._start([delivery])
        self.ready.extend([d] for d in fresh[free:])
        if self.ready and self.sending < self.policy.concurrency:
            self.wake.set()  # a slot is free for what waits
        if not complete:
            return False  # the rest are in the store: the worker claims them
        # Still nothing due but what is leased: the next step claims no more than before.
        self._drained = (self._changes, next_due)
        return True

    def _claimed_at_once(self) -> bool:
        """Make the worker's next step here and now, if it is a claim the store makes at once.

        Called where work arrives (a commit of new deliveries, from the writer; a retry
        recorded; a release), this starts their requests in that same turn of the event
        loop, where waking the worker would take another turn, and its claim maybe a
        trip to the store's thread. The step is the one the worker would make: only
        while it sleeps, with a free slot, a closed circuit, no claimed page waiting,
        one delivery per request, unordered, and a store that holds the leases alone
        (SQLite) and can read the page now. Returns whether the worker may sleep on;
        if not, it wakes and steps as always.
        """
        if (
            not self._parked
            or self._stopping
            or self.coordination is not None
            or self.destination.ordered
            or self.destination.batch_max != 1
            or self.paused
            or self.ready
            or self.circuit.state != "closed"
        ):
            return False
        free = self.policy.concurrency - self.sending
        if free <= 0:
            return False
        changes = self._changes
        now = time.time()
        limit = self._page_rows()
        try:
            claimed = self.store.claim_due_at_once(self.name, now, limit)
        except StoreError:
            return False  # the worker's own claim meets the error, and reports it
        if claimed is None:
            return False
        fresh, next_due = claimed
        groups = group_into_requests(fresh, 1)
        for group in groups[:free]:
            self._start(group)
        self.ready.extend(groups[free:])
        if len(fresh) == limit:
            return False  # more may be due: the worker goes on
        before, self._drained = self._drained, (changes, next_due)
        if len(groups) > free:
            return False  # some wait for a slot: the worker goes on
        # The worker sleeps until what its last claim found next: unless that still
        # holds (nothing else happened since), it wakes to work out its sleep again.
        return before == (changes - 1, next_due)

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            await self._release_ready()

    async def _loop(self) -> None:
        while not self._stopping:
            self.wake.clear()
            try:
                wait = await self._step()
            except StoreError as exc:
                log.error("dispatch.claim_failed", destination=self.name, error=str(exc))
                wait = _CLAIM_RETRY_DELAY
            if self._stopping:
                return
            if self.coordination is not None:
                poll = self.coordination.poll_interval
                wait = poll if wait is None else min(wait, poll)
            self._parked = True
            try:
                if wait is None:  # the common case under load: no timer to arm and cancel
                    await self.wake.wait()
                    continue
                if wait == 0:  # step again after one turn: a timeout of 0 raises to end
                    await asyncio.sleep(0)
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.wake.wait()
            finally:
                self._parked = False

    async def _step(self) -> float | None:
        """Start what may start now; return how long to sleep (None: until woken)."""
        if self.paused:
            await self._release_ready()
            return None
        if self.destination.ordered:
            free = 1 - self.unsettled
        elif self.coordination is not None:
            # Shared leases: a process killed holds no more than its concurrency.
            free = self.policy.concurrency - self.unsettled
        else:
            free = self.policy.concurrency - self.sending
        if free <= 0:
            return None
        now = time.time()
        reopen = self.circuit.reopens_in(now)
        if reopen:
            await self._release_ready()
            return reopen
        if self.ready:
            groups = [self.ready.popleft() for _ in range(min(free, len(self.ready)))]
            wait: float | None = 0  # then look again: more may be ready, or due
        elif (idle := self._idle_for(now)) is not False:
            return idle
        else:
            groups, wait = await (
                self._claim_head(now) if self.destination.ordered else self._claim_due(now, free)
            )
        for i, group in enumerate(groups):
            if not self.circuit.allows(now):
                self.ready.extendleft(reversed(groups[i:]))
                await self._release_ready()
                return None  # a probe is out; its end wakes us
            self._start(group)
        return wait

    def _idle_for(self, now: float) -> float | Literal[False] | None:
        """How long nothing can be due (None: until woken), or False: claim now."""
        drained = self._drained
        if drained is None or drained[0] != self._changes:
            return False
        next_due = drained[1]
        if next_due is None:
            return None
        return False if next_due <= now else next_due - now

    async def _release_ready(self) -> None:
        ready, self.ready = self.ready, collections.deque()
        if ready:
            await self.store.release([d.id for group in ready for d in group])
            # Due again, for the next claim; no wake-up: what released them (a pause,
            # the circuit, a stop) says when to look again.
            self._changes += 1

    async def _claim_due(
        self, now: float, free: int
    ) -> tuple[list[list[DueDelivery]], float | None]:
        # With leases that never expire, a whole page: what does not fit now is ready
        # for the next free slots. Shared leases expire: claim only what starts now.
        if self.coordination is not None:
            limit = free * self.destination.batch_max
        else:
            limit = self._page_rows()
        # Leased deliveries (in flight here or elsewhere) are not claimed again: one
        # that settles while the claim runs committed its result before its lease
        # ended, so it is either skipped or read in its new state, never restarted.
        changes = self._changes
        fresh = await self.store.claim_due(self.name, now, limit)
        fill_wait = self._batch_fill_wait(fresh, now)
        if fill_wait:
            await self.store.release([d.id for d in fresh])
            return [], fill_wait
        groups = group_into_requests(fresh, self.destination.batch_max)
        if len(groups) > free:
            if self.coordination is not None:
                await self.store.release([d.id for g in groups[free:] for d in g])
            else:
                self.ready.extend(groups[free:])
            groups = groups[:free]
        if len(fresh) == limit and len(groups) < free:
            return groups, 0  # more may be due beyond this page
        # A page that is not full found everything due, even when it fills every slot:
        # until something changes, no claim (and a commit's deliveries are handed over).
        drained = self.coordination is None and len(fresh) < limit
        if len(groups) == free and not drained:
            return groups, None
        next_due = await self.store.next_due_at(self.name, now)  # SQLite: read with the claim
        if drained:
            self._drained = (changes, next_due)
        if len(groups) == free:
            return groups, None  # a slot that frees wakes the worker
        return groups, None if next_due is None else max(0.0, next_due - now)

    def _page_rows(self) -> int:
        """How many deliveries a claim reads with the store to itself."""
        return max(self.policy.concurrency * self.destination.batch_max, _CLAIM_ROWS)

    async def _claim_head(self, now: float) -> tuple[list[list[DueDelivery]], float | None]:
        """Ordered: only the oldest pending deliveries, and only once they are due."""
        coordination = self.coordination
        if coordination is not None and not await coordination.hold_order(self.name):
            return [], coordination.order_retry  # another process delivers it
        head = await self.store.head_deliveries(self.name, self.destination.batch_max)
        if not head:
            return [], None
        if head[0].next_attempt_at > now:
            return [], head[0].next_attempt_at - now
        # Only the due front of the line: a later message never overtakes an earlier one.
        run = list(itertools.takewhile(lambda d: d.next_attempt_at <= now, head))
        fill_wait = self._batch_fill_wait(run, now)
        if fill_wait:
            return [], fill_wait
        group = group_into_requests(run, self.destination.batch_max)[0]
        claimed = await self.store.claim_listed(group)
        if claimed != group:
            # The head is still leased to a process that died mid-attempt: wait for
            # its lease to run out rather than let a later message overtake it.
            await self.store.release([d.id for d in claimed])
            return [], coordination.order_retry if coordination else _CLAIM_RETRY_DELAY
        return [group], None

    def _batch_fill_wait(self, due: Sequence[DueDelivery], now: float) -> float | None:
        """While a batch is not full and its oldest member young, wait for it to fill."""
        if self.destination.batch_max <= 1 or not due or len(due) >= self.destination.batch_max:
            return None
        waited = now - min(d.next_attempt_at for d in due)
        remaining = self.destination.batch_wait - waited
        return remaining if remaining > 0 and not self._stopping else None

    def _start(self, deliveries: list[DueDelivery]) -> None:
        self.inflight.update(d.id for d in deliveries)
        task = self._event_loop.create_task(self._attempt(deliveries))
        self.requests.add(task)
        self.sending += 1
        self.unsettled += 1
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        # No wake-up: the slots free when the answer comes (``_answered``) or, ordered
        # or shared, when the outcome commits or the deliveries are released (``_settled``).
        self.requests.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "dispatch.attempt_crashed", destination=self.name, error=repr(task.exception())
            )

    async def _attempt(self, deliveries: list[DueDelivery]) -> None:
        handed = False
        try:
            try:
                records, request = await self._deliver(deliveries)
            except Exception as exc:
                # A bug past every guard: hold the deliveries in flight for a while
                # rather than let the next claim send them again at once, forever.
                log.error("dispatch.attempt_crashed", destination=self.name, error=repr(exc))
                await asyncio.sleep(_CRASH_HOLD)
                return
            finally:
                self._answered()
            self._record_soon(deliveries, request, records)
            handed = True
        finally:
            if not handed:
                # Cancelled (a reload or a shutdown past its grace) or crashed: the
                # deliveries are due again, here or in another process.
                self._give_back(deliveries)

    def _record_soon(
        self,
        deliveries: list[DueDelivery],
        request: OutboundRequest | None,
        records: list[AttemptRecord],
    ) -> None:
        """Queue the outcomes for the store's next commit; ``_recorded`` follows it.

        The deliveries stay in flight (and leased) until then: one that reached its
        destination is never claimed and sent again only because its result was not
        yet written.
        """
        try:
            write = asyncio.ensure_future(self._write_outcomes(records))
        except StoreError as exc:
            self._record_later(deliveries, request, records, str(exc))
            return
        self.recording.add(write)
        write.add_done_callback(functools.partial(self._recorded, deliveries, request, records))

    def _recorded(
        self,
        deliveries: list[DueDelivery],
        request: OutboundRequest | None,
        records: list[AttemptRecord],
        write: asyncio.Future[Any],
    ) -> None:
        self.recording.discard(write)
        error = None if write.cancelled() else write.exception()
        if error is None and not write.cancelled():
            self._committed(deliveries, request, records)
            return
        if isinstance(error, StoreError):
            self._record_later(deliveries, request, records, str(error))
            return
        if error is not None:  # a bug in the store: as a crashed attempt
            log.error("dispatch.attempt_crashed", destination=self.name, error=repr(error))
        self._give_back(deliveries)

    def _record_later(
        self,
        deliveries: list[DueDelivery],
        request: OutboundRequest | None,
        records: list[AttemptRecord],
        error: str,
    ) -> None:
        """The store could not take the outcomes: write them again with backoff, in a
        task that a shutdown waits for (and cancels past its grace)."""
        log.error(
            "delivery.record_failed",
            destination=self.name,
            deliveries=len(records),
            error=error,
            retry_in_s=_RECORD_RETRY_FIRST,
        )
        task = self._event_loop.create_task(self._record_again(deliveries, request, records))
        self.requests.add(task)
        task.add_done_callback(self._finished)

    async def _record_again(
        self,
        deliveries: list[DueDelivery],
        request: OutboundRequest | None,
        records: list[AttemptRecord],
    ) -> None:
        recorded = False
        try:
            await asyncio.sleep(_RECORD_RETRY_FIRST)
            await self._record(records, _RECORD_RETRY_FIRST * 2)
            recorded = True
            self._committed(deliveries, request, records)
        finally:
            if not recorded:
                self._give_back(deliveries)

    def _committed(
        self,
        deliveries: list[DueDelivery],
        request: OutboundRequest | None,
        records: list[AttemptRecord],
    ) -> None:
        self._settled(deliveries)
        if any(r.state == "pending" for r in records):
            self.work_arrived()  # a retry: it may come due before the next known one
        self._report(deliveries, request.webhook_id if request else None, records)

    def _settled(self, deliveries: list[DueDelivery]) -> None:
        """The attempt is over: committed, or its deliveries are being released."""
        self.inflight.difference_update(d.id for d in deliveries)
        self.unsettled -= 1
        if self.destination.ordered or self.coordination is not None:
            self.wake.set()  # their slot frees only now

    def _give_back(self, deliveries: list[DueDelivery]) -> None:
        """The attempt ends with no outcome committed: the deliveries are due again."""
        self._settled(deliveries)
        self._release_soon([d.id for d in deliveries])

    def _release_soon(self, delivery_ids: list[int]) -> None:
        """End leases from code that cannot await (a task being cancelled)."""
        task = asyncio.create_task(self._release(delivery_ids))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _release(self, delivery_ids: list[int]) -> None:
        try:
            await self.store.release(delivery_ids)
        except StoreError as exc:  # the lease runs out by itself
            log.warning("dispatch.release_failed", destination=self.name, error=str(exc))
        finally:
            self.work_arrived()

    def _answered(self) -> None:
        self.sending -= 1
        self.wake.set()

    async def _deliver(
        self, deliveries: list[DueDelivery]
    ) -> tuple[list[AttemptRecord], OutboundRequest | None]:
        """Send one request; any error, expected or not, is a failed attempt with backoff.

        A transform that fails makes its delivery dead at once (the same program
        would fail again): retried by hand once the config is fixed.
        """
        request: OutboundRequest | None = None
        transformed: Transformed | None = None
        if self.destination.transform is not None:
            started = time.time()
            try:
                transformed = await self._transform(deliveries[0])
            except TransformFailed as exc:
                return self._transform_failed(deliveries[0], str(exc), started), None
        limited = self.limiter is not None or self.shared_limiter is not None
        slot = await self._take_rate_slot() if limited else None
        started = time.time()
        try:
            timestamp = int(started)
            if len(deliveries) == 1:
                request = self.builder.single(deliveries[0], timestamp, transformed)
            else:
                request = self.builder.batch(deliveries, timestamp)
            answer = await self.sender.send(self.name, request.body, request.pairs)
            outcome, snippet = answer.outcome, answer.snippet
        except Exception as exc:
            # Never a bare re-claim: a crash here would otherwise repeat at once, forever.
            log.error("delivery.internal_error", destination=self.name, error=repr(exc))
            outcome, snippet = retry.Outcome(None, f"internal error: {type(exc).__name__}"), b""
        finally:
            if limited:
                await self._free_rate_slot(slot)
        return self._settle(deliveries, outcome, snippet, started), request

    async def _transform(self, delivery: DueDelivery) -> Transformed:
        program = self.destination.transform
        assert program is not None  # noqa: S101 - checked by the caller
        request = TransformInput(
            body=delivery.body,
            headers=delivery.headers,
            source=delivery.source,
            event_type=delivery.event_type,
            message_id=delivery.message_id,
        )
        return await self.transforms.run(
            program,
            request,
            timeout=self.destination.transform_timeout,
            max_size=self.destination.transform_max_size,
        )

    def _transform_failed(
        self, delivery: DueDelivery, error: str, started: float
    ) -> list[AttemptRecord]:
        """A dead delivery with the transform's error; the destination is not to blame
        (no circuit, no attempt metrics)."""
        metrics.transform_failures.labels(self.name).inc()
        ended = time.time()
        return [
            AttemptRecord(
                delivery_id=delivery.id,
                started_at=started,
                duration_ms=(ended - started) * 1000,
                status=None,
                error=f"transform failed: {error}",
                response_snippet=b"",
                state="dead",
                attempts=delivery.attempts + 1,
                next_attempt_at=ended,
                dead_reason="transform",
            )
        ]

    def _write_outcomes(self, records: list[AttemptRecord]) -> Awaitable[Any]:
        """The outcomes queued for the store's next commit (StoreError if it cannot)."""
        writes = [self.store.record_attempt(r) for r in records]
        return writes[0] if len(writes) == 1 else asyncio.gather(*writes)

    async def _record(self, records: list[AttemptRecord], delay: float) -> None:
        """Commit the outcomes, retrying with backoff (from ``delay``) while the store
        cannot write. The deliveries stay in flight meanwhile (``_record_soon``)."""
        while True:
            try:
                await _unless_cancelled_first(self._write_outcomes(records))
                return
            except StoreError as exc:
                log.error(
                    "delivery.record_failed",
                    destination=self.name,
                    deliveries=len(records),
                    error=str(exc),
                    retry_in_s=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECORD_RETRY_MAX)

    async def _take_rate_slot(self) -> int | None:
        """Wait for a slot of the rate limit; the shared one's slot number, if shared."""
        if self.shared_limiter is not None:
            return await self.shared_limiter.take()
        if self.limiter is None:
            return None
        while (delay := self.limiter.delay(time.time())) != 0:
            if delay is None:
                self._rate_slot_freed.clear()
                await self._rate_slot_freed.wait()
            else:
                await asyncio.sleep(delay)
        self.limiter.started()
        return None

    async def _free_rate_slot(self, slot: int | None) -> None:
        if self.shared_limiter is not None and slot is not None:
            await self.shared_limiter.free(slot)
        elif self.limiter is not None:
            self.limiter.finished(time.time())
            self._rate_slot_freed.set()

    def _settle(
        self,
        deliveries: Sequence[DueDelivery],
        outcome: retry.Outcome,
        snippet: bytes,
        started: float,
    ) -> list[AttemptRecord]:
        """Count the outcome, move the circuit, and decide each delivery's next state."""
        ended = time.time()
        self.attempt_seconds.observe(ended - started)
        self.attempt_outcomes[outcome.kind].inc()
        self.tally.attempted(outcome.succeeded)
        before = self.circuit.state
        change = self.circuit.record(outcome.succeeded, ended)
        if change is not None:
            log.warning("circuit.changed", destination=self.name, state=change)
            self._share_circuit(change)
            # A failed probe re-opens an open circuit: not news for the alerts.
            if before == "closed" or change == "closed":
                self.alerter.circuit_changed(self.name, change)
        records = []
        retry_at: float | None = None
        for delivery in deliveries:
            attempt = delivery.attempts + 1
            decision = retry.decide(
                outcome, attempt, delivery.received_at, ended, self.policy, self.rng
            )
            next_at = decision.next_attempt_at
            if decision.state == "pending":
                # One backoff draw per request: a failed batch comes due again whole.
                retry_at = next_at if retry_at is None else retry_at
                next_at = retry_at
            records.append(
                AttemptRecord(
                    delivery_id=delivery.id,
                    started_at=started,
                    duration_ms=(ended - started) * 1000,
                    status=outcome.status,
                    error=outcome.error,
                    response_snippet=snippet,
                    state=decision.state,
                    attempts=attempt,
                    next_attempt_at=next_at,
                    dead_reason=decision.reason if decision.state == "dead" else None,
                )
            )
        return records

    def _share_circuit(self, state: str) -> None:
        """Tell the other processes: an open circuit stops their claims until its probe."""
        if self.coordination is None:
            return
        open_until = self.circuit.opened_at + self.circuit.cooldown if state == "open" else 0.0
        task = asyncio.create_task(self._set_circuit(self.coordination, open_until))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _set_circuit(self, coordination: Coordination, open_until: float) -> None:
        try:
            await coordination.set_circuit(self.name, open_until)
        except StoreError as exc:
            log.error("circuit.share_failed", destination=self.name, error=str(exc))

    def _report(
        self,
        deliveries: Sequence[DueDelivery],
        webhook_id: str | None,
        records: list[AttemptRecord],
    ) -> None:
        """Count, log and (for dead ones) alert each delivery's outcome."""
        for delivery, record in zip(deliveries, records, strict=True):
            if record.state == "delivered":
                self.delivered.inc()
                if self._log_delivered:
                    fields = self._log_fields(delivery, webhook_id, record)
                    log.debug("delivery.delivered", **fields)
            elif record.state == "dead":
                self.dead.inc()
                self.alerter.delivery_dead(self.name, delivery.message_id)
                fields = self._log_fields(delivery, webhook_id, record)
                log.error("delivery.dead", error=record.error, reason=record.dead_reason, **fields)
            else:
                retry_in = round(record.next_attempt_at - time.time(), 3)
                fields = self._log_fields(delivery, webhook_id, record)
                log.warning("delivery.failed", error=record.error, retry_in_s=retry_in, **fields)

    def _log_fields(
        self, delivery: DueDelivery, webhook_id: str | None, record: AttemptRecord
    ) -> dict[str, Any]:
        return {
            "destination": self.name,
            "message_id": delivery.message_id,
            "webhook_id": webhook_id,
            "attempt": record.attempts,
            "status": record.status,
            "duration_ms": round(record.duration_ms, 1),
        }

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for in-flight requests and the commits of their
        outcomes, then cancel the requests still running.

        A request that ends meanwhile queues its outcome as a new write: waited for
        too, so that a retry it schedules is known before a reload's new worker
        claims (this worker's wake-up would reach no one). An outcome still queued
        past the grace is left to its commit: the store commits what is queued
        before it closes.
        """
        deadline = time.monotonic() + grace
        while waiting := {*self.requests, *self.recording}:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.wait(waiting, timeout=remaining)
        tasks = list(self.requests)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _unless_cancelled_first(write: Awaitable[Any]) -> None:
    """Await a queued write; a cancel meanwhile waits for it to land, then propagates.

    A result already known is never lost to a shutdown or a reload, and its
    deliveries leave ``inflight`` only once it is committed (or failed), so the
    next claim cannot send them again in between.
    """
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await write
        raise
