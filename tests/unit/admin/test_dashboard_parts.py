"""The dashboard's pure parts: escaping, masking, quantiles from buckets, back links."""

from __future__ import annotations

import math
import re

import msgspec
import pytest

from hookgate.admin import answers
from hookgate.admin.dashboard import app, history, overview, pages, sessions
from hookgate.admin.dashboard.html import Markup, tag


def test_text_is_escaped_and_markup_is_kept() -> None:
    page = tag("p", {"title": '"><script>'}, "<script>alert(1)</script>", tag("b", {}, "&"))
    assert page == (
        '<p title="&quot;&gt;&lt;script&gt;">&lt;script&gt;alert(1)&lt;/script&gt;<b>&amp;</b></p>'
    )
    assert isinstance(page, Markup)
    assert tag("input", {"required": True, "disabled": False, "value": None}) == "<input required>"


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "Stripe-Signature",
        "X-Hub-Signature-256",
        "X-Gitlab-Token",
        "X-Shopify-Hmac-Sha256",
        "webhook-signature",
        "Cookie",
        "X-Api-Key",
    ],
)
def test_credential_headers_are_masked(name: str) -> None:
    assert pages.masked(name, "s3cr3t") == pages.MASK


def test_other_headers_are_shown() -> None:
    assert pages.masked("Content-Type", "application/json") == "application/json"


def buckets(name: str, counts: dict[float, float]) -> dict[history.Key, float]:
    return {("le", name, str(bound)): count for bound, count in counts.items()}


def test_quantile_interpolates_inside_the_bucket() -> None:
    # 100 attempts: 50 under 10 ms, 40 more under 50 ms, 10 more under 1 s.
    delta = buckets("orders", {0.01: 50, 0.05: 90, 1.0: 100, math.inf: 100})
    assert history.quantile(delta, 0.5, "orders") == pytest.approx(0.01)
    assert history.quantile(delta, 0.7, "orders") == pytest.approx(0.01 + 0.04 * 0.5)
    assert history.quantile(delta, 0.99, "orders") == pytest.approx(0.05 + 0.95 * 0.9)
    assert history.quantile(delta, 0.5, "other") is None


def test_quantile_in_the_open_bucket_is_the_largest_bound() -> None:
    delta = buckets("orders", {0.01: 0, 30.0: 0, math.inf: 4})
    assert history.quantile(delta, 0.5) == 30.0


def test_window_baseline_is_the_sample_at_its_start() -> None:
    past = history.History()
    for at in (1000.0, 1010.0, 1020.0):
        past.hour.append(history.Sample(at, {("in", "s"): at - 1000}))
    assert past.baseline(1025.0, 10.0) == past.hour[1]
    assert past.baseline(1005.0, 3600.0) is None  # younger than the window: since start


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (65, "1m 5s"), (7260, "2h 1m"), (90000, "1d 1h")]
)
def test_age(seconds: float, text: str) -> None:
    assert overview.age(seconds) == text


