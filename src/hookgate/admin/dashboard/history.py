"""The overview's figures over time, from the metrics hookgate already keeps.

Every ``INTERVAL`` the counters of the metrics registry (webhooks in and rejected,
attempts, the attempt-duration histogram) are copied into a ring: one sample per
interval for the last hour (the charts), one per ``DAY_STEP`` for the last day (the
day's totals). A window's figure is the counter now minus the sample taken at the
window's start; before a full window has passed, since the daemon started (the
counters start at zero with the process). Nothing is written on the hot paths: the
ingress and the workers only increment the counters they always did.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import Metric
from prometheus_client.samples import Sample as PromSample

from hookgate import metrics

INTERVAL = 10.0
HOUR = 3600.0
DAY = 86400.0
DAY_STEP = 600.0

# A counter's key: (kind, label, label...), e.g. ("in", "stripe"),
# ("rejected", "stripe", "bad_signature"), ("le", "orders", "0.25").
Key = tuple[str, ...]


@dataclass(frozen=True)
class Sample:
    at: float
    counts: Mapping[Key, float]

    def delta(self, since: Sample | None) -> dict[Key, float]:
        """How much each counter grew after ``since`` (everything, when None)."""
        before = {} if since is None else since.counts
        return {key: value - before.get(key, 0.0) for key, value in self.counts.items()}


def read_counters(now: float) -> Sample:
    """The counters the overview uses, as they are now."""
    counts: dict[Key, float] = {}
    for key, value in _counter_values():
        counts[key] = counts.get(key, 0.0) + value
    return Sample(now, counts)


def _counter_values() -> Iterator[tuple[Key, float]]:
    for sample in _samples(metrics.webhooks_received.collect(), "_total"):
        yield ("in", sample.labels["source"]), sample.value
    for sample in _samples(metrics.webhooks_rejected.collect(), "_total"):
        yield ("rejected", sample.labels["source"], sample.labels["reason"]), sample.value
    for sample in _samples(metrics.attempts.collect(), "_total"):
        destination, outcome = sample.labels["destination"], sample.labels["outcome"]
        yield ("attempts", destination), sample.value
        if outcome != "success":
            yield ("failures", destination), sample.value
    for sample in _samples(metrics.attempt_seconds.collect(), "_bucket"):
        yield ("le", sample.labels["destination"], sample.labels["le"]), sample.value


def _samples(families: Iterable[Metric], suffix: str) -> Iterator[PromSample]:
    for family in families:
        for sample in family.samples:
            if sample.name.endswith(suffix):
                yield sample


class History:
    """The samples of the last hour and day, taken by ``run()``."""

    def __init__(self) -> None:
        self.hour: deque[Sample] = deque(maxlen=int(HOUR / INTERVAL) + 1)
        self.day: deque[Sample] = deque(maxlen=int(DAY / DAY_STEP) + 1)

    async def run(self) -> None:
        """Take a sample every INTERVAL until cancelled."""
        while True:
            self.take(time.time())
            await asyncio.sleep(INTERVAL)

    def take(self, now: float) -> None:
        sample = read_counters(now)
        self.hour.append(sample)
        if not self.day or now - self.day[-1].at >= DAY_STEP:
            self.day.append(sample)

    def baseline(self, now: float, window: float) -> Sample | None:
        """The latest sample taken at or before ``now - window``; None: since start."""
        ring = self.hour if window <= HOUR else self.day
        start = now - window
        found = None
        for sample in ring:
            if sample.at > start:
                break
            found = sample
        return found

    def series(self, current: Sample) -> list[tuple[Sample, Sample]]:
        """Consecutive pairs of samples over the last hour, ending with ``current``."""
        points = [*self.hour, current]
        return list(itertools.pairwise(points))


def total(delta: Mapping[Key, float], kind: str, name: str | None = None) -> float:
    """The sum of the ``kind`` counters (of ``name`` when given)."""
    return sum(
        value for key, value in delta.items() if key[0] == kind and (name is None or key[1] == name)
    )


def quantile(delta: Mapping[Key, float], q: float, name: str | None = None) -> float | None:
    """The ``q`` quantile of attempt durations in seconds, estimated from the histogram's
    buckets as Prometheus' histogram_quantile does; None without attempts."""
    buckets: dict[float, float] = {}
    for key, value in delta.items():
        if key[0] == "le" and (name is None or key[1] == name):
            bound = float(key[2])
            buckets[bound] = buckets.get(bound, 0.0) + value
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            share = 0.0 if count == below else (rank - below) / (count - below)
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower
