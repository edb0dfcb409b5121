"""Prometheus metrics, in hookgate's own registry, exposed at the admin ``/metrics``.

Counters move where things happen (ingress, dispatch, the outbox writer); queue
depths and circuit states are read at scrape time, so the hot paths pay only
for a counter increment.

The counters and histograms that move per webhook or per delivery are hookgate's own
(``Counter``, ``Histogram``): plain numbers per label set, a bucket found by
``bisect``, and no lock, read by the registry at scrape time as the metric families
prometheus-client would build. prometheus-client's own classes take a lock per
``inc`` and search the buckets in Python: 1.9-2.2 µs of the event loop per webhook
where these take 0.3 (docs/benchmarks.md, "Issue 11: metrics and the outcome's
write"). The exposition is
unchanged: names, help, types, labels, buckets and the ``_created`` series. Each
label set is bumped from one thread only (the event loop's; the outbox writer's
figures too, through ``call_soon_threadsafe``): that is what makes a plain ``+=``
exact. prometheus-client still writes the text format and keeps the gauges, which
move only at scrape time or at a reload.

The tallies (``source_tally``, ``destination_tally``) are the same events as plain
integers, which the alert rules (hookgate.outbound.alerts) read on their interval:
the ingress and the workers bump them, and never wait for the alerts.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)

# prometheus-client's own switch for the ``_created`` series, read the way it reads it.
_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in (
    "true",
    "1",
    "t",
)


class CounterValue:
    """One label set's count."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        """Count ``amount`` (at least 0) more."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class HistogramValue:
    """One label set's observations: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("_bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose bound is >= it (``le``)."""
        self.counts[bisect.bisect_left(self._bounds, amount)] += 1
        self.sum += amount


V = TypeVar("V", CounterValue, HistogramValue)


