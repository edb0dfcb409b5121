"""Prometheus metrics, in hookgate's own registry, exposed at the admin ``/metrics``.

Counters move where things happen (ingress, dispatch, the outbox writer); queue
depths and circuit states are read at scrape time, so the hot paths pay only
for a counter increment.

The tallies (``source_tally``, ``destination_tally``) are the same events as plain
integers, which the alert rules (hookgate.outbound.alerts) read on their interval:
the ingress and the workers bump them, and never wait for the alerts.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

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
