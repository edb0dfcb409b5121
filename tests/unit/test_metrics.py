"""Metrics read at scrape time show what the hot path recorded as plain numbers."""

from __future__ import annotations

from prometheus_client import generate_latest
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
