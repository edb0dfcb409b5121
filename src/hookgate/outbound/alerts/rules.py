"""The alert conditions as pure state machines: fed the time and counter totals, each
says when its condition starts and when it ends.

A rule watches one destination or one source. ``observe`` returns an ``Alert`` only
on a change: once when the condition starts, once when it ends, with the figures
that decided it; otherwise None. Thresholds come from ``[alerts]`` at every call, so
a reload applies at the next evaluation. Times are seconds on a clock that does not
jump (the Alerter passes ``time.monotonic()``), except for ``Silence``, which
compares the wall-clock times of webhooks. Nothing here does I/O: the rules are
tested by table (tests/unit/outbound/test_alert_rules.py).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from hookgate.config import AlertsConfig
from hookgate.store import format_time


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert to send: its ``kind`` (the webhook's ``type``) and its ``data``."""

    kind: str
    data: dict[str, Any]


class Window:
    """How much a counter grew over the last ``span`` seconds, from its totals.

    One snapshot is kept per evaluation. The window starts at the newest snapshot at
    least ``span`` old (the oldest one, until there is such a snapshot), so a full
    window covers ``span`` plus at most one evaluation interval.
    """

    def __init__(self, now: float, total: int) -> None:
        self._snapshots: deque[tuple[float, int]] = deque([(now, total)])

    def add(self, now: float, total: int, span: float) -> tuple[int, float]:
        """Record ``total`` at ``now``; return its increase over the window and the
        seconds that increase covers."""
        snapshots = self._snapshots
        snapshots.append((now, total))
        while len(snapshots) > 1 and snapshots[1][0] <= now - span:
            snapshots.popleft()
        start, base = snapshots[0]
        return total - base, now - start

    @property
    def start(self) -> tuple[float, int]:
        """The window's first snapshot: (time, total)."""
        return self._snapshots[0]


class FailureRate:
    """The share of a destination's attempts that failed over ``failure_window``.

    Starts when the window holds at least ``failure_min_attempts`` attempts and more
    than ``failure_rate`` of them failed. Ends when the window holds attempts and at
    most ``failure_rate`` of them failed: a window without attempts proves nothing
    (an open circuit makes none), so the alert stays until attempts succeed again.
    """

    def __init__(self, destination: str, now: float, attempts: int, failures: int) -> None:
        self.destination = destination
        self.attempts = Window(now, attempts)
        self.failures = Window(now, failures)
        self.firing = False

    def observe(
        self, now: float, attempts_total: int, failures_total: int, config: AlertsConfig
    ) -> Alert | None:
        span = config.failure_window
        attempts, _ = self.attempts.add(now, attempts_total, span)
        failures, _ = self.failures.add(now, failures_total, span)
        rate = failures / attempts if attempts else 0.0
        above = rate > config.failure_rate
        if self.firing:
            changed = attempts > 0 and not above
        else:
            changed = above and attempts >= config.failure_min_attempts
        if not changed:
            return None
        self.firing = not self.firing
        return Alert(
            "destination.failing" if self.firing else "destination.recovered",
            {
                "destination": self.destination,
                "rate": round(rate, 3),
                "failures": failures,
                "attempts": attempts,
                "window_s": float(span),
                "threshold": config.failure_rate,
                "min_attempts": config.failure_min_attempts,
            },
        )