class _Family(Generic[V]):
    """A metric's label sets, read by the registry at scrape time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], V] = {}
        if not self.labelnames:
            self._values[()] = self._new_value()
        registry.register(self)

    def labels(self, *values: str) -> V:
        """The value of one label set (its values in ``labelnames``' order), made the
        first time it is asked for. Callers on a hot path keep it."""
        value = self._values.get(values)
        if value is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} has the labels {self.labelnames}")
            key = tuple(str(v) for v in values)
            value = self._values.get(key)
            if value is None:
                value = self._values[key] = self._new_value()
        return value

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> list[Metric]:
        raise NotImplementedError

    def _label_sets(self) -> list[tuple[tuple[str, ...], V]]:
        # A copy: a label set made while the registry reads must not break the read.
        return list(self._values.items())

    def _unlabelled(self) -> V:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels: use labels(...)")
        return self._values[()]

    def _new_value(self) -> V:
        raise NotImplementedError

    def _family(self) -> Metric:
        raise NotImplementedError


class Counter(_Family[CounterValue]):
    """A counter exposed as prometheus-client's ``Counter`` of the same name would be."""

    def inc(self, amount: float = 1.0) -> None:
        """Count on a counter without labels."""
        self._unlabelled().inc(amount)

    def _new_value(self) -> CounterValue:
        return CounterValue()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> list[Metric]:
        family = self._family()
        for labels, value in self._label_sets():
            family.add_metric(labels, value.value, created=value.created if _CREATED else None)
        return [family]


class Histogram(_Family[HistogramValue]):
    """A histogram exposed as prometheus-client's ``Histogram`` of the same name and
    buckets would be."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.bounds = tuple(float(bound) for bound in buckets)
        if list(self.bounds) != sorted(set(self.bounds)) or math.inf in self.bounds:
            raise ValueError("buckets: finite bounds in increasing order")
        # The ``le`` labels as prometheus-client writes them (0.005, 1.0, +Inf).
        go_floats = (floatToGoString(bound) for bound in self.bounds)  # type: ignore[no-untyped-call]
        self._les = [*go_floats, "+Inf"]
        super().__init__(name, documentation, labelnames, registry=registry)

    def observe(self, amount: float) -> None:
        """Observe on a histogram without labels."""
        self._unlabelled().observe(amount)

    def _new_value(self) -> HistogramValue:
        return HistogramValue(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> list[Metric]:
        family = self._family()
        for labels, value in self._label_sets():
            cumulative = itertools.accumulate(value.counts)
            buckets = [(le, float(n)) for le, n in zip(self._les, cumulative, strict=True)]
            family.add_metric(labels, buckets, value.sum)
            if _CREATED:
                named = dict(zip(self.labelnames, labels, strict=True))
                family.samples.append(Sample(f"{self.name}_created", named, value.created))
        return [family]


webhooks_received = Counter(
    "hookgate_webhooks_received",
    "Webhooks accepted and committed (202), by source.",
    ["source"],
    registry=REGISTRY,
)
webhooks_duplicate = Counter(
    "hookgate_webhooks_duplicate",
    "Repeats of an event id inside the dedup window (200, not delivered again).",
    ["source"],
    registry=REGISTRY,
)
webhooks_rejected = Counter(
    "hookgate_webhooks_rejected",
    "Inbound requests refused, by source (empty when no source matched) and reason.",
    ["source", "reason"],
    registry=REGISTRY,
)
attempts = Counter(
    "hookgate_delivery_attempts",
    "HTTP requests to destinations, by outcome: success, http_error, timeout, connection_error.",
    ["destination", "outcome"],
    registry=REGISTRY,
)
delivered = Counter(
    "hookgate_deliveries_delivered",
    "Deliveries that reached their destination.",
    ["destination"],
    registry=REGISTRY,
)
dead = Counter(
    "hookgate_deliveries_dead",
    "Deliveries given up (max attempts, max age or 410), retryable by hand.",
    ["destination"],
    registry=REGISTRY,
)
transform_failures = Counter(
    "hookgate_transform_failures",
    "Deliveries made dead because their destination's transform failed (no request sent).",
    ["destination"],
    registry=REGISTRY,
)
attempt_seconds = Histogram(
    "hookgate_delivery_attempt_seconds",
    "Duration of one request to a destination.",
    ["destination"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
queue_pending = Gauge(
    "hookgate_queue_pending",
    "Pending deliveries per destination.",
    ["destination"],
    registry=REGISTRY,
)
queue_oldest_age = Gauge(
    "hookgate_queue_oldest_pending_age_seconds",
    "Age of the oldest message with a pending delivery, per destination.",
    ["destination"],
    registry=REGISTRY,
)
queue_dead = Gauge(
    "hookgate_queue_dead",
    "Dead deliveries kept in the store.",
    registry=REGISTRY,
)
circuit_state = Gauge(
    "hookgate_circuit_state",
    "Circuit state per destination: 0 closed, 1 half-open, 2 open.",
    ["destination"],
    registry=REGISTRY,
)
destination_paused = Gauge(
    "hookgate_destination_paused",
    "1 while a destination is paused.",
    ["destination"],
    registry=REGISTRY,
)
commit_size = Histogram(
    "hookgate_group_commit_webhooks",
    "Webhooks committed together in one transaction (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
commit_seconds = Histogram(
    "hookgate_group_commit_seconds",
    "Duration of one outbox transaction, fsync included.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
    registry=REGISTRY,
)

source_last_accepted = Gauge(
    "hookgate_source_last_accepted_timestamp_seconds",
    "Unix time of the source's last accepted webhook (202); until the first, the time"
    " hookgate began serving the source (its start, or the reload that added it).",
    ["source"],
    registry=REGISTRY,
)
source_expect_every = Gauge(
    "hookgate_source_expect_every_seconds",
    "The source's expect_every: it is silent once nothing was accepted for longer."
    " Only for the sources that set it.",
    ["source"],
    registry=REGISTRY,
)
alert_evaluations = Counter(
    "hookgate_alert_evaluations",
    "Evaluations of the alert rules, one every alerts.interval while [alerts] is set.",
    registry=REGISTRY,
)

CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class SourceTally:
    """One source's webhooks as plain counters, for the alert rules.

    Only the event loop's thread touches it: no lock, a bump is an integer addition.
    """

    __slots__ = ("accepted", "last_accepted_at", "signature_failures")

    def __init__(self, name: str) -> None:
        self.accepted = 0
        self.signature_failures = 0
        # Until the first webhook, silence counts from when the source was first served.
        self.last_accepted_at = time.time()
        # Read when /metrics is scraped: the ingress pays for no gauge (and its lock).
        source_last_accepted.labels(name).set_function(lambda: self.last_accepted_at)

    def webhook_accepted(self, now: float) -> None:
        """A webhook was committed and answered 202 at unix time ``now``."""
        self.accepted += 1
        self.last_accepted_at = now


class DestinationTally:
    """One destination's attempts as plain counters, for the alert rules."""

    __slots__ = ("attempts", "failures")

    def __init__(self) -> None:
        self.attempts = 0
        self.failures = 0

    def attempted(self, succeeded: bool) -> None:
        self.attempts += 1
        if not succeeded:
            self.failures += 1


_source_tallies: dict[str, SourceTally] = {}
_destination_tallies: dict[str, DestinationTally] = {}


def source_tally(name: str) -> SourceTally:
    """The tally of source ``name``, made the first time it is asked for."""
    tally = _source_tallies.get(name)
    if tally is None:
        tally = _source_tallies[name] = SourceTally(name)
    return tally


def destination_tally(name: str) -> DestinationTally:
    """The tally of destination ``name``, made the first time it is asked for."""
    tally = _destination_tallies.get(name)
    if tally is None:
        tally = _destination_tallies[name] = DestinationTally()
    return tally
