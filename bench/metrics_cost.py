"""What hookgate's metrics cost per webhook on the event loop, and per scrape.

The calls a webhook makes, as their call sites make them (the metric children kept by
the caller, inbound/listener.py and outbound/worker.py): at ingest the received
counter and the source's tally; per delivery the attempt-duration histogram, the
outcome's counter, the destination's tally and the delivered counter. Timed with
hookgate's metrics (``hookgate.metrics``: plain numbers read at scrape time) and, as
the baseline in the same run, with prometheus-client's ``Counter`` and ``Histogram``
of the same names, labels and buckets in a registry of their own. Then one scrape
(``generate_latest`` of each registry) with --destinations label sets filled.

Usage: python bench/metrics_cost.py [--calls 200000] [--destinations 20]
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import prometheus_client

from hookgate import metrics

ROUNDS = 7
OUTCOMES = ("success", "http_error", "timeout", "connection_error")


def prometheus_twins() -> tuple[prometheus_client.CollectorRegistry, dict[str, Any]]:
    """prometheus-client's own metric of each of hookgate's counters and histograms."""
    registry = prometheus_client.CollectorRegistry(auto_describe=True)
    twins: dict[str, Any] = {}
    for name, value in vars(metrics).items():
        if isinstance(value, metrics.Histogram):
            twins[name] = prometheus_client.Histogram(
                value.name,
                value.documentation,
                value.labelnames,
                buckets=value.bounds,
                registry=registry,
            )
        elif isinstance(value, metrics.Counter):
            twins[name] = prometheus_client.Counter(
                value.name, value.documentation, value.labelnames, registry=registry
            )
    return registry, twins


def webhook_calls(family: Callable[[str], Any], tallies: bool) -> Callable[[float], None]:
    """One webhook's metric calls, ingest then delivery, with the children kept."""
    received = family("webhooks_received").labels("bench")
    attempt_seconds = family("attempt_seconds").labels("sink")
    outcomes = {kind: family("attempts").labels("sink", kind) for kind in OUTCOMES}
    delivered = family("delivered").labels("sink")
    source = metrics.source_tally("bench")
    destination = metrics.destination_tally("sink")

    def call(duration: float) -> None:
        received.inc()
        if tallies:
            source.webhook_accepted(duration)
        attempt_seconds.observe(duration)
        outcomes["success"].inc()
        if tallies:
            destination.attempted(True)
        delivered.inc()

    return call


def time_calls(call: Callable[[float], None], durations: list[float]) -> float:
    """µs of CPU per webhook: the median of ROUNDS passes over ``durations``."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.thread_time()
        for duration in durations:
            call(duration)
        rounds.append((time.thread_time() - started) / len(durations) * 1e6)
    return statistics.median(rounds)


def time_scrape(registry: prometheus_client.CollectorRegistry) -> float:
    """ms of CPU per ``generate_latest``: the median of ROUNDS."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.thread_time()
        prometheus_client.generate_latest(registry)
        rounds.append((time.thread_time() - started) * 1e3)
    return statistics.median(rounds)


def fill(family: Callable[[str], Any], destinations: int) -> None:
    for n in range(destinations):
        name = f"destination-{n}"
        family("attempt_seconds").labels(name).observe(0.002)
        for kind in OUTCOMES:
            family("attempts").labels(name, kind).inc()
        family("delivered").labels(name).inc()
        family("dead").labels(name).inc()
        family("webhooks_received").labels(f"source-{n}").inc()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--destinations", type=int, default=20)
    args = parser.parse_args()

    theirs_registry, twins = prometheus_twins()
    ours: Callable[[str], Any] = lambda name: getattr(metrics, name)  # noqa: E731
    theirs: Callable[[str], Any] = twins.__getitem__
    rng = random.Random(1)
    # A delivery's duration on loopback, now and then a slow one.
    durations = [
        rng.choice([rng.uniform(0.0003, 0.004), rng.uniform(0.004, 2)]) for _ in range(1000)
    ]
    durations *= args.calls // len(durations)

    print(f"{len(durations):,} webhooks, µs of CPU per webhook (median of {ROUNDS} passes)")
    for tallies in (False, True):
        label = "metrics and the alert tallies" if tallies else "metrics only"
        base = time_calls(webhook_calls(theirs, tallies), durations)
        mine = time_calls(webhook_calls(ours, tallies), durations)
        print(
            f"  {label:<32} prometheus-client {base:5.2f}  hookgate's {mine:5.2f}"
            f"  = {mine / base:.2f}x, {base - mine:.2f} µs less"
        )
    fill(theirs, args.destinations)
    fill(ours, args.destinations)
    base, mine = time_scrape(theirs_registry), time_scrape(metrics.REGISTRY)
    print(
        f"one scrape, {args.destinations} destinations and sources: prometheus-client's"
        f" metrics {base:.2f} ms, hookgate's registry (its gauges too) {mine:.2f} ms"
    )


if __name__ == "__main__":
    main()
