"""The SQLite file: connection settings, migrations, one-call reads, checkpoints, health."""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import structlog

from hookgate.errors import StoreError
from hookgate.store.sqlite.sql import MIGRATIONS, QUERIES

log = structlog.get_logger("hookgate.store")

# These error codes mean the file itself is damaged: retrying will not help.
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

T = TypeVar("T")

# How long the write connection waits for a lock another connection holds (ms).
BUSY_TIMEOUT_MS = 5_000
# The Checkpointer starts a checkpoint after a commit that leaves at least this many
# frames of the WAL not yet copied back: SQLite's own automatic limit (pages).
CHECKPOINT_FRAMES = 1_000
# The writer's own automatic checkpoint, inside a COMMIT: only a backstop for a
# Checkpointer that falls behind (pages of the WAL).
BACKSTOP_CHECKPOINT_PAGES = 10_000
# Once the WAL holds this many frames, the writer finishes the Checkpointer's latest
# run between two commits, so that its next transaction starts the WAL again from its
# beginning (finish_wal_checkpoint). That pauses the writer (1-30 ms measured under
# load, the database file's fsync), so not often; but a run ends about every
# CHECKPOINT_FRAMES, and a request can be missed (a reader in a transaction stops the
# restart), so low enough that three or four runs ask before the backstop.
RESTART_FRAMES = 6_000
# Where the WAL index (the -shm) keeps mxFrame (the WAL's last frame, in its header) and
# nBackfill (the frames copied back): native 32-bit integers (sqlite.org/walformat.html).
_MX_FRAME_AT, _N_BACKFILL_AT = 16, 96

# Linux's FS_IOC_GETFLAGS, and the inode flags under which no write to the file is let
# through (FS_IMMUTABLE_FL, FS_APPEND_FL).
_FS_IOC_GETFLAGS = 0x80086601
_NO_WRITE_FLAGS = 0x10 | 0x20


