"""The rate limiter and the circuit breaker, driven by a clock the test feeds them."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable

import pytest

from hookgate.outbound.limits import CircuitBreaker, RateLimiter

# -- the rate limiter ---------------------------------------------------------------


def send_when_allowed(
    limiter: RateLimiter,
    wanted: list[float],
    duration: Callable[[int], float] = lambda i: 0.0,
) -> list[float]:
    """Each request wants to start at its time; it starts as soon as the limiter allows.

    Requests start one after another, like the dispatcher's tasks, which check and
    record with no await in between, and each runs for ``duration(i)`` seconds,
    concurrently with the others, telling the limiter when it ends.
    """
    sent: list[float] = []
    running: list[float] = []  # heap of end times
    now = 0.0
    for i, want in enumerate(wanted):
        now = max(now, want)
        for _ in range(10_000):  # bounded: a limiter that never allows fails, not hangs
            while running and running[0] <= now:
                limiter.finished(heapq.heappop(running))
            delay = limiter.delay(now)
            if delay == 0:
                break
            now = running[0] if delay is None else now + delay
        else:
            raise AssertionError(f"never allowed after {now}")
        limiter.started()
        sent.append(now)
        heapq.heappush(running, now + duration(i))
    return sent


def most_in_any_window(sent: list[float], width: float) -> int:
    """The largest number of sends in any half-open window [t, t + width).

    The busiest window always starts at a send, so checking those is checking all.
    """
    most = 0
    j = 0
    for i, start in enumerate(sent):
        j = max(j, i)
        while j < len(sent) and sent[j] < start + width:
            j += 1
        most = max(most, j - i)
    return most


def allowed_per_second(rate: float) -> int:
    """Whole requests that fit in one second without ever exceeding ``rate`` there."""
    return max(1, math.floor(rate))


def sustained_rate(sent: list[float], burst: int) -> float:
    """Sends per second after the first burst, which a full window lets go at once."""
    return (len(sent) - burst) / (sent[-1] - sent[0])


@pytest.mark.parametrize("rate", [1, 3, 20, 50, 2.5, 7.9])
def test_saturated_sender_never_exceeds_rate_in_any_second_and_reaches_it(rate: float) -> None:
    limiter = RateLimiter(rate)
    sent = send_when_allowed(limiter, [0.0] * 400)
    per_second = allowed_per_second(rate)
    assert most_in_any_window(sent, 1.0) == per_second  # never more, and reached
    # Reached second after second, not just once (a safety margin may cost a little).
    assert 0.9 * per_second <= sustained_rate(sent, per_second) <= per_second


@pytest.mark.parametrize("rate", [3, 20, 2.5])
def test_random_arrivals_never_exceed_rate_in_any_second(rate: float) -> None:
    rng = random.Random(rate)
    for _ in range(20):
        wanted = sorted(rng.uniform(0, 30) for _ in range(rng.randrange(50, 400)))
        sent = send_when_allowed(RateLimiter(rate), wanted)
        assert most_in_any_window(sent, 1.0) <= rate
        assert all(s >= w for s, w in zip(sent, wanted, strict=True))


@pytest.mark.parametrize("rate", [5, 20, 50])
def test_a_few_milliseconds_of_latency_never_put_more_than_rate_in_a_receivers_second(
    rate: int,
) -> None:
    """The receiver counts arrivals, not sends: each request takes its own time to get there.

    The first requests open connections (a few ms more than later ones on pooled
    connections); on loopback or a LAN latency varies by milliseconds. A receiver
    enforcing ``rate`` per second must still never see more than ``rate`` in any
    one-second window of its own.
    """
    rng = random.Random(rate)
    latency = [0.005 if i < rate else rng.uniform(0.0002, 0.005) for i in range(rate * 6)]
    sent = send_when_allowed(RateLimiter(rate), [0.0] * (rate * 6), lambda i: latency[i])
    arrived = sorted(s + d for s, d in zip(sent, latency, strict=True))
    assert most_in_any_window(arrived, 1.0) <= rate


@pytest.mark.parametrize("rate", [5, 20])
def test_a_slow_request_keeps_its_slot_until_a_second_after_it_ended(rate: int) -> None:
    """A request that takes 3 s arrives anywhere in those 3 s: its slot is held that long."""
    limiter = RateLimiter(rate)
    sent = send_when_allowed(limiter, [0.0] * (rate * 3), lambda i: 3.0 if i == 0 else 0.0)
    assert sent[:rate] == [0.0] * rate
    # The quick ones' slots free at 1.0; the slow one's only at 3 + 1.
    assert [t for t in sent if 1.0 <= t < 2.0] == [1.0] * (rate - 1)
    assert most_in_any_window(sent, 1.0) <= rate


def test_every_slot_held_by_a_running_request_means_wait_for_one_to_end() -> None:
    limiter = RateLimiter(2)
    limiter.started()
    limiter.started()
    assert limiter.delay(5.0) is None
    limiter.finished(5.0)
    assert limiter.delay(5.5) == pytest.approx(0.5)
    assert limiter.delay(6.0) == 0


def test_a_request_under_the_rate_is_not_delayed() -> None:
    limiter = RateLimiter(10)
    wanted = [i * 0.2 for i in range(100)]  # 5 per second, below 10
    assert send_when_allowed(limiter, wanted) == wanted


def test_the_window_slides_rather_than_resets() -> None:
    """Five sends late in one second and five early in the next would be ten in a second."""
    limiter = RateLimiter(5)
    for t in (0.9, 0.91, 0.92, 0.93, 0.94):
        assert limiter.delay(t) == 0
        limiter.started()
        limiter.finished(t)
    assert limiter.delay(1.05) >= 0.85 - 1e-9  # not before 0.9 + 1
    assert limiter.delay(2.5) == 0


@pytest.mark.parametrize("rate", [0.5, 0.25, 0.1])
def test_fractional_rate_below_one_spaces_requests(rate: float) -> None:
    limiter = RateLimiter(rate)
    sent = send_when_allowed(limiter, [0.0] * 30)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 1 / rate
    assert most_in_any_window(sent, 1.0) == 1
    assert 0.9 * rate <= sustained_rate(sent, 1) <= rate  # and the rate is reached


def test_fractional_rate_above_one_never_exceeds_it_in_a_second() -> None:
    """2.5/s: three in one second would exceed 2.5, so at most two in any second.

    (Two per second is also the most any schedule can average while never having
    more than 2.5 requests in a one-second window.)
    """
    limiter = RateLimiter(2.5)
    sent = send_when_allowed(limiter, [0.0] * 100)
    assert most_in_any_window(sent, 1.0) == 2
    assert 0.9 * 2 <= sustained_rate(sent, 2) <= 2


# -- the circuit breaker ------------------------------------------------------------


def open_circuit(threshold: int = 3, cooldown: float = 10.0, at: float = 100.0) -> CircuitBreaker:
    circuit = CircuitBreaker(threshold, cooldown)
    for i in range(threshold):
        assert circuit.allows(at)
        change = circuit.record(False, at)
        assert change == ("open" if i == threshold - 1 else None)
    return circuit


def test_closed_until_threshold_consecutive_failures() -> None:
    circuit = CircuitBreaker(3, 10.0)
    for _ in range(5):  # failures interrupted by a success never add up
        assert circuit.record(False, 1.0) is None
        assert circuit.record(False, 2.0) is None
        assert circuit.record(True, 3.0) is None
        assert circuit.state == "closed"
        assert circuit.failures == 0
    assert circuit.record(False, 4.0) is None
    assert circuit.record(False, 5.0) is None
    assert circuit.state == "closed"
    assert circuit.allows(5.0)
    assert circuit.record(False, 6.0) == "open"
    assert circuit.state == "open"
    assert circuit.opened_at == 6.0


def test_open_circuit_allows_nothing_until_cooldown() -> None:
    circuit = open_circuit(threshold=3, cooldown=10.0, at=100.0)
    for now in (100.0, 101.0, 105.0, 109.999):
        assert not circuit.allows(now)
        assert circuit.reopens_in(now) == pytest.approx(110.0 - now)
    assert circuit.state == "open"
    assert circuit.reopens_in(110.0) == 0


def test_exactly_one_probe_after_cooldown() -> None:
    circuit = open_circuit(cooldown=10.0, at=100.0)
    assert circuit.allows(110.0)  # the probe
    assert circuit.state == "half_open"
    assert circuit.reopens_in(110.0) is None
    for now in (110.0, 110.5, 200.0, 10_000.0):  # however long the probe takes
        assert not circuit.allows(now)


def test_probe_success_closes() -> None:
    circuit = open_circuit(cooldown=10.0, at=100.0)
    assert circuit.allows(111.0)
    assert circuit.record(True, 111.2) == "closed"
    assert circuit.state == "closed"
    assert circuit.failures == 0
    assert all(circuit.allows(111.3) for _ in range(50))
    # Closed again means the full threshold is needed to re-open.
    assert circuit.record(False, 112.0) is None
    assert circuit.record(False, 112.0) is None
    assert circuit.record(False, 112.0) == "open"


def test_probe_failure_reopens_for_another_cooldown() -> None:
    circuit = open_circuit(cooldown=10.0, at=100.0)
    assert circuit.allows(110.0)
    assert circuit.record(False, 110.5) == "open"
    assert circuit.opened_at == 110.5
    assert not circuit.allows(110.6)
    assert not circuit.allows(120.4)
    assert circuit.reopens_in(115.5) == pytest.approx(5.0)
    # And then exactly one probe again.
    assert circuit.allows(120.5)
    assert not circuit.allows(120.6)
    assert circuit.record(True, 121.0) == "closed"


def test_failure_while_open_keeps_it_open_without_reporting_a_change() -> None:
    """An attempt that started before the circuit opened may fail after it did."""
    circuit = open_circuit(cooldown=10.0, at=100.0)
    assert circuit.record(False, 101.0) is None
    assert circuit.state == "open"
    assert not circuit.allows(101.5)
