"""The WAL is copied back into the database beside the commits, not inside them.

SQLite's own automatic checkpoint runs inside the COMMIT that takes the WAL past
1,000 pages: that commit waited for it, and every webhook queued behind it
(docs/benchmarks.md). The store's Checkpointer does it on a connection of its own,
after such a commit.
The WAL's progress is read from its index (the ``-shm``), which every connection
maps: ``mxFrame`` (frames in the WAL) at byte 16, ``nBackfill`` (frames copied
back) at byte 96, in the machine's byte order.
"""

from __future__ import annotations

import asyncio
import sqlite3
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from hookgate.store.sqlite import SQLiteStore, database

from ..harness import WAIT, new_message, wait_for


def wal_progress(db_path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames of it already copied into the database file)."""
    index = Path(f"{db_path}-shm").read_bytes()
    (frames,) = struct.unpack_from("=I", index, 16)
    (copied,) = struct.unpack_from("=I", index, 96)
    return frames, copied


# About 1,550 pages of WAL in one commit: past SQLite's automatic limit (1,000).
BIG_BODY = b"x" * (6 * 1024 * 1024)


async def test_a_commit_past_the_automatic_limit_does_not_checkpoint_itself(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "CHECKPOINT_FRAMES", 10**9)  # no checkpointer here
    store = SQLiteStore(str(db_path))
    await store.open()
    try:
        await store.accept(new_message(body=BIG_BODY))
        frames, copied = wal_progress(db_path)
        # All still in the WAL: the commit returned without a checkpoint of its own.
        assert frames > 1_000
        assert copied < frames
    finally:
        await store.close()
    assert not Path(f"{db_path}-wal").exists()  # the last connection's close copies it all


async def test_the_checkpointer_copies_a_large_wal_back(store: SQLiteStore, db_path: Path) -> None:
    await store.accept(new_message(body=BIG_BODY))

    def all_copied() -> bool:
        frames, copied = wal_progress(db_path)
        return frames > 1_000 and copied == frames

    await wait_for(all_copied)
    await store.accept(new_message())  # the WAL restarts from its start
    assert wal_progress(db_path)[0] < 1_000
    assert await store.message_count() == 2


def connection_threads() -> int:
    return sum("connection_worker" in t.name for t in threading.enumerate())


async def test_close_with_a_checkpoint_running_leaves_no_thread(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "CHECKPOINT_FRAMES", 1)
    threads = connection_threads()
    store = SQLiteStore(str(db_path))
    await store.open()
    try:
        # The first commit starts a checkpoint; the next ones, right after, plan one.
        for _ in range(3):
            await store.accept(new_message())
    finally:
        await store.close()
    await wait_for(lambda: connection_threads() == threads)
    assert not Path(f"{db_path}-wal").exists()


async def test_connections_leave_checkpoints_to_the_checkpointer(db_path: Path) -> None:
    conn = await database.connect(str(db_path), "full")
    try:
        rows = await conn.execute_fetchall("PRAGMA wal_autocheckpoint")
    finally:
        await conn.close()
    assert list(rows) == [(database.BACKSTOP_CHECKPOINT_PAGES,)]


async def test_a_failing_checkpoint_fails_no_commit_and_is_tried_again(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = True
    real_in_thread = database.in_thread

    async def checkpoint_thread(conn: Any, work: Any) -> Any:
        if failing:
            raise sqlite3.OperationalError("disk I/O error")
        return await real_in_thread(conn, work)

    # Only the Checkpointer (and claims of large pages) go through database.in_thread;
    # the writer commits through its own reference.
    monkeypatch.setattr(database, "in_thread", checkpoint_thread)
    monkeypatch.setattr(database, "CHECKPOINT_FRAMES", 1)
    store = SQLiteStore(str(db_path))
    await store.open()
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                await store.accept(new_message())
            await wait_for(lambda: any(e["event"] == "store.checkpoint_failed" for e in logs))
            assert store.failure is None
            assert wal_progress(db_path)[1] == 0
            failing = False
            await store.accept(new_message())
            await wait_for(lambda: wal_progress(db_path)[1] == wal_progress(db_path)[0] > 0)
        # Logged once for the failures in a row, not once per commit.
        assert [e["event"] for e in logs].count("store.checkpoint_failed") == 1
        assert await store.message_count() == 4
    finally:
        await store.close()


async def test_a_checkpoint_that_fails_unexpectedly_still_lets_the_store_close(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_thread(conn: Any, work: Any) -> Any:
        raise RuntimeError("not an SQLite error")

    monkeypatch.setattr(database, "in_thread", broken_thread)
    monkeypatch.setattr(database, "CHECKPOINT_FRAMES", 1)
    threads = connection_threads()
    store = SQLiteStore(str(db_path))
    await store.open()
    with structlog.testing.capture_logs() as logs:
        await store.accept(new_message())
        await wait_for(lambda: any(e["event"] == "store.checkpoint_failed" for e in logs))
        await store.close()
    # Every connection closed, the checkpointer's included.
    await wait_for(lambda: connection_threads() == threads)


async def test_a_commit_listener_that_fails_keeps_no_answer_waiting(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_listener(self: database.Checkpointer) -> None:
        raise RuntimeError("listener bug")

    monkeypatch.setattr(database.Checkpointer, "committed", broken_listener)
    store = SQLiteStore(str(db_path))
    await store.open()
    try:
        with structlog.testing.capture_logs() as logs:
            # Bounded: before, the answers waited for ever.
            first = await asyncio.wait_for(store.accept(new_message()), WAIT)
            second = await asyncio.wait_for(store.accept(new_message()), WAIT)
        assert (first.duplicate, second.duplicate) == (False, False)
        assert store.failure is None
        failed = [e for e in logs if e["event"] == "store.commit_listener_failed"]
        assert len(failed) == 2
        assert "listener bug" in failed[0]["error"]
    finally:
        await store.close()


async def test_under_steady_commits_the_wal_starts_again_long_before_the_backstop(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits back to back, as under load: a new webhook is accepted as soon as one is
    # answered, 32 in flight, so that the writer never waits for work. Before, the WAL
    # then started again only when SQLite's backstop (10,000 pages) checkpointed inside
    # a commit, which stalled that commit for 16-26 ms (docs/benchmarks.md). A lower
    # RESTART_FRAMES than the daemon's keeps it well clear of the backstop here.
    monkeypatch.setattr(database, "RESTART_FRAMES", 3_000)
    store = SQLiteStore(str(db_path))
    await store.open()
    try:
        accepted, largest = await steady_commits(store, db_path)
        assert await store.message_count() == accepted
    finally:
        await store.close()
    # Three backstops' worth of frames went through a WAL that never got near one (it
    # reached 10,092 frames before): it started again past RESTART_FRAMES, within a
    # few of the Checkpointer's runs (up to 4,907 frames seen on a loaded machine).
    assert largest < database.RESTART_FRAMES + 4 * database.CHECKPOINT_FRAMES, largest


async def steady_commits(store: SQLiteStore, db_path: Path) -> tuple[int, int]:
    """Accept webhooks back to back, 32 in flight, until about three backstops' worth
    of frames: (webhooks accepted, the WAL's largest size in frames)."""
    body = b'{"pad":"' + b"x" * 8_000 + b'"}'  # about two pages a webhook
    total_frames = 3 * database.BACKSTOP_CHECKPOINT_PAGES
    largest = 0

    async def one() -> None:
        nonlocal largest
        await store.accept(new_message(body=body))
        largest = max(largest, wal_progress(db_path)[0])

    accepted = 0
    in_flight: set[asyncio.Task[None]] = set()
    while accepted * 2 < total_frames:
        while len(in_flight) < 32:
            in_flight.add(asyncio.create_task(one()))
            accepted += 1
        done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    await asyncio.gather(*in_flight)
    return accepted, largest


def test_a_finishing_checkpoint_that_fails_is_only_given_up(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It runs between the writer's commits: an error there must not end the writer's
    # drain (the Checkpointer's next run asks again; commits report the file's state).
    monkeypatch.setattr(database, "RESTART_FRAMES", 0)  # no WAL index opened here
    health = database.Health(str(db_path))
    health.wal_restart_due = True
    closed = sqlite3.connect(db_path)
    closed.close()
    database.finish_wal_checkpoint(closed, health)  # sqlite3.ProgrammingError inside
    assert health.wal_restart_due is False
    assert health.broken is None  # not a damaged file
