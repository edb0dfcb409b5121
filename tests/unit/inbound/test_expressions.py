"""``json:`` expressions: a numeric path part indexes an array (``events.0.type``)."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from hookgate.inbound.listener import Expression

DOCUMENT = {
    "events": [{"type": "INVOICE", "n": 3}, {"type": "CONTACT"}],
    "0": "a key that looks like an index",
    "flag": True,
}


@pytest.mark.parametrize(
    ("expression", "document", "expected"),
    [
        ("json:events.0.type", DOCUMENT, "INVOICE"),
        ("json:events.1.type", DOCUMENT, "CONTACT"),
        ("json:events.0.n", DOCUMENT, "3"),
        ("json:events.2.type", DOCUMENT, None),
        ("json:events.-1.type", DOCUMENT, None),
        ("json:events.first.type", DOCUMENT, None),
        ("json:events.0", DOCUMENT, None),
        ("json:0", DOCUMENT, "a key that looks like an index"),
        ("json:0.type", [{"type": "qbo.customer.created.v1"}], "qbo.customer.created.v1"),
        ("json:0", ["top"], "top"),
        ("json:flag", DOCUMENT, None),
        ("json:events.0.type", None, None),
    ],
)
def test_json_paths_walk_objects_and_arrays(
    expression: str, document: Any, expected: str | None
) -> None:
    assert Expression.parse(expression).extract(CIMultiDict(), document) == expected
