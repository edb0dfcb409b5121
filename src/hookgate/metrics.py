"""Prometheus metrics, in hookgate's own registry, exposed at the admin ``/metrics``.

Counters move where things happen (ingress, dispatch, the outbox writer); queue
depths and circuit states are read at scrape time, so the hot paths pay only
for a counter increment.
"""

from __future__ import annotations

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

CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
