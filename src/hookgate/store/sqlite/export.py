"""Reading a stopped daemon's SQLite outbox out, page by page, for ``hookgate migrate``."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hookgate.errors import StoreError
from hookgate.store.sqlite.lockfile import LockFile
from hookgate.store.sqlite.sql import QUERIES

PAGE = 1000


class Export:
    """The database at ``path``, read-only, its lock held so no daemon starts on it meanwhile."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = LockFile(Path(path))
        self._conn: sqlite3.Connection | None = None
        self.identity = ""
        self._exports: dict[str, str] = {}

    def __enter__(self) -> Export:
        if not Path(self.path).is_file():
            raise StoreError(f"there is no database {self.path}")
        self._lock.acquire()  # StoreError naming the pid while a daemon runs on it
        try:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            (self.identity,) = self._conn.execute(QUERIES["select_identity"]).fetchone()
            (has_skipped,) = self._conn.execute(QUERIES["has_skipped_column"]).fetchone()
        except sqlite3.Error as exc:
            self.__exit__()
            raise StoreError(f"cannot read {self.path}: {exc}") from None
        # Read-only, so not migrated: a database an older hookgate left has no skipped
        # destinations to copy.
        skipped = "skipped" if has_skipped else "NULL"
        self._exports = {
            "messages": QUERIES["export_messages"].format(skipped=skipped),
            "deliveries": QUERIES["export_deliveries"],
            "attempts": QUERIES["export_attempts"],
        }
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        self._lock.release()

    def pages(self, table: str) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``table`` (messages, deliveries, attempts) in id order, by pages."""
        assert self._conn is not None  # noqa: S101 - used inside ``with`` only
        sql = self._exports[table]
        after = 0
        while page := self._conn.execute(sql, (after, PAGE)).fetchall():
            yield page
            after = page[-1][0]

    def destinations(self) -> list[tuple[str, bool, float]]:
        assert self._conn is not None  # noqa: S101
        return [
            (name, bool(paused), updated_at)
            for name, paused, updated_at in self._conn.execute(QUERIES["export_destinations"])
        ]
