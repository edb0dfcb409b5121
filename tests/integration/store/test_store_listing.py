"""The message listing's filters on a grown store: each finds its rows through an index.

The dashboard and the API page through millions of messages with these queries, on
the read connection, while the writer ingests. The plans checked are those of the
very statements the store runs (captured from its read path), with the SQLite that
hookgate runs on, on a database the way the daemon leaves it (no ANALYZE).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookgate.store import MessageFilter, message_id_floor
from hookgate.store.sqlite import SQLiteStore

from ..harness import query_plan

MESSAGES = 200_000
SOURCES = ("stripe", "github", "shop", "slack")
DESTINATIONS = ("orders", "audit")
STEP = 0.05  # seconds between two grown messages: 200 000 span about 3 hours


def grow(db_path: Path, now: float) -> None:
    """MESSAGES messages (two deliveries each) written straight into the migrated file."""
    start = now - MESSAGES * STEP
    messages = []
    deliveries = []
    for n in range(MESSAGES):
        received = start + n * STEP
        number = message_id_floor(received) + n % 1000
        source = SOURCES[n % len(SOURCES)]
        messages.append((number, source, received, f"event.{n % 50}", f"evt_{n}", b"{}", b"{}"))
        for destination in DESTINATIONS:
            state = "dead" if n % 997 == 0 else "delivered"
            deliveries.append((number, destination, state, received, received))
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executemany(
            "INSERT INTO messages (id, source, received_at, event_type, event_id, headers, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            messages,
        )
        conn.executemany(
            "INSERT INTO deliveries (message_id, destination, state, next_attempt_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?)",
            deliveries,
        )


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, float]]:
    db_path = tmp_path_factory.mktemp("grown") / "hookgate.db"
    now = time.time()

    async def migrate() -> None:
        store = SQLiteStore(str(db_path))
        await store.open()
        await store.close()

    import asyncio

    asyncio.run(migrate())
    grow(db_path, now)
    yield db_path, now


async def listing_statements(
    db_path: Path, query: MessageFilter, limit: int = 50
) -> tuple[list[Any], list[tuple[str, list[Any]]]]:
    """The listing's rows, and every statement the store ran for it."""
    store = SQLiteStore(str(db_path))
    await store.open()
    ran: list[tuple[str, list[Any]]] = []
    read = store.read

    async def recording_read(sql: str, params: Any = ()) -> list[Any]:
        ran.append((sql, list(params)))
        return await read(sql, params)

    store.read = recording_read  # type: ignore[method-assign]
    try:
        rows = await store.list_messages(query, limit)
    finally:
        await store.close()
    return rows, ran


def filters(now: float) -> dict[str, MessageFilter]:
    cursor = message_id_floor(now - 3600)
    return {
        "newest": MessageFilter(),
        "cursor": MessageFilter(before_id=cursor),
        "source": MessageFilter(source="github", before_id=cursor),
        "event_type": MessageFilter(event_type="event.7"),
        "event_id": MessageFilter(event_id="evt_123456"),
        "time_range": MessageFilter(since=now - 7200, until=now - 3600),
        "source_and_time": MessageFilter(source="shop", since=now - 7200, until=now - 3600),
        "destination": MessageFilter(destination="audit"),
        "destination_dead": MessageFilter(destination="audit", state="dead"),
    }


@pytest.mark.parametrize("name", list(filters(0.0)))
async def test_listing_plan_uses_an_index_and_no_sort(grown: tuple[Path, float], name: str) -> None:
    db_path, now = grown
    query = filters(now)[name]
    rows, ran = await listing_statements(db_path, query)
    assert rows, f"{name}: the grown store has matches"
    listing_sql, params = ran[0]
    plan = query_plan(db_path, listing_sql, tuple(params))
    print(name, plan)  # shown with pytest -s: the plans themselves
    assert not any("TEMP B-TREE" in step for step in plan), plan  # pages stream in id order
    messages_step = next(step for step in plan if " m " in f" {step} " or "messages" in step)
    if name in ("newest", "destination", "destination_dead"):
        # Newest first along the primary key, LIMIT stops the walk; the deliveries
        # clause is one lookup per message through deliveries_message.
        assert messages_step.startswith("SCAN m"), plan
        if name != "newest":
            assert any("deliveries_message" in step for step in plan), plan
    else:
        assert messages_step.startswith("SEARCH m"), plan
    expected_index = {
        "source": "messages_source",
        "event_type": "messages_event_type",
        "event_id": "messages_event_id",
        "cursor": "INTEGER PRIMARY KEY",
        "time_range": "INTEGER PRIMARY KEY",
    }.get(name)
    if expected_index is not None:
        assert expected_index in messages_step, plan
    # The counts of the page's deliveries: by message, through deliveries_message.
    count_plan = query_plan(db_path, *(lambda s, p: (s, tuple(p)))(*ran[1]))
    assert any("deliveries_message" in step for step in count_plan), count_plan


async def test_listing_filters_find_the_right_rows(grown: tuple[Path, float]) -> None:
    db_path, _ = grown
    rows, _ = await listing_statements(db_path, MessageFilter(event_id="evt_123456"))
    assert [(r.event_id, r.source) for r in rows] == [("evt_123456", SOURCES[123456 % 4])]
    rows, _ = await listing_statements(db_path, MessageFilter(destination="audit", state="dead"))
    assert rows and all(r.dead == 2 for r in rows)
    assert all(int(r.event_id.removeprefix("evt_")) % 997 == 0 for r in rows if r.event_id)
    page, _ = await listing_statements(db_path, MessageFilter(source="github"), limit=3)
    older, _ = await listing_statements(
        db_path, MessageFilter(source="github", before_id=page[-1].number), limit=3
    )
    numbers = [r.number for r in [*page, *older]]
    assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == 6
    assert all(r.source == "github" for r in [*page, *older])
