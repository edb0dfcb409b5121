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
    """At most ``rate`` requests in any one-second window (a sliding window log).

    A plain token bucket lets a full bucket plus a second's refill through in one
    window, twice the rate; the log of the last sends never does. Below one request
    per second, requests are spaced ``1 / rate`` apart instead.
    """

    def __init__(self, rate: float) -> None:
        self.count = max(1, math.floor(rate))
        self.window = 1.0 if rate >= 1 else 1.0 / rate
        self._sent: deque[float] = deque(maxlen=self.count)

    def delay(self, now: float) -> float:
        """Seconds to wait before a request may go at ``now`` (0: it may go now)."""
        if len(self._sent) < self.count:
            return 0.0
        return max(0.0, self._sent[0] + self.window - now)

    def record(self, now: float) -> None:
        """A request went at ``now``."""
        self._sent.append(now)


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
