"""The retry policy: pure functions, tested by table."""

from __future__ import annotations

import email.utils
import random

import pytest

from hookgate.config import DeliveryPolicy, Duration
from hookgate.outbound import retry

POLICY = DeliveryPolicy(
    timeout=Duration(10),
    max_attempts=5,
    max_age=Duration(3600),
    initial_backoff=Duration(1),
    max_backoff=Duration(60),
    concurrency=1,
)
NOW = 1_700_000_000.0  # a whole second, so HTTP dates (second resolution) are exact
RECEIVED = NOW - 10


def ceiling(attempts: int, policy: DeliveryPolicy = POLICY) -> float:
    return min(policy.max_backoff, policy.initial_backoff * 2 ** (attempts - 1))


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def decide(
    outcome: retry.Outcome,
    attempts: int = 1,
    received_at: float = RECEIVED,
    policy: DeliveryPolicy = POLICY,
    seed: int = 0,
) -> retry.Decision:
    return retry.decide(outcome, attempts, received_at, NOW, policy, random.Random(seed))


@pytest.mark.parametrize(
    ("outcome", "attempts", "received_at", "state", "reason"),
    [
        (retry.Outcome(200), 1, RECEIVED, "delivered", "delivered"),
        (retry.Outcome(201), 3, RECEIVED, "delivered", "delivered"),
        (retry.Outcome(204), 1, RECEIVED, "delivered", "delivered"),
        (retry.Outcome(299), 1, RECEIVED, "delivered", "delivered"),
        # Success wins over an exhausted budget: the attempt did get through.
        (retry.Outcome(200), 5, RECEIVED, "delivered", "delivered"),
        (retry.Outcome(200), 1, NOW - 7200, "delivered", "delivered"),
        (retry.Outcome(410, "HTTP 410"), 1, RECEIVED, "dead", "gone"),
        (retry.Outcome(410, "HTTP 410"), 5, RECEIVED, "dead", "gone"),
        (retry.Outcome(500, "HTTP 500"), 5, RECEIVED, "dead", "max_attempts"),
        (retry.Outcome(500, "HTTP 500"), 6, RECEIVED, "dead", "max_attempts"),
        (retry.Outcome(None, "timeout"), 5, RECEIVED, "dead", "max_attempts"),
        (retry.Outcome(429, "HTTP 429", "1"), 5, RECEIVED, "dead", "max_attempts"),
        (retry.Outcome(500, "HTTP 500"), 1, NOW - 3600, "dead", "max_age"),
        (retry.Outcome(500, "HTTP 500"), 1, NOW - 86400, "dead", "max_age"),
        (retry.Outcome(None, "ClientConnectorError"), 2, NOW - 3601, "dead", "max_age"),
        (retry.Outcome(503, "HTTP 503", "5"), 2, NOW - 3601, "dead", "max_age"),
        (retry.Outcome(500, "HTTP 500"), 1, NOW - 3599, "pending", "retry"),
        (retry.Outcome(500, "HTTP 500"), 4, RECEIVED, "pending", "retry"),
    ],
)
def test_decide_state(
    outcome: retry.Outcome, attempts: int, received_at: float, state: str, reason: str
) -> None:
    decision = decide(outcome, attempts, received_at)
    assert (decision.state, decision.reason) == (state, reason)
    if state != "pending":
        assert decision.next_attempt_at == NOW


@pytest.mark.parametrize(
    "outcome",
    [
        retry.Outcome(301, "HTTP 301"),
        retry.Outcome(302, "HTTP 302"),
        retry.Outcome(304, "HTTP 304"),
        retry.Outcome(307, "HTTP 307"),
        retry.Outcome(308, "HTTP 308"),
        retry.Outcome(400, "HTTP 400"),
        retry.Outcome(401, "HTTP 401"),
        retry.Outcome(404, "HTTP 404"),
        retry.Outcome(409, "HTTP 409"),
        retry.Outcome(429, "HTTP 429"),
        retry.Outcome(500, "HTTP 500"),
        retry.Outcome(502, "HTTP 502"),
        retry.Outcome(503, "HTTP 503"),
        retry.Outcome(504, "HTTP 504"),
        retry.Outcome(None, "timeout"),
        retry.Outcome(None, "ClientConnectorError: connection refused"),
    ],
    ids=lambda o: str(o.status or o.error),
)
@pytest.mark.parametrize("attempts", [1, 2, 3, 4])
def test_failures_are_retried_with_backoff(outcome: retry.Outcome, attempts: int) -> None:
    for seed in range(20):
        decision = decide(outcome, attempts, seed=seed)
        assert decision.state == "pending"
        assert decision.reason == "retry"
        assert NOW <= decision.next_attempt_at <= NOW + ceiling(attempts)


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [
        ("0", 0.0),
        ("30", 30.0),
        (" 45 ", 45.0),
        ("60", 60.0),
        ("61", 60.0),  # capped at max_backoff
        ("86400", 60.0),
        (http_date(NOW + 20), 20.0),
        (http_date(NOW + 3600), 60.0),  # capped at max_backoff
        (http_date(NOW - 100), 0.0),  # in the past: now
    ],
)
def test_retry_after_sets_next_attempt(status: int, retry_after: str, delay: float) -> None:
    # Attempt 1: the jittered backoff would be at most 1 s, so an exact figure can
    # only come from Retry-After.
    for seed in range(5):
        decision = decide(retry.Outcome(status, f"HTTP {status}", retry_after), seed=seed)
        assert decision.state == "pending"
        assert decision.next_attempt_at == pytest.approx(NOW + delay)


