"""The SQL files beside this module, read once at import.

``queries.sql`` names every query the store runs; ``migrations/NNNN_*.sql`` are the
schema changes, applied in number order under an advisory lock, and the table
``hookgate_schema`` records how many have run.
"""

from __future__ import annotations

from collections.abc import Mapping

from hookgate.store.sqlfiles import load_migrations, load_queries

__all__ = ["MIGRATIONS", "QUERIES"]

QUERIES: Mapping[str, str] = load_queries("hookgate.store.postgres")
MIGRATIONS: tuple[str, ...] = load_migrations("hookgate.store.postgres")