class Silence:
    """A source that accepted nothing for longer than its ``expect_every``.

    Starts once the last accepted webhook (or, before the first, the time hookgate
    began serving the source) is more than ``expect_every`` ago; ends at the next
    accepted webhook. ``now`` and the times are unix seconds.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.silent_since: float | None = None
        self._accepted_then = 0

    @property
    def firing(self) -> bool:
        return self.silent_since is not None

    def observe(
        self, now: float, accepted: int, last_accepted_at: float, expect_every: float
    ) -> Alert | None:
        since = self.silent_since
        if since is None:
            if now - last_accepted_at <= expect_every:
                return None
            self.silent_since, self._accepted_then = last_accepted_at, accepted
            return Alert(
                "source.silent",
                {
                    "source": self.source,
                    "silent_for_s": round(now - last_accepted_at, 3),
                    "expect_every_s": float(expect_every),
                    "silent_since": format_time(last_accepted_at),
                },
            )
        if accepted == self._accepted_then:
            return None
        self.silent_since = None
        return Alert(
            "source.resumed",
            {
                "source": self.source,
                "silent_for_s": round(last_accepted_at - since, 3),
                "expect_every_s": float(expect_every),
                "silent_since": format_time(since),
                "resumed_at": format_time(last_accepted_at),
            },
        )


class TrafficSpike:
    """A source's accepted webhooks per second over ``traffic_window`` against its
    usual rate.

    The usual rate (the baseline) starts at the rate of the first full window, then
    learns, as an exponentially weighted moving average with time constant
    ``traffic_baseline``, from the traffic that leaves the window: a rise still in
    the window is never its own yardstick. Starts when the window's rate is at least
    ``traffic_floor`` and more than ``traffic_spike_factor`` times the baseline; ends
    when either no longer holds. The traffic of a spike is never learnt, unless the
    spike lasts ``traffic_baseline``: then it is the usual rate, the alert ends and
    the baseline starts again from the current rate.
    """

    def __init__(self, source: str, now: float, accepted: int) -> None:
        self.source = source
        self.window = Window(now, accepted)
        self.baseline: float | None = None
        self.spike_started: float | None = None
        # Traffic from before this time is not learnt: it was in a spike's window.
        self._learn_after = now

    @property
    def firing(self) -> bool:
        return self.spike_started is not None

    def observe(self, now: float, accepted: int, config: AlertsConfig) -> Alert | None:
        leaving = self.window.start
        count, covered = self.window.add(now, accepted, config.traffic_window)
        self._learn(leaving, self.window.start, config.traffic_baseline)
        if covered < config.traffic_window or covered <= 0:
            return None  # not yet a full window
        rate = count / covered
        baseline = self.baseline
        if baseline is None:
            self.baseline, self._learn_after = rate, now
            return None
        spiking = rate >= config.traffic_floor and rate > config.traffic_spike_factor * baseline
        started = self.spike_started
        if started is not None and spiking and now - started >= config.traffic_baseline:
            self.baseline, spiking = rate, False  # it lasted: the usual rate now
        if spiking == self.firing:
            return None
        self.spike_started = now if spiking else None
        self._learn_after = math.inf if spiking else now
        return Alert(
            "source.traffic_spike" if spiking else "source.traffic_normal",
            {
                "source": self.source,
                "rate": round(rate, 3),
                "count": count,
                "window_s": float(config.traffic_window),
                "baseline": round(baseline, 3),
                "factor": config.traffic_spike_factor,
                "floor": config.traffic_floor,
            },
        )

    def _learn(self, old: tuple[float, int], new: tuple[float, int], time_constant: float) -> None:
        """Move the baseline by the traffic between ``old`` and ``new``, which left the window."""
        (start, before), (end, after) = old, new
        if self.baseline is None or end <= start or start < self._learn_after:
            return
        weight = 1.0 - math.exp(-(end - start) / time_constant)
        self.baseline += weight * ((after - before) / (end - start) - self.baseline)


class SignatureFailures:
    """A source's requests refused for an invalid signature (401), counted over
    ``signature_window``: starts at ``signature_failures`` of them, ends below."""

    def __init__(self, source: str, now: float, failures: int) -> None:
        self.source = source
        self.window = Window(now, failures)
        self.firing = False

    def observe(self, now: float, failures_total: int, config: AlertsConfig) -> Alert | None:
        span = config.signature_window
        count, _ = self.window.add(now, failures_total, span)
        over = count >= config.signature_failures
        if over == self.firing:
            return None
        self.firing = over
        return Alert(
            "source.signature_failures" if over else "source.signature_normal",
            {
                "source": self.source,
                "count": count,
                "window_s": float(span),
                "threshold": config.signature_failures,
            },
        )
