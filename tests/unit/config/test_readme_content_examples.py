"""The README's filter and transform examples load, and do what the text says."""

from __future__ import annotations

import re
from pathlib import Path

import jq
import orjson
import pytest

from hookgate import filters, transform
from hookgate.transform import TransformInput

from .samples import load

README = Path(__file__).resolve().parents[3] / "README.md"
SECTIONS = ("## Filters on content", "## Transformations")


def toml_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for heading in SECTIONS:
        section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
        blocks += re.findall(r"```toml\n(.*?)```", section, flags=re.DOTALL)
    return blocks


@pytest.mark.parametrize("example", toml_examples())
def test_each_example_loads(tmp_path: Path, example: str) -> None:
    assert load(tmp_path, example).destinations


def test_the_version_routing_example_splits_by_header_or_body(tmp_path: Path) -> None:
    (example,) = [e for e in toml_examples() if "orders_v2" in e]
    loaded = load(tmp_path, example)
    v2 = filters.compile_filter(loaded.destinations["orders_v2"].filter)
    v1 = filters.compile_filter(loaded.destinations["orders_v1"].filter)
    for request, new in [
        ({"headers": {"x-webhook-version": "2"}, "body": {}}, True),
        ({"headers": {}, "body": {"version": "2.0"}}, True),
        ({"headers": {"x-webhook-version": "1"}, "body": {"version": "1.0"}}, False),
        ({"headers": {}}, False),
    ]:
        assert (v2.matches(request), v1.matches(request)) == (new, not new)


def test_the_slack_example_reshapes_an_order(tmp_path: Path) -> None:
    (example,) = [e for e in toml_examples() if "slack_orders" in e]
    program = load(tmp_path, example).destinations["slack_orders"].transform
    assert program is not None
    body, headers = transform.run_program(
        jq.compile(program),
        TransformInput(
            body=orjson.dumps({"id": "o_1", "total": 1250, "currency": "EUR"}),
            headers=b"{}",
            source="shop",
            event_type="order.paid",
            message_id="msg_1",
        ),
        1 << 20,
    )
    assert orjson.loads(body or b"") == {"text": "Order o_1: 12.5 EUR"}
    assert headers == (("X-Shop-Event", "order.paid"),)
