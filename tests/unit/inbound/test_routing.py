"""Which destinations an event type goes to, and what the ingress remembers of it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from hookgate import config
from hookgate.inbound.listener import Route


def route(tmp_path: Path) -> Route:
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
    return Route("open", cfg.sources["open"], list(cfg.destinations.values()))


def test_destinations_follow_the_event_filter(tmp_path: Path) -> None:
    matched = route(tmp_path)
    assert matched.destinations_for("order.created") == ("orders", "all")
    assert matched.destinations_for("refund.created") == ("all",)
    assert matched.destinations_for(None) == ("all",)


def test_long_event_types_chosen_by_a_client_are_not_remembered(tmp_path: Path) -> None:
    matched = route(tmp_path)
    huge = "order." + "x" * 1_000_000  # an unverified source lets anyone pick this
    assert matched.destinations_for(huge) == ("orders", "all")
    assert matched.destinations_for("order.created") == ("orders", "all")
    assert set(matched._matches) == {"order.created"}


def test_the_cache_stops_growing_at_its_bound(tmp_path: Path) -> None:
    matched = route(tmp_path)
    for n in range(10_050):
        matched.destinations_for(f"t{n}")
    assert len(matched._matches) == 10_000
    assert matched.destinations_for("order.new") == ("orders", "all")
