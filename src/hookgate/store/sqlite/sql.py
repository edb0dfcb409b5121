"""The SQL files beside this module, read once at import.

``queries.sql`` names every query the store runs (``-- select_due --``);
``migrations/NNNN_*.sql`` are the schema changes, applied in number order, and
``PRAGMA user_version`` records how many have run. ``schema.sql`` is what they
produce, kept for reading (a test checks it). No other module holds SQL text but
the few fixed clauses the admin listings combine.
"""

from __future__ import annotations

from collections.abc import Mapping

from hookgate.store.sqlfiles import load_migrations, load_queries, parse_queries

__all__ = ["MIGRATIONS", "QUERIES", "marks", "parse_queries"]


def marks(count: int) -> str:
    """``?, ?, ?``: ``count`` placeholders for an IN list."""
    return ", ".join("?" * count)


QUERIES: Mapping[str, str] = load_queries("hookgate.store.sqlite")
MIGRATIONS: tuple[str, ...] = load_migrations("hookgate.store.sqlite")
