"""Metrics read at scrape time show what the hot path recorded as plain numbers."""

from __future__ import annotations

import itertools
import os
import pathlib
import random
import subprocess
import sys
from typing import Any

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hookgate import metrics


def last_accepted(source: str) -> float:
    text = generate_latest(metrics.REGISTRY).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "hookgate_source_last_accepted_timestamp_seconds"
                and sample.labels == {"source": source}
            ):
                return float(sample.value)
    raise AssertionError(f"no last-accepted sample for {source}")


def test_last_accepted_time_is_the_tallys_at_scrape_time() -> None:
    tally = metrics.source_tally("metrics-test-source")
    assert last_accepted("metrics-test-source") == tally.last_accepted_at
    tally.webhook_accepted(1_800_000_000.5)
    assert last_accepted("metrics-test-source") == 1_800_000_000.5
    assert tally.accepted == 1


# -- hookgate's own counters and histograms: the same exposition as prometheus-client's --

# Every hookgate metric driven once, in a fresh process (the module's registry is the
# process's). tests/unit/metrics_exposition.txt is what this printed when every counter
# and histogram was prometheus-client's own (main at 43dc7b3): the public contract.
EXPOSITION_SCRIPT = r"""
import re, sys
from prometheus_client import generate_latest
from hookgate import metrics as m

m.webhooks_received.labels("stripe").inc()
m.webhooks_received.labels("stripe").inc()
m.webhooks_received.labels("github").inc()
m.webhooks_duplicate.labels("stripe").inc()
m.webhooks_rejected.labels("", "no_route").inc()
m.webhooks_rejected.labels("stripe", "invalid_signature").inc()
for kind in ("success", "http_error", "timeout", "connection_error"):
    m.attempts.labels("orders", kind)
m.attempts.labels("orders", "success").inc()
m.attempts.labels("orders", "timeout").inc()
m.delivered.labels("orders").inc()
m.dead.labels("orders")
m.dead.labels("billing").inc()
m.transform_failures.labels("billing").inc()
for value in (0.003, 0.25, 0.2500001, 100.0, 0.0):
    m.attempt_seconds.labels("orders").observe(value)
m.attempt_seconds.labels("billing")
m.commit_size.observe(1)
m.commit_size.observe(64)
m.commit_size.observe(1000)
m.commit_seconds.observe(0.0007)
m.alert_evaluations.inc()
m.source_tally("stripe")
m.source_expect_every.labels("stripe").set(60)
m.queue_pending.labels("orders").set(3)
m.queue_dead.set(1)
text = generate_latest(m.REGISTRY).decode()
text = re.sub(
    r"^(\w+_created(?:\{[^}]*\})?|\w+_timestamp_seconds(?:\{[^}]*\})?) \S+$",
    r"\1 <time>",
    text,
    flags=re.M,
)
sys.stdout.write(text)
"""


def test_the_whole_exposition_is_the_one_prometheus_client_wrote() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_DISABLE_CREATED_SERIES"}
    printed = subprocess.run(
        [sys.executable, "-c", EXPOSITION_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    expected = (pathlib.Path(__file__).parent / "metrics_exposition.txt").read_text()
    assert printed == expected


def drive(counter: Any, histogram: Any, values: list[float]) -> None:
    for labels, value in zip(itertools.cycle([("a", "x"), ("b", "y"), ("a", "y")]), values):
        counter.labels(*labels).inc()
        counter.labels(*labels).inc(value)
        histogram.labels(labels[0]).observe(value)


def exposed(registry: CollectorRegistry) -> list[str]:
    """The exposition's lines but the ``_created`` samples (times of making)."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created{" not in line]


@pytest.mark.parametrize("seed", range(5))
def test_counts_and_buckets_match_prometheus_clients_for_the_same_observations(
    seed: int,
) -> None:
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
    rng = random.Random(seed)
    # Values on the bounds themselves (le is inclusive), between them, and past the last.
    values = [rng.choice([*bounds, rng.uniform(0, 40), 0.0]) for _ in range(500)]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    drive(
        metrics.Counter("t_events", "Events.", ["d", "k"], registry=ours),
        metrics.Histogram("t_seconds", "Time.", ["d"], buckets=bounds, registry=ours),
        values,
    )
    drive(
        prometheus_client.Counter("t_events", "Events.", ["d", "k"], registry=theirs),
        prometheus_client.Histogram("t_seconds", "Time.", ["d"], buckets=bounds, registry=theirs),
        values,
    )
    assert exposed(ours) == exposed(theirs)


def test_a_label_set_is_one_value_whatever_the_label_values_type() -> None:
    counter = metrics.Counter("t_typed", "Typed.", ["code"], registry=CollectorRegistry())
    counter.labels(410).inc()  # type: ignore[arg-type]
    counter.labels("410").inc()
    assert counter.labels("410").value == 2


def test_misuse_is_refused_as_prometheus_client_refuses_it() -> None:
    registry = CollectorRegistry(auto_describe=True)
    counter = metrics.Counter("t_used", "Used.", ["a"], registry=registry)
    with pytest.raises(ValueError, match="labels"):
        counter.labels("x", "y")
    with pytest.raises(ValueError, match="labels"):
        counter.inc()
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("x").inc(-1)
    with pytest.raises(ValueError, match="Duplicated"):
        metrics.Counter("t_used", "Again.", registry=registry)
    with pytest.raises(ValueError, match="increasing"):
        metrics.Histogram("t_h", "H.", buckets=(1, 0.5), registry=registry)
