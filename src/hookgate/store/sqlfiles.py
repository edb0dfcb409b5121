"""A backend's SQL files, read once at import: named queries and numbered migrations.

``queries.sql`` names every query a backend runs (``-- select_due --``, then comment
lines describing it); ``migrations/NNNN_*.sql`` are its schema changes, applied in
number order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

# A query's name line, and the comment lines right after it (its description).
_NAME = re.compile(r"^-- ([a-z0-9_]+) --\n(?:--.*\n)*", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def parse_queries(text: str) -> dict[str, str]:
    """``{name: sql}`` from a queries file; the text before the first name is its preamble."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, sql in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name} is named twice")
        queries[name] = sql.strip()
    return queries


def load_queries(package: str) -> Mapping[str, str]:
    """The named queries of ``package``'s ``queries.sql``."""
    text = (resources.files(package) / "queries.sql").read_text(encoding="utf-8")
    return MappingProxyType(parse_queries(text))


def load_migrations(package: str) -> tuple[str, ...]:
    """The migration scripts in order; their numbers must run 1, 2, 3... without a gap."""
    found = sorted(
        (int(match[1]), entry.read_text(encoding="utf-8"))
        for entry in (resources.files(package) / "migrations").iterdir()
        if (match := _MIGRATION.match(entry.name))
    )
    numbers = [number for number, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations must be numbered 1 to {len(found)}, found {numbers}")
    return tuple(script for _, script in found)
