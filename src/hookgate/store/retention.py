"""Retention: prune delivered and dead messages older than ``storage.retention``.

Deletes go through the outbox writer in small batches, each its own short
transaction between ingest commits, so pruning never pins the database.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from hookgate.errors import StoreError
from hookgate.store import Store

log = structlog.get_logger("hookgate.retention")

BATCH = 500
INTERVAL = 60.0
# A pause between batches leaves the writer free for ingest while a backlog is pruned.
_PAUSE_BETWEEN_BATCHES = 0.05


async def prune_once(store: Store, retention: float) -> int:
    """Prune everything older than ``retention`` seconds; return how many messages went."""
    cutoff = time.time() - retention
    total = 0
    while True:
        deleted = await store.prune(cutoff, BATCH)
        total += deleted
        if deleted < BATCH:
            return total
        await asyncio.sleep(_PAUSE_BETWEEN_BATCHES)


async def run(store: Store, retention: float, interval: float = INTERVAL) -> None:
    """Prune now and then every ``interval`` seconds, until cancelled."""
    while True:
        try:
            deleted = await prune_once(store, retention)
        except StoreError as exc:
            log.error("retention.failed", error=str(exc))
        else:
            if deleted:
                log.info("retention.pruned", messages=deleted)
        await asyncio.sleep(interval)
