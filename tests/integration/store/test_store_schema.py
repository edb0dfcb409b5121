"""The SQLite store's SQL files: migrations against schema.sql, and no dead or broken query.

As procrastinate's tests/migration: applying every migration, in order, to an empty
database gives exactly the schema kept in schema.sql.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from hookgate.store import sqlite as sqlite_store
from hookgate.store.sqlite import sql

PACKAGE = Path(sqlite_store.__file__).parent


@contextlib.contextmanager
def empty_database() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    try:
        yield conn
    finally:
        conn.close()


def normalized(statement: str) -> str:
    """A CREATE statement without comments and layout, so that only its meaning counts.

    ``ALTER TABLE ... ADD COLUMN`` splices the column into the stored CREATE TABLE
    text (``...\\n, dead_reason TEXT)``); schema.sql writes it as a fresh table would.
    """
    text = re.sub(r"--[^\n]*", " ", statement)
    text = " ".join(text.split())
    return re.sub(r"\s*([(),])\s*", r"\1", text)


def schema(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        " ORDER BY type, name"
    ).fetchall()
    return [(kind, name, table, normalized(text)) for kind, name, table, text in rows]


def test_migrations_in_order_give_schema_sql() -> None:
    with empty_database() as migrated, empty_database() as kept:
        for script in sql.MIGRATIONS:
            migrated.executescript(script)
        kept.executescript((PACKAGE / "schema.sql").read_text(encoding="utf-8"))
        assert schema(migrated) == schema(kept)
        assert len(schema(kept)) == 19  # 7 tables, 9 indexes, 3 triggers: none missed


def test_migration_files_are_numbered_without_a_gap() -> None:
    names = sorted(p.name for p in (PACKAGE / "migrations").iterdir())
    assert [int(name[:4]) for name in names] == list(range(1, len(names) + 1))
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name) for name in names), names
    assert len(sql.MIGRATIONS) == len(names)


def test_sql_files_are_package_data() -> None:
    """Read the way the installed package reads them (importlib.resources)."""
    files = resources.files("hookgate.store.sqlite")
    assert (files / "queries.sql").is_file()
    assert (files / "schema.sql").is_file()
    shipped = [f for f in (files / "migrations").iterdir() if f.name.endswith(".sql")]
    assert len(shipped) == len(sql.MIGRATIONS) == 6


# -- named queries --------------------------------------------------------------------


def used_query_names() -> set[str]:
    """Every ``QUERIES["name"]`` the store's code looks up, and every ``queries["name"]``
    of the admin operations, which are written once for both backends."""
    used: set[str] = set()
    for path in [*PACKAGE.glob("*.py"), PACKAGE.parent / "admin.py"]:
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'(?:QUERIES|queries)\["([a-z0-9_]+)"\]', text))
    return used


def test_every_named_query_is_used_and_every_used_one_exists() -> None:
    assert set(sql.QUERIES) - used_query_names() == set()  # no dead SQL
    assert used_query_names() - set(sql.QUERIES) == set()  # no lookup of a missing name


@pytest.mark.parametrize("name", sorted(sql.QUERIES))
def test_named_query_compiles_against_the_schema(name: str) -> None:
    text = sql.QUERIES[name].format(
        keys=sql.marks(2), ids=sql.marks(2), where="1", skipped="skipped"
    )
    with empty_database() as conn:
        for script in sql.MIGRATIONS:
            conn.executescript(script)
        conn.execute(f"EXPLAIN {text}", (None,) * text.count("?"))


def test_query_file_parsing() -> None:
    text = "-- preamble\n\n-- one --\n-- what it does\nSELECT 1\n\n-- two --\nSELECT\n  2\n"
    assert sql.parse_queries(text) == {"one": "SELECT 1", "two": "SELECT\n  2"}
    with pytest.raises(ValueError, match="named twice"):
        sql.parse_queries("-- one --\nSELECT 1\n-- one --\nSELECT 2\n")
