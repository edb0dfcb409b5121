"""The alert rules, driven by a clock and counter totals the test feeds them.

Each rule must say "started" once when its condition starts and "ended" once when it
ends, with the figures that decided it, whatever happens in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec
import orjson
import pytest

from hookgate import config, metrics
from hookgate.config import AlertsConfig, Config
from hookgate.outbound.alerts.rules import (
    Alert,
    FailureRate,
    SignatureFailures,
    Silence,
    TrafficSpike,
    Window,
)
from hookgate.outbound.alerts.watch import Watch

BASE = AlertsConfig(url="http://127.0.0.1/ops", sign="none")


def alerts_config(**settings: float) -> AlertsConfig:
    """[alerts] with these settings, typed as the loader types them."""
    types = {f.name: f.default for f in msgspec.structs.fields(AlertsConfig)}
    return msgspec.structs.replace(
        BASE, **{key: type(types[key])(value) for key, value in settings.items()}
    )


def kinds(alerts: Iterable[Alert | None]) -> list[str]:
    return [a.kind for a in alerts if a is not None and sendable(a)]


def sendable(alert: Alert) -> bool:
    """The data goes out as JSON exactly as it is (plain floats, not Duration)."""
    assert orjson.loads(orjson.dumps(alert.data)) == alert.data
    assert all(type(v) in (str, int, float) for v in alert.data.values()), alert.data
    return True


# -- the window ---------------------------------------------------------------------


def test_window_counts_the_increase_over_at_least_its_span() -> None:
    window = Window(0.0, 0)
    seen = [window.add(float(t), t * 10, span=3.0) for t in range(1, 8)]
    # Until a snapshot is 3 s old, the window starts at the first one.
    assert seen[:3] == [(10, 1.0), (20, 2.0), (30, 3.0)]
    assert seen[3:] == [(30, 3.0)] * 4


def test_window_with_irregular_evaluations_covers_the_span_plus_one_gap() -> None:
    window = Window(0.0, 0)
    window.add(1.0, 5, span=2.0)
    window.add(2.5, 9, span=2.0)
    assert window.add(3.2, 12, span=2.0) == (7, 2.2)  # starts at the 1.0 snapshot
    assert window.add(5.0, 12, span=2.0) == (3, 2.5)  # starts at the 2.5 snapshot


def test_a_shorter_span_after_a_reload_applies_at_once() -> None:
    window = Window(0.0, 0)
    for t in range(1, 11):
        window.add(float(t), t, span=10.0)
    assert window.add(11.0, 11, span=2.0) == (2, 2.0)


# -- failure rate -------------------------------------------------------------------


def feed_failures(
    config: AlertsConfig, steps: Iterable[tuple[int, int]]
) -> tuple[FailureRate, list[Alert]]:
    """One evaluation a second; each step adds (attempts, failures)."""
    rule = FailureRate("orders", 0.0, 0, 0)
    attempts = failures = 0
    alerts = []
    for t, (new_attempts, new_failures) in enumerate(steps, start=1):
        attempts += new_attempts
        failures += new_failures
        alert = rule.observe(float(t), attempts, failures, config)
        if alert is not None and sendable(alert):
            alerts.append(alert)
    return rule, alerts


def test_failure_rate_fires_once_and_clears_once_with_its_figures() -> None:
    config = alerts_config(failure_rate=0.5, failure_window=5, failure_min_attempts=4)
    steps = [(2, 2), (2, 2), (2, 2), (2, 2), (2, 0), (2, 0), (2, 0), (2, 0), (2, 0), (2, 0)]
    rule, alerts = feed_failures(config, steps)
    assert kinds(alerts) == ["destination.failing", "destination.recovered"]
    assert alerts[0].data == {
        "destination": "orders",
        "rate": 1.0,
        "failures": 4,
        "attempts": 4,
        "window_s": 5.0,
        "threshold": 0.5,
        "min_attempts": 4,
    }
    recovered = alerts[1].data
    assert recovered["rate"] <= 0.5 and recovered["attempts"] > 0
    assert not rule.firing


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # One failure of two is 50 %, but two attempts are too few to judge.
        ([(2, 1)] * 1, []),
        ([(1, 1)] * 3, []),  # 3 attempts < 4, all failed
        ([(1, 1)] * 6, []),  # never more than 3 in a 3 s window
        ([(2, 2)] * 2, ["destination.failing"]),
        # Exactly the threshold is not above it.
        ([(4, 2)] * 3, []),
        ([(4, 3)], ["destination.failing"]),
        # Failures spread thinner than the window never add up to the minimum.
        ([(1, 1), (0, 0), (0, 0), (0, 0), (0, 0), (0, 0)] * 5, []),
    ],
)
def test_failure_rate_needs_enough_attempts_above_the_threshold(
    steps: list[tuple[int, int]], expected: list[str]
) -> None:
    config = alerts_config(failure_rate=0.5, failure_window=3, failure_min_attempts=4)
    assert kinds(feed_failures(config, steps)[1]) == expected


def test_failure_rate_stays_while_no_attempt_is_made() -> None:
    """An open circuit makes no attempts: that is not a recovery."""
    config = alerts_config(failure_rate=0.5, failure_window=3, failure_min_attempts=2)
    steps = [(2, 2), *[(0, 0)] * 20, (1, 1), *[(0, 0)] * 20, (1, 0)]
    _, alerts = feed_failures(config, steps)
    assert kinds(alerts) == ["destination.failing", "destination.recovered"]
    assert alerts[1].data["attempts"] == 1 and alerts[1].data["rate"] == 0.0


def test_failure_rate_recovers_on_a_mixed_window_at_or_below_the_threshold() -> None:
    config = alerts_config(failure_rate=0.5, failure_window=10, failure_min_attempts=4)
    _, alerts = feed_failures(config, [(4, 4), (4, 0)])
    assert kinds(alerts) == ["destination.failing", "destination.recovered"]
    assert alerts[1].data["rate"] == 0.5 and alerts[1].data["attempts"] == 8


def test_failure_rate_that_flaps_alerts_each_time_it_crosses() -> None:
    config = alerts_config(failure_rate=0.5, failure_window=1, failure_min_attempts=2)
    _, alerts = feed_failures(config, [(2, 2), (2, 0), (2, 2), (2, 2), (2, 0)])
    assert kinds(alerts) == [
        "destination.failing",
        "destination.recovered",
        "destination.failing",
        "destination.recovered",
    ]


# -- silence ------------------------------------------------------------------------


def test_silence_fires_once_after_expect_every_and_clears_at_the_next_webhook() -> None:
    rule = Silence("stripe")
    start = 1_700_000_000.0
    seen = [rule.observe(start + t, 0, start, 60.0) for t in (1, 30, 60, 61, 62, 500)]
    assert kinds(seen) == ["source.silent"]
    silent = next(a for a in seen if a is not None)
    assert silent.data == {
        "source": "stripe",
        "silent_for_s": 61.0,
        "expect_every_s": 60.0,
        "silent_since": "2023-11-14T22:13:20.000Z",
    }
    assert rule.firing
    resumed = rule.observe(start + 601, 1, start + 600.5, 60.0)
    assert resumed is not None and resumed.kind == "source.resumed"
    assert resumed.data["silent_for_s"] == 600.5
    assert resumed.data["resumed_at"] == "2023-11-14T22:23:20.500Z"
    assert not rule.firing
    # Webhooks keep coming: nothing more.
    assert rule.observe(start + 602, 2, start + 601.5, 60.0) is None


def test_a_busy_source_is_never_silent() -> None:
    rule = Silence("busy")
    seen = [rule.observe(float(t), t, float(t) - 0.5, 5.0) for t in range(1, 100)]
    assert kinds(seen) == []


def test_silence_fires_again_after_a_second_silence() -> None:
    rule = Silence("s")
    seen = [
        rule.observe(10.0, 0, 0.0, 5.0),
        rule.observe(11.0, 1, 10.5, 5.0),
        rule.observe(14.0, 1, 10.5, 5.0),
        rule.observe(16.0, 1, 10.5, 5.0),
        rule.observe(17.0, 1, 10.5, 5.0),
    ]
    assert kinds(seen) == ["source.silent", "source.resumed", "source.silent"]


# -- traffic spikes -----------------------------------------------------------------


def feed_traffic(
    config: AlertsConfig, per_second: Callable[[int], int], seconds: int
) -> tuple[TrafficSpike, list[tuple[int, Alert]]]:
    """One evaluation a second; ``per_second(t)`` webhooks arrive in second ``t``."""
    rule = TrafficSpike("shop", 0.0, 0)
    total = 0
    alerts = []
    for t in range(1, seconds + 1):
        total += per_second(t)
        alert = rule.observe(float(t), total, config)
        if alert is not None and sendable(alert):
            alerts.append((t, alert))
    return rule, alerts


SPIKES = alerts_config(
    traffic_window=10, traffic_baseline=300, traffic_spike_factor=10, traffic_floor=1
)


def test_steady_traffic_never_spikes() -> None:
    _, alerts = feed_traffic(SPIKES, lambda t: 3, 600)
    assert alerts == []


def test_a_tenfold_jump_fires_once_and_clears_once_when_it_ends() -> None:
    rule, alerts = feed_traffic(SPIKES, lambda t: 50 if 200 <= t < 230 else 2, 400)
    assert [(t, a.kind) for t, a in alerts] == [
        (203, "source.traffic_spike"),  # the window's rate passed 10 x 2/s
        (236, "source.traffic_normal"),  # and fell back under it
    ]
    assert alerts[0][1].data == {
        "source": "shop",
        "rate": 21.2,
        "count": 6 * 2 + 4 * 50,
        "window_s": 10.0,
        "baseline": 2.0,  # the rise in the window is not learnt
        "factor": 10.0,
        "floor": 1.0,
    }
    normal = alerts[1][1].data
    assert normal["rate"] == 16.4 and normal["baseline"] == 2.0
    assert not rule.firing
    assert rule.baseline == pytest.approx(2.0)  # nor is the spike, once it left


def test_a_quiet_source_does_not_page_below_the_floor() -> None:
    """From almost nothing to a few requests is a big factor, but no spike."""
    quiet = {300: 5, 301: 4}  # 0.9 per second over the window
    _, alerts = feed_traffic(SPIKES, lambda t: quiet.get(t, int(t % 100 == 0)), 400)
    assert alerts == []
    _, alerts = feed_traffic(SPIKES, lambda t: 10 if t == 300 else 0, 400)
    assert [a.kind for _, a in alerts] == ["source.traffic_spike", "source.traffic_normal"]


def test_an_idle_source_that_bursts_above_the_floor_spikes() -> None:
    _, alerts = feed_traffic(SPIKES, lambda t: 100 if t == 50 else 0, 100)
    assert [a.kind for _, a in alerts] == ["source.traffic_spike", "source.traffic_normal"]
    assert alerts[0][1].data["baseline"] == 0.0


def test_a_lasting_rise_becomes_the_usual_rate() -> None:
    config = alerts_config(
        traffic_window=10, traffic_baseline=60, traffic_spike_factor=10, traffic_floor=1
    )
    rule, alerts = feed_traffic(config, lambda t: 2 if t < 100 else 40, 1000)
    assert [(t, a.kind) for t, a in alerts] == [
        (104, "source.traffic_spike"),
        (164, "source.traffic_normal"),  # after traffic_baseline at the new rate
    ]
    assert alerts[1][1].data["rate"] == 40.0
    assert rule.baseline == pytest.approx(40)


def test_no_spike_before_a_full_window_sets_the_baseline() -> None:
    """Traffic already high at the start is the usual rate, not a spike."""
    _, alerts = feed_traffic(SPIKES, lambda t: 50, 200)
    assert alerts == []


# -- signature failures -------------------------------------------------------------


def test_signature_failures_fire_at_the_threshold_and_clear_below_it() -> None:
    config = alerts_config(signature_failures=5, signature_window=10)
    rule = SignatureFailures("github", 0.0, 0)
    failures = [0, 1, 1, 2, 2, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6]
    seen = [(t, rule.observe(float(t), total, config)) for t, total in enumerate(failures, 1)]
    alerts = [(t, a) for t, a in seen if a is not None and sendable(a)]
    assert [(t, a.kind) for t, a in alerts] == [
        (6, "source.signature_failures"),
        (14, "source.signature_normal"),  # the first two left the window
    ]
    assert alerts[0][1].data == {"source": "github", "count": 5, "window_s": 10.0, "threshold": 5}
    assert alerts[1][1].data["count"] == 4


def test_a_trickle_of_bad_signatures_never_alerts() -> None:
    config = alerts_config(signature_failures=5, signature_window=10)
    rule = SignatureFailures("github", 0.0, 0)
    seen = [rule.observe(float(t), t // 3, config) for t in range(1, 300)]
    assert kinds(seen) == []


# -- what is watched ----------------------------------------------------------------


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "hookgate.toml"
    path.write_text(text)
    return config.load(path, environ={})


def watched_config(tmp_path: Path, alerts: bool = True, expect_every: bool = True) -> Config:
    text = '[sources.watch_a]\npath = "/a"\n'
    if expect_every:
        text += 'expect_every = "1h"\n'
    text += '[sources.watch_b]\npath = "/b"\n'
    text += '[destinations.watch_d]\nurl = "http://127.0.0.1:5000/"\nsources = ["watch_a"]\n'
    if alerts:
        text += '[alerts]\nurl = "http://127.0.0.1:5001/ops"\nsign = "none"\n'
        text += "signature_failures = 2\n"
    return load(tmp_path, text)


def test_watch_follows_the_config_and_a_reload_keeps_what_fired(tmp_path: Path) -> None:
    watch = Watch()
    loaded = watched_config(tmp_path)
    assert loaded.alerts is not None
    watch.apply(loaded)
    assert set(watch.failures) == {"watch_d"}  # not the internal _alerts destination
    assert set(watch.traffic) == set(watch.signatures) == {"watch_a", "watch_b"}
    assert set(watch.silences) == {"watch_a"}
    assert (
        metrics.REGISTRY.get_sample_value(
            "hookgate_source_expect_every_seconds", {"source": "watch_a"}
        )
        == 3600
    )

    metrics.source_tally("watch_b").signature_failures += 2
    assert kinds(watch.evaluate(loaded.alerts)) == ["source.signature_failures"]
    watch.apply(watched_config(tmp_path, expect_every=False))  # a reload
    assert watch.signatures["watch_b"].firing  # not sent again
    assert kinds(watch.evaluate(loaded.alerts)) == []
    assert watch.silences == {} and watch.expect_every == {}

    watch.apply(watched_config(tmp_path, alerts=False))
    assert watch.signatures == {} and watch.failures == {}
