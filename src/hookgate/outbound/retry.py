"""The retry policy: pure functions from an attempt's outcome to the delivery's next state."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass

from hookgate.config import DeliveryPolicy
from hookgate.store import DeliveryState

# Past this, 2**n only overflows; max_backoff caps the delay long before.
_MAX_EXPONENT = 62


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt produced: an HTTP status, or an error without one."""

    status: int | None
    error: str | None = None
    retry_after: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def kind(self) -> str:
        """success, http_error, timeout or connection_error (a metrics label)."""
        if self.status is not None:
            return "success" if self.succeeded else "http_error"
        return "timeout" if self.error == "timeout" else "connection_error"


@dataclass(frozen=True, slots=True)
class Decision:
    state: DeliveryState
    next_attempt_at: float
    reason: str


def backoff_delay(attempts: int, policy: DeliveryPolicy, rng: random.Random) -> float:
    """Exponential backoff with full jitter after ``attempts`` failed attempts (>= 1)."""
    exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
    ceiling = min(policy.max_backoff, policy.initial_backoff * 2**exponent)
    return rng.uniform(0, ceiling)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit, not to float()
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def decide(
    outcome: Outcome,
    attempts: int,
    received_at: float,
    now: float,
    policy: DeliveryPolicy,
    rng: random.Random,
) -> Decision:
    """The delivery's state after its ``attempts``-th attempt ended with ``outcome``."""
    if outcome.succeeded:
        return Decision("delivered", now, "delivered")
    if outcome.status == 410:
        return Decision("dead", now, "gone")
    if attempts >= policy.max_attempts:
        return Decision("dead", now, "max_attempts")
    if now - received_at >= policy.max_age:
        return Decision("dead", now, "max_age")
    delay = backoff_delay(attempts, policy, rng)
    if outcome.status in (429, 503):
        wait = parse_retry_after(outcome.retry_after, now)
        if wait is not None:
            delay = min(wait, policy.max_backoff)
    return Decision("pending", now + delay, "retry")
