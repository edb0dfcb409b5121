"""Which destinations an event type goes to, and what the ingress remembers of it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from hookgate import config
from hookgate.inbound.listener import Route
from hookgate.inbound.routing import Router
from hookgate.store import SkippedDestination


def no_request() -> dict[str, Any]:
    raise AssertionError("no filter needs the request")


def destinations(router: Router, event_type: str | None) -> tuple[str, ...]:
    return router.route(event_type, no_request)[0]


def route(tmp_path: Path) -> Router:
    path = tmp_path / "hookgate.toml"
    path.write_text(
        textwrap.dedent(
            """
            [sources.open]
            path = "/hooks/open"
            event_type = "json:type"

            [destinations.orders]
            url = "http://127.0.0.1:5000/orders"
            sources = ["open"]
            events = ["order.*"]

            [destinations.all]
            url = "http://127.0.0.1:5000/all"
            sources = ["open"]
            """
        ),
        encoding="utf-8",
    )
    cfg = config.load(path, {})
    return Route("open", cfg.sources["open"], list(cfg.destinations.values())).router


def test_destinations_follow_the_event_filter(tmp_path: Path) -> None:
    matched = route(tmp_path)
    assert matched.route("order.created", no_request) == (("orders", "all"), ())
    skipped = (SkippedDestination("orders", "event_type"),)
    assert matched.route("refund.created", no_request) == (("all",), skipped)
    assert matched.route(None, no_request) == (("all",), skipped)


def test_long_event_types_chosen_by_a_client_are_not_remembered(tmp_path: Path) -> None:
    matched = route(tmp_path)
    huge = "order." + "x" * 1_000_000  # an unverified source lets anyone pick this
    assert destinations(matched, huge) == ("orders", "all")
    assert destinations(matched, "order.created") == ("orders", "all")
    assert set(matched._by_event_type) == {"order.created"}


def test_the_cache_stops_growing_at_its_bound(tmp_path: Path) -> None:
    matched = route(tmp_path)
    for n in range(10_050):
        destinations(matched, f"t{n}")
    assert len(matched._by_event_type) == 10_000
    assert destinations(matched, "order.new") == ("orders", "all")
