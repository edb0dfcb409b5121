"""The SQL files beside this module, read once at import.

``queries.sql`` names every query the store runs (``-- select_due --``);
``migrations/NNNN_*.sql`` are the schema changes, applied in number order, and
``PRAGMA user_version`` records how many have run. ``schema.sql`` is what they
produce, kept for reading (a test checks it). No other module holds SQL text but
the few fixed clauses the admin listings combine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_FILES = resources.files("hookgate.store.sqlite")
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


def load_migrations() -> tuple[str, ...]:
    """The migration scripts in order; their numbers must run 1, 2, 3... without a gap."""
    found = sorted(
        (int(match[1]), entry.read_text(encoding="utf-8"))
        for entry in (_FILES / "migrations").iterdir()
        if (match := _MIGRATION.match(entry.name))
    )
    numbers = [number for number, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations must be numbered 1 to {len(found)}, found {numbers}")
    return tuple(script for _, script in found)


def marks(count: int) -> str:
    """``?, ?, ?``: ``count`` placeholders for an IN list."""
    return ", ".join("?" * count)


QUERIES: Mapping[str, str] = MappingProxyType(
    parse_queries((_FILES / "queries.sql").read_text(encoding="utf-8"))
)
MIGRATIONS: tuple[str, ...] = load_migrations()
