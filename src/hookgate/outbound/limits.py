"""Flow control for one destination: a rate limiter and a circuit breaker.

Both are plain state machines over a clock the caller passes in, so they are
tested without sleeping; the dispatcher does the waiting.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]


class RateLimiter:
    """At most ``rate`` requests in any one-second window, as the receiver counts them.

    A request holds one of ``rate`` slots from the moment it starts until one second
    after it finished. The receiver sees each request somewhere between its start
    and its end, so two requests that share a slot arrive at least a second apart,
    however long each took on the wire: no one-second window at the receiver ever
    holds more than ``rate`` (a token bucket lets twice that through at a window
    boundary, and counting only from the send lets a few milliseconds of latency
    push the next burst into the receiver's same second). Below one request per
    second, one slot is held for ``1 / rate`` seconds after each request.
    """

    def __init__(self, rate: float) -> None:
        self.count = max(1, math.floor(rate))
        self.window = 1.0 if rate >= 1 else 1.0 / rate
        self.running = 0
        self._finished: deque[float] = deque()

    def delay(self, now: float) -> float | None:
        """Seconds to wait before a request may start at ``now``.

        0: it may start now. None: every slot is held by a request still running,
        so the wait ends with one of them (``finished``), not at a known time.
        """
        while self._finished and self._finished[0] + self.window <= now:
            self._finished.popleft()
        if self.running + len(self._finished) < self.count:
            return 0.0
        if self._finished:
            return self._finished[0] + self.window - now
        return None

    def started(self) -> None:
        """A request starts and takes a slot (until one window after it finishes)."""
        self.running += 1

    def finished(self, now: float) -> None:
        """A request ended at ``now``: its slot frees one window later."""
        self.running -= 1
        self._finished.append(now)


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; one probe after ``cooldown`` decides.

    closed: attempts flow. open: no attempts (deliveries wait, their attempts are
    not spent) until ``cooldown`` has passed. half_open: one probe attempt; its
    success closes the circuit, its failure opens it for another cooldown.
    """

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.state: CircuitState = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False

    def allows(self, now: float) -> bool:
        """May an attempt start at ``now``? In half-open, only one (the probe) may."""
        if self.state == "open" and now - self.opened_at >= self.cooldown:
            self.state = "half_open"
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def reopens_in(self, now: float) -> float | None:
        """Seconds until an open circuit lets a probe through (None unless open)."""
        if self.state != "open":
            return None
        return max(0.0, self.opened_at + self.cooldown - now)

    def record(self, succeeded: bool, now: float) -> CircuitState | None:
        """Count an attempt's outcome; return the new state when it changed."""
        before = self.state
        self._probing = False
        if succeeded:
            self.failures = 0
            self.state = "closed"
        else:
            self.failures += 1
            if self.state == "half_open" or self.failures >= self.threshold:
                self.state = "open"
                self.opened_at = now
        return self.state if self.state != before else None
