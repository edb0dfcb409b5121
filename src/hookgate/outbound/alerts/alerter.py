"""The Alerter: turns what happened into alert messages in the outbox.

An alert is a message of the internal source ``hookgate`` with one delivery to the
internal destination ``_alerts``: it is committed to the outbox and delivered with
the same retries, signature and visibility as any webhook. Dead deliveries are
summed per destination over ``alerts.interval`` (one alert, not one per message);
circuit changes go out at once; a backlog alert fires once when a destination's
oldest pending message passes ``alerts.backlog_age`` and again only after it
recovered. Every ``interval`` the rules of ``watch`` (failure rate, silence,
traffic spike, signature failures) are evaluated too, each alerting once when its
condition starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import structlog

from hookgate import metrics
from hookgate.config import ALERT_DESTINATION, ALERT_SOURCE, AlertsConfig, Config
from hookgate.errors import StoreError
from hookgate.outbound.alerts.watch import Watch
from hookgate.store import NewMessage, Store, format_time

log = structlog.get_logger("hookgate.alerts")

_SAMPLE_IDS = 10
_IDLE_INTERVAL = 30.0


class Alerter:
    """Collects what happened and turns it into alert messages in the outbox."""

    def __init__(self, store: Store, config: AlertsConfig | None) -> None:
        self.store = store
        self.config = config
        self._dead: dict[str, list[str]] = {}
        self._dead_counts: dict[str, int] = {}
        self._backlogged: set[str] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self.watch = Watch()

    def apply(self, config: Config) -> None:
        """Take a (re)loaded config: [alerts] and the sources and destinations to watch."""
        self.config = config.alerts
        self.watch.apply(config)

    def delivery_dead(self, destination: str, message_id: str) -> None:
        if self.config is None or destination == ALERT_DESTINATION:
            return
        self._dead_counts[destination] = self._dead_counts.get(destination, 0) + 1
        sample = self._dead.setdefault(destination, [])
        if len(sample) < _SAMPLE_IDS:
            sample.append(message_id)

    def circuit_changed(self, destination: str, state: str) -> None:
        if self.config is None or destination == ALERT_DESTINATION or state == "half_open":
            return
        kind = "circuit.opened" if state == "open" else "circuit.closed"
        task = asyncio.create_task(self._emit(kind, {"destination": destination}))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def run(self) -> None:
        """Every ``interval``: send the summed dead deliveries, check backlogs, evaluate
        the rules."""
        while True:
            # A reload may add or remove [alerts]: the loop keeps running either way.
            await asyncio.sleep(self.config.interval if self.config else _IDLE_INTERVAL)
            if self.config is not None:
                await self.flush()

    async def flush(self) -> None:
        dead, counts = self._dead, self._dead_counts
        self._dead, self._dead_counts = {}, {}
        for destination, count in counts.items():
            await self._emit(
                "delivery.dead",
                {"destination": destination, "count": count, "message_ids": dead[destination]},
            )
        await self._check_backlog()
        if self.config is not None:
            for alert in self.watch.evaluate(self.config):
                await self._emit(alert.kind, alert.data)
            metrics.alert_evaluations.inc()

    async def _check_backlog(self) -> None:
        if self.config is None:
            return
        try:
            stats = await self.store.queue_stats()
        except StoreError:
            return
        now = time.time()
        for name, queue in stats.destinations.items():
            oldest = queue.oldest_pending_at
            old = oldest is not None and now - oldest > self.config.backlog_age
            if old and name not in self._backlogged and name != ALERT_DESTINATION:
                self._backlogged.add(name)
                age = round(now - (oldest or now), 1)
                await self._emit(
                    "backlog.old",
                    {"destination": name, "pending": queue.pending, "oldest_pending_age_s": age},
                )
            elif not old:
                self._backlogged.discard(name)
        self._backlogged &= set(stats.destinations)

    async def _emit(self, kind: str, data: dict[str, Any]) -> None:
        now = time.time()
        body = orjson.dumps({"type": kind, "timestamp": format_time(now), "data": data})
        message = NewMessage(
            source=ALERT_SOURCE,
            received_at=now,
            event_type=kind,
            event_id=None,
            dedup_window=0.0,
            headers=b'{"content-type":"application/json"}',
            body=body,
            destinations=(ALERT_DESTINATION,),
        )
        try:
            accepted = await self.store.accept(message)
        except StoreError as exc:
            log.error("alert.not_stored", kind=kind, error=str(exc))
            return
        log.info("alert.queued", kind=kind, message_id=accepted.message_id, **data)