@pytest.mark.parametrize(
    ("given", "back"),
    [
        ("/messages/msg_1", "/messages/msg_1"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil", "/"),
        (None, "/"),
    ],
)
def test_back_link_stays_on_the_listener(given: str | None, back: str) -> None:
    assert app._local(given) == back


def test_a_session_ends_when_the_token_changes_or_it_idles() -> None:
    store = sessions.Sessions()
    digest, other = b"a" * 32, b"b" * 32
    session = store.start(digest)
    assert store.find(session.id, digest) is session
    assert store.find(session.id, other) is None  # a reload changed the token
    assert store.find(session.id, digest) is None  # and it stays ended
    idle = store.start(digest)
    idle.last_seen -= sessions.IDLE_TIMEOUT + 1
    assert store.find(idle.id, digest) is None
    assert store.find(store.start(digest).id, None) is None  # no token configured


def test_sessions_are_bounded() -> None:
    store = sessions.Sessions()
    first = store.start(b"a")
    for _ in range(sessions.MAX_SESSIONS):
        store.start(b"a")
    assert store.find(first.id, b"a") is None


def test_signin_is_throttled_per_peer_until_the_window_passes() -> None:
    throttle = sessions.SigninThrottle()
    for n in range(sessions.SIGNIN_FAILURES - 1):
        throttle.failed("10.0.0.1", 100.0 + n)
        assert throttle.wait("10.0.0.1", 100.0 + n) == 0
    throttle.failed("10.0.0.1", 110.0)
    assert throttle.wait("10.0.0.1", 110.0) == sessions.SIGNIN_WINDOW - 10  # the oldest is 10 s old
    assert throttle.wait("10.0.0.2", 110.0) == 0  # another address is not held back
    # Free again once the oldest failure is older than the window.
    assert throttle.wait("10.0.0.1", 100.0 + sessions.SIGNIN_WINDOW - 1) == 1
    assert throttle.wait("10.0.0.1", 100.0 + sessions.SIGNIN_WINDOW) == 0
    throttle.failed("10.0.0.1", 200.0)
    throttle.succeeded("10.0.0.1")
    assert throttle.wait("10.0.0.1", 200.0) == 0


def test_signin_throttle_tracks_a_bounded_number_of_peers() -> None:
    throttle = sessions.SigninThrottle()
    for n in range(sessions.MAX_THROTTLED_PEERS + 10):
        for _ in range(sessions.SIGNIN_FAILURES):
            throttle.failed(f"peer{n}", 1.0)
    assert throttle.wait("peer0", 1.0) == 0  # pushed out by newer ones
    assert throttle.wait(f"peer{sessions.MAX_THROTTLED_PEERS + 9}", 1.0) > 0


def test_a_session_checks_its_form_token_and_shows_a_result_once() -> None:
    session = sessions.Sessions().start(b"a")
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches(None) and not session.csrf_matches(session.csrf + "x")
    session.flash = "done"
    assert session.take_flash() == ("done", False)
    assert session.take_flash() is None


def test_the_message_page_shows_skipped_destinations_and_a_transform_death() -> None:
    dead = answers.DeliveryDetail(
        id=7,
        message_id="msg_1",
        destination="orders",
        state="dead",
        attempts=1,
        next_attempt_at="2026-01-01T00:00:00Z",
        last_status=None,
        last_error="transform failed: jq: error",
        updated_at="2026-01-01T00:00:00Z",
        dead_reason="transform",
        attempt_log=[],
    )
    detail = answers.MessageDetail(
        id="msg_1",
        source="shop",
        event_type="refund",
        event_id=None,
        received_at="2026-01-01T00:00:00Z",
        size=2,
        headers={},
        body="{}",
        body_base64=None,
        deliveries=[dead],
        skipped=[
            answers.SkippedDestination("big_orders", "event_type"),
            answers.SkippedDestination("v2", "filter"),
            answers.SkippedDestination("<b>odd</b>", "<i>new</i>"),  # shown as text
        ],
    )
    page = pages.message(detail, True, 100, ["orders"], sessions.Sessions().start(b"a"))
    assert "Dead: its transform failed (the attempt&#x27;s error says how)." in page
    assert "<h2>Skipped destinations</h2>" in page
    cells = r'<td data-label="Destination">(.*?)</td><td data-label="Why">(.*?)</td>'
    rows = re.findall(cells, page)
    assert rows == [
        ("big_orders", "its events leave out this event type"),
        ("v2", "its content filter did not match"),
        ("&lt;b&gt;odd&lt;/b&gt;", "&lt;i&gt;new&lt;/i&gt;"),
    ]
    plain = msgspec.structs.replace(detail, skipped=[])
    assert "Skipped destinations" not in pages.message(
        plain, True, 100, ["orders"], sessions.Sessions().start(b"a")
    )