class Health:
    """Whether the database takes writes: a passing failure, or broken for good."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.failure: str | None = None  # why writes fail now; the next good commit clears it
        self.broken: str | None = None  # why they never will again in this process
        self.last_good_write = float("-inf")
        self._file_id: tuple[int, int] | None = None
        self._wal_index: int | None = None  # the -shm's descriptor: watch_wal_index
        self._after_commit: list[Callable[[], None]] = []
        # Set by the Checkpointer (event loop), taken by the writer (SQLite thread).
        self.wal_restart_due = False

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the event loop after each good commit."""
        self._after_commit.append(listener)

    def note_error(self, exc: sqlite3.Error) -> None:
        """Mark the store broken when ``exc`` says the file is damaged."""
        if getattr(exc, "sqlite_errorcode", None) in _CORRUPT_CODES and self.broken is None:
            self.broken = f"the database is corrupt: {exc}"
            log.critical("store.corrupt", error=str(exc), path=self.path)

    def remember_file(self) -> None:
        self._file_id = _file_id(self.path)

    def check_file(self) -> None:
        """Mark the store broken when its file was deleted or replaced since it opened."""
        if self.broken is not None:
            return
        try:
            current = _file_id(self.path)
        except OSError:
            current = None
        if current != self._file_id:
            self.broken = f"the database file {self.path} was deleted or replaced"
            log.critical("store.file_lost", path=self.path)

    def raise_if_broken(self) -> None:
        if self.broken is not None:
            raise StoreError(self.broken)

    def refuse_frozen_files(self) -> None:
        """Raise StoreError while the WAL index (``-shm``) takes no writes.

        Every connection writes into that file through a shared memory map, and the
        kernel answers a write to a map of an immutable file, or of one on a file system
        remounted read-only, with SIGBUS, which would kill the daemon. So nothing
        touches the database until the file takes writes again: the caller's request
        fails with 503 meanwhile, and the store reports the failure.
        """
        if self._wal_index is None:
            return
        reason = _frozen(self._wal_index, self.path + "-shm")
        if reason is not None:
            raise StoreError(reason)

    def wal_frames_not_copied(self) -> int:
        """Frames of the WAL not yet copied back into the database, as its index says."""
        frames, copied = self.wal_progress()
        return max(0, frames - copied)

    def wal_progress(self) -> tuple[int, int]:
        """(frames in the WAL, frames of them copied back), as the WAL index says.

        Read without a lock, as a hint: a header being rewritten can read wrong, and
        the next commit reads it again.
        """
        if self._wal_index is None:
            return 0, 0
        try:
            index = os.pread(self._wal_index, _N_BACKFILL_AT + 4, 0)
        except OSError:
            return 0, 0
        if len(index) < _N_BACKFILL_AT + 4:
            return 0, 0
        frames: int = struct.unpack_from("=I", index, _MX_FRAME_AT)[0]
        copied: int = struct.unpack_from("=I", index, _N_BACKFILL_AT)[0]
        return frames, copied

    def watch_wal_index(self) -> None:
        """Open the ``-shm`` for ``refuse_frozen_files``, once the connections made it.

        The descriptor stays open until ``close``, after the connections: closing any
        descriptor of a file drops every POSIX lock this process holds on it, SQLite's
        included, and another process would then take the WAL index for unused and
        truncate it under this one's memory map (SIGBUS).
        """
        if self._wal_index is None:
            with contextlib.suppress(OSError):
                self._wal_index = os.open(self.path + "-shm", os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        """Close the ``-shm`` descriptor: only once no connection is open."""
        if self._wal_index is not None:
            os.close(self._wal_index)
            self._wal_index = None

    def committed(self) -> None:
        self.failure = None
        self.last_good_write = time.monotonic()
        for listener in self._after_commit:
            # The batch's answers come after this: nothing here may keep them waiting.
            try:
                listener()
            except Exception as exc:
                log.error("store.commit_listener_failed", error=repr(exc), path=self.path)

    def commit_failed(self, exc: Exception) -> None:
        if isinstance(exc, sqlite3.Error):
            self.note_error(exc)
        self.failure = str(exc)


async def connect(path: str, sync: str) -> aiosqlite.Connection:
    """A connection in autocommit mode with hookgate's settings (WAL, sync, foreign keys)."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        synchronous = "FULL" if sync == "full" else "NORMAL"
        await conn.execute(f"PRAGMA synchronous = {synchronous}")
        await conn.execute("PRAGMA foreign_keys = ON")
        # Only the write connection commits, and its checkpoints are the Checkpointer's.
        await conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
    except BaseException:
        # An unclosed connection's thread would keep a failed start from exiting.
        await conn.close()
        raise
    return conn


def connect_here(path: str) -> sqlite3.Connection:
    """A read-only connection for the event loop's thread, which never waits for a lock.

    Opened on any thread (check_same_thread off), used on one at a time. A read that
    would wait fails at once with SQLITE_BUSY instead (busy_timeout 0), for its caller
    to take elsewhere: the event loop must never sleep on a lock.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


async def in_thread(conn: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work`` with the sqlite3 connection on ``conn``'s thread, in one trip.

    aiosqlite has no public call for this; ``_execute`` is the one its own methods
    use to queue a function on that thread (aiosqlite 0.22).
    """
    result: T = await conn._execute(work, conn._conn)  # type: ignore[no-untyped-call]
    return result


def finish_wal_checkpoint(conn: sqlite3.Connection, health: Health) -> None:
    """On the writer's thread, between two commits, when the Checkpointer asked for it:
    copy back what was committed since its run, so that the writer's next transaction
    can find the whole WAL copied and start it again from its beginning.

    Only the writer adds frames, and it is here, so this copy can reach the WAL's end.
    A reader's older snapshot can hold the copy back, and a reader's open transaction
    stops the restart itself (SQLite then just goes on appending); the Checkpointer's
    next run asks again. It copies a few commits' frames, not the thousand of a run,
    and is PASSIVE: it waits for no reader, and gives up at once while a Checkpointer's
    run holds the checkpoint lock. An error gives up too, after marking a damaged file
    broken; the commits report the file's state.
    """
    if not health.wal_restart_due:
        return
    health.wal_restart_due = False
    # Asked before an idle spell, the WAL may have started again by itself since.
    if health.wal_progress()[0] < RESTART_FRAMES:
        return
    try:
        health.refuse_frozen_files()
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:
        health.note_error(exc)
    except StoreError:
        return


class Checkpointer:
    """Copies the WAL back into the database file beside the writer's commits.

    SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past
    1,000 pages, and with ``sync = "full"`` it writes and fsyncs the database file
    there: that commit, and every webhook queued behind it, waited 5-30 ms for it under
    load (docs/benchmarks.md: "latency at half the end-to-end rate"). Here, once a
    commit leaves as many frames not copied back, a connection of its own, on its own
    thread, runs a PASSIVE checkpoint, which takes no write lock and waits for no reader
    or writer: commits go on meanwhile. A checkpoint writes no rows. Like the automatic
    one, nothing runs after commits that leave a smaller WAL.

    The WAL starts again from its beginning only at a writer's transaction that finds
    all of it copied back. Under steady commits that never happens by itself, as each
    commit adds frames while a checkpoint copies, so the WAL grew to the backstop's
    10,000 pages, whose checkpoint then stalled one commit for 16-26 ms. Once the WAL
    holds ``RESTART_FRAMES``, a finished run therefore asks the writer to copy the few
    frames committed since, between two commits (``finish_wal_checkpoint``).
    """

    def __init__(self, health: Health) -> None:
        self._health = health
        self._conn: aiosqlite.Connection | None = None
        self._running: asyncio.Task[None] | None = None
        self._failing = False
        health.on_commit(self.committed)

    def start(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    def committed(self) -> None:
        """Start a checkpoint if the WAL holds enough to copy and none runs."""
        if self._conn is None or self._running is not None:
            return
        if self._health.wal_frames_not_copied() >= CHECKPOINT_FRAMES:
            self._running = asyncio.get_running_loop().create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        def checkpoint(conn: sqlite3.Connection) -> None:
            # Checked on the thread, right before the checkpoint writes into the -shm.
            self._health.refuse_frozen_files()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        try:
            if self._conn is not None:
                await in_thread(self._conn, checkpoint)
        except Exception as exc:
            # The next commit tries again; commits themselves report the file's state.
            if isinstance(exc, sqlite3.Error):
                self._health.note_error(exc)
            if not self._failing:
                log.warning("store.checkpoint_failed", error=str(exc), path=self._health.path)
            self._failing = True
        else:
            self._failing = False
            if self._health.wal_progress()[0] >= RESTART_FRAMES:
                self._health.wal_restart_due = True
        finally:
            self._running = None

    async def close(self) -> None:
        """Start no more checkpoints, let the running one end, close the connection."""
        conn, self._conn = self._conn, None
        try:
            if self._running is not None:
                await asyncio.shield(self._running)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()


async def migrate(conn: aiosqlite.Connection, health: Health) -> None:
    """Run the migrations this database has not had, each in its own transaction."""
    version = await scalar(conn, QUERIES["select_user_version"], (), health)
    if version > len(MIGRATIONS):
        raise StoreError(f"database schema {version} is newer than this hookgate knows")
    for number in range(version, len(MIGRATIONS)):
        script = f"BEGIN IMMEDIATE; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1};"
        try:
            await conn.executescript(script + " COMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
        log.info("store.migrated", version=number + 1)


async def fetch(
    conn: aiosqlite.Connection | None, sql: str, params: Sequence[Any], health: Health
) -> list[Any]:
    """All rows of one query, run start to finish in one call on the connection's thread.

    A statement left open between two calls would pin the connection's snapshot, and
    a claim that ran in that old snapshot could see a just-settled delivery as pending.
    """
    if conn is None:
        raise StoreError("the store is not open")
    health.refuse_frozen_files()
    try:
        return list(await conn.execute_fetchall(sql, params))
    except sqlite3.Error as exc:
        health.note_error(exc)
        raise StoreError(f"read failed: {exc}") from None
    except ValueError as exc:  # aiosqlite: the connection was closed meanwhile
        raise StoreError(str(exc)) from None


async def read_in_one_trip(
    conn: aiosqlite.Connection | None, work: Callable[[sqlite3.Connection], T], health: Health
) -> T:
    """``work``'s reads, run start to finish in one trip to the connection's thread.

    Like ``fetch``, but for several statements at the price of one trip: each trip
    waits for the thread and then for a turn of the event loop.
    """
    if conn is None:
        raise StoreError("the store is not open")
    health.refuse_frozen_files()
    try:
        return await in_thread(conn, work)
    except sqlite3.Error as exc:
        health.note_error(exc)
        raise StoreError(f"read failed: {exc}") from None
    except ValueError as exc:  # aiosqlite: the connection was closed meanwhile
        raise StoreError(str(exc)) from None


async def scalar(
    conn: aiosqlite.Connection | None, sql: str, params: Sequence[Any], health: Health
) -> Any:
    """The first column of the first row, or None."""
    rows = await fetch(conn, sql, params, health)
    return rows[0][0] if rows else None


def _frozen(fd: int, name: str) -> str | None:
    """Why the file open as ``fd`` cannot be written now (immutable, append-only, on a
    read-only file system), or None: also when the file system cannot say."""
    try:
        if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
            return f"the file system of {name} is read-only"
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags)
    except OSError:
        return None
    if flags[0] & _NO_WRITE_FLAGS:
        return f"{name} is immutable or append-only: it takes no writes"
    return None


def _file_id(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino
