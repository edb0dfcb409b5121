"""``<database>.lock``: one process per database, and the database's identity on record."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import orjson

from hookgate.errors import StoreError


class LockFile:
    """``<database>.lock``: held while a store has the database open; names its holder.

    Its content, ``{"pid": ..., "database": <identity>}``, outlives the process, so the
    next start knows which database belongs here even when the file is gone.
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock or raise StoreError naming the holder; return the recorded identity."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_record(fd).get("pid", "unknown")
            os.close(fd)
            raise StoreError(
                f"database {self.database} is in use by another hookgate (pid {holder})"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from None
        self._fd = fd
        identity = _lock_record(fd).get("database")
        return identity if isinstance(identity, str) else None

    def record(self, identity: str) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, orjson.dumps({"pid": os.getpid(), "database": identity}), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _lock_record(fd: int) -> dict[str, Any]:
    try:
        record = orjson.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, orjson.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}