@pytest.mark.parametrize("retry_after", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2020"])
def test_unusable_retry_after_falls_back_to_backoff(retry_after: str | None) -> None:
    for seed in range(10):
        decision = decide(retry.Outcome(429, "HTTP 429", retry_after), attempts=3, seed=seed)
        assert decision.state == "pending"
        assert NOW <= decision.next_attempt_at <= NOW + ceiling(3)


@pytest.mark.parametrize("status", [500, 502, 504, 400, 404])
def test_retry_after_only_counts_on_429_and_503(status: int) -> None:
    for seed in range(10):
        decision = decide(retry.Outcome(status, f"HTTP {status}", "45"), seed=seed)
        assert NOW <= decision.next_attempt_at <= NOW + ceiling(1)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (http_date(NOW + 90), 90.0),
        (http_date(NOW - 90), 0.0),
        (None, None),
        ("", None),
        ("later", None),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP date
        ("\u00b2", None),  # a digit to str.isdigit, not a number to float()
        ("\u0661\u0662", None),  # Arabic-Indic digits: not delta-seconds either
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert retry.parse_retry_after(value, NOW) == seconds


def test_decision_is_deterministic_for_a_seeded_rng() -> None:
    outcome = retry.Outcome(500, "HTTP 500")
    assert decide(outcome, 3, seed=42) == decide(outcome, 3, seed=42)


# -- backoff_delay ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "maximum"),
    [(1.0, 60.0), (0.25, 10.0), (2.0, 3600.0), (5.0, 5.0)],
)
@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5, 6, 8, 12, 20])
def test_backoff_delay_full_jitter_bounds(initial: float, maximum: float, attempts: int) -> None:
    policy = DeliveryPolicy(initial_backoff=Duration(initial), max_backoff=Duration(maximum))
    rng = random.Random(attempts * 1000 + int(initial * 100))
    upper = min(maximum, initial * 2 ** (attempts - 1))
    draws = [retry.backoff_delay(attempts, policy, rng) for _ in range(2000)]
    assert all(0 <= d <= upper for d in draws)
    # Full jitter: the whole range is used, close to both ends.
    assert max(draws) >= 0.97 * upper
    assert min(draws) <= 0.03 * upper
    assert 0.4 * upper <= sum(draws) / len(draws) <= 0.6 * upper


def test_backoff_ceiling_doubles_per_attempt() -> None:
    policy = DeliveryPolicy(initial_backoff=Duration(1), max_backoff=Duration(1000))
    rng = random.Random(7)
    observed = []
    for attempts in range(1, 9):
        observed.append(max(retry.backoff_delay(attempts, policy, rng) for _ in range(3000)))
    for attempts, top in enumerate(observed, 1):
        assert 0.95 * 2 ** (attempts - 1) <= top <= 2 ** (attempts - 1)


@pytest.mark.parametrize("attempts", [0, -3])
def test_backoff_delay_before_any_attempt_uses_initial(attempts: int) -> None:
    policy = DeliveryPolicy(initial_backoff=Duration(2), max_backoff=Duration(60))
    rng = random.Random(1)
    draws = [retry.backoff_delay(attempts, policy, rng) for _ in range(500)]
    assert all(0 <= d <= 2 for d in draws)


@pytest.mark.parametrize("attempts", [63, 64, 100, 10_000])
def test_backoff_delay_huge_attempt_counts_do_not_overflow(attempts: int) -> None:
    policy = DeliveryPolicy(initial_backoff=Duration(1), max_backoff=Duration(3600))
    rng = random.Random(3)
    draws = [retry.backoff_delay(attempts, policy, rng) for _ in range(500)]
    assert all(0 <= d <= 3600 for d in draws)
    assert max(draws) >= 3400


def test_outcome_succeeded() -> None:
    assert retry.Outcome(200).succeeded
    assert retry.Outcome(299).succeeded
    assert not retry.Outcome(199).succeeded
    assert not retry.Outcome(300).succeeded
    assert not retry.Outcome(None, "timeout").succeeded
