"""What the alert rules watch: every configured destination and source, fed from
their tallies (``hookgate.metrics``) at each evaluation.

The ingress and the workers only bump the tallies; the rules run here, on the
Alerter's interval. A reload keeps the state of the destinations and sources that
stay (an alert that fired stays fired), starts new ones from their current totals
and forgets removed ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from hookgate import metrics
from hookgate.config import ALERT_DESTINATION, AlertsConfig, Config
from hookgate.outbound.alerts.rules import (
    Alert,
    FailureRate,
    SignatureFailures,
    Silence,
    TrafficSpike,
)

_Rule = TypeVar("_Rule")


class Watch:
    """The rules of each watched destination and source, and their evaluation."""

    def __init__(self) -> None:
        self.expect_every: dict[str, float] = {}
        self._forget()

    def _forget(self) -> None:
        self.failures: dict[str, FailureRate] = {}
        self.traffic: dict[str, TrafficSpike] = {}
        self.signatures: dict[str, SignatureFailures] = {}
        self.silences: dict[str, Silence] = {}

    def apply(self, config: Config) -> None:
        """Watch ``config``'s destinations and sources; nothing while [alerts] is unset."""
        self._export_expect_every(config)
        if config.alerts is None:
            # Enabled again later, every rule starts afresh, from the totals of then.
            self._forget()
            return
        now = time.monotonic()
        destinations = [name for name in config.destinations if name != ALERT_DESTINATION]
        self.failures = _keep(self.failures, destinations, lambda name: _failure_rate(name, now))
        sources = list(config.sources)
        self.traffic = _keep(
            self.traffic,
            sources,
            lambda name: TrafficSpike(name, now, metrics.source_tally(name).accepted),
        )
        self.signatures = _keep(
            self.signatures,
            sources,
            lambda name: SignatureFailures(
                name, now, metrics.source_tally(name).signature_failures
            ),
        )
        self.silences = _keep(self.silences, list(self.expect_every), Silence)

    def _export_expect_every(self, config: Config) -> None:
        self.expect_every = {
            name: source.expect_every
            for name, source in config.sources.items()
            if source.expect_every is not None
        }
        metrics.source_expect_every.clear()
        for name, seconds in self.expect_every.items():
            metrics.source_tally(name)  # silence counts from now until the first webhook
            metrics.source_expect_every.labels(name).set(seconds)

    def evaluate(self, config: AlertsConfig) -> list[Alert]:
        """Each rule's change since the last evaluation, destinations first."""
        now, wall = time.monotonic(), time.time()
        changes: list[Alert | None] = []
        for name, failure in self.failures.items():
            tally = metrics.destination_tally(name)
            changes.append(failure.observe(now, tally.attempts, tally.failures, config))
        for name, spike in self.traffic.items():
            source = metrics.source_tally(name)
            changes.append(spike.observe(now, source.accepted, config))
            changes.append(self.signatures[name].observe(now, source.signature_failures, config))
            silence = self.silences.get(name)
            if silence is not None:
                changes.append(
                    silence.observe(
                        wall, source.accepted, source.last_accepted_at, self.expect_every[name]
                    )
                )
        return [change for change in changes if change is not None]


def _failure_rate(name: str, now: float) -> FailureRate:
    tally = metrics.destination_tally(name)
    return FailureRate(name, now, tally.attempts, tally.failures)


def _keep(
    rules: dict[str, _Rule], names: list[str], make: Callable[[str], _Rule]
) -> dict[str, _Rule]:
    """The rules of ``names``: the existing ones kept, the missing ones made."""
    return {name: rules[name] if name in rules else make(name) for name in names}
