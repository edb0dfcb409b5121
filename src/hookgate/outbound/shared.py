"""A destination's rate limit across every process that shares the store.

The same rule as ``RateLimiter`` (a slot held from a request's start until one window
after its end), with the slots in the shared database, so that the receiver never
sees more than the limit in any window whatever the number of processes.
"""

from __future__ import annotations

import asyncio

import structlog

from hookgate.errors import StoreError
from hookgate.outbound.limits import RateLimiter
from hookgate.store import Coordination

log = structlog.get_logger("hookgate.dispatch")

# A slot is held at most this much past a request's timeout and window, should the
# process die before freeing it.
_HOLD_SLACK = 5.0


class SharedRateLimiter:
    def __init__(
        self, coordination: Coordination, destination: str, rate: float, timeout: float
    ) -> None:
        local = RateLimiter(rate)
        self.count = local.count
        self.window = local.window
        self.hold = timeout + self.window + _HOLD_SLACK
        self._coordination = coordination
        self._destination = destination
        # One request of this process asks the database at a time; the others queue here.
        self._turn = asyncio.Lock()

    async def take(self) -> int:
        """Wait for a free slot and hold it; its number."""
        async with self._turn:
            while True:
                slot, wait = await self._coordination.take_rate_slot(
                    self._destination, self.count, self.window, self.hold
                )
                if slot is not None:
                    return slot
                await asyncio.sleep(wait)

    async def free(self, slot: int) -> None:
        """The request ended: its slot frees a window from now (or at its hold, on error)."""
        try:
            await self._coordination.free_rate_slot(self._destination, slot, self.window)
        except StoreError as exc:
            log.warning("rate_limit.free_failed", destination=self._destination, error=str(exc))
