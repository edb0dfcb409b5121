"""PostgreSQL's counts as the tables grow: count(*) against the sums of the rows of changes.

A private PostgreSQL server (tests/postgres_server.py), a database migrated by
hookgate, then deliveries (5 destinations, 2 % pending) and their messages inserted
100,000 at a time up to each size; at each size the median of 7 reads of:

- the old way, ``count(*)`` of deliveries by destination and state, and of messages;
- the store's reads now (``select_delivery_counts``, ``select_message_count``): sums
  of ``delivery_count_changes`` and ``message_count_changes`` (migration 0005);
- the same after one ``compact_counts`` (one row per group).

Usage: python bench/postgres_counts.py [--sizes 100000,1000000,3000000]
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import harness
import psycopg

from hookgate.store.postgres import QUERIES, PostgresStore

sys.path.insert(0, str(harness.ROOT / "tests"))
from postgres_server import PostgresServer, find_binaries

BATCH = 100_000


def median_ms(conn: psycopg.Connection[tuple[object, ...]], *queries: str) -> float:
    """Median of 7 runs of ``queries`` in turn, in milliseconds."""
    took = []
    for _ in range(7):
        started = time.perf_counter()
        for sql in queries:
            conn.execute(sql.encode()).fetchall()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


def grow(conn: psycopg.Connection[tuple[object, ...]], start: int, size: int) -> None:
    """Messages and their deliveries from id ``start`` + 1 to ``size``, a batch per statement."""
    for first in range(start + 1, size + 1, BATCH):
        span = (first, first + BATCH - 1)
        conn.execute(
            b"INSERT INTO messages (id, source, received_at, headers, body)"
            b" SELECT n, 's', n, '{}', '{}' FROM generate_series(%s, %s) n",
            span,
        )
        conn.execute(
            b"INSERT INTO deliveries (message_id, destination, state, next_attempt_at,"
            b" updated_at) SELECT n, 'd' || mod(n, 5), CASE WHEN mod(n, 50) = 0 THEN"
            b" 'pending' ELSE 'delivered' END, n, n FROM generate_series(%s, %s) n",
            span,
        )
    conn.execute(b"VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,3000000")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    binaries = find_binaries()
    if binaries is None:
        sys.exit("PostgreSQL is not installed: run .ci/setup")
    server = PostgresServer(binaries)
    server.start()
    try:
        url = server.new_database()

        async def migrate() -> None:
            store = PostgresStore(url)
            await store.open()
            await store.close()

        asyncio.run(migrate())
        old = (
            "SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2",
            "SELECT count(*) FROM messages",
        )
        now = (QUERIES["select_delivery_counts"], QUERIES["select_message_count"])
        print("deliveries   count(*)      sums of the changes (rows)   after a fold")
        with psycopg.connect(url, autocommit=True) as conn:
            have = 0
            for size in sizes:
                grow(conn, have, size)
                have = size
                changes = conn.execute(b"SELECT count(*) FROM delivery_count_changes").fetchall()
                summed = median_ms(conn, *now)
                counted = median_ms(conn, *old)
                conn.execute(QUERIES["compact_counts"].encode())
                folded = median_ms(conn, *now)
                print(
                    f"{size:>10,}   {counted:8.2f} ms   {summed:8.3f} ms ({changes[0][0]:>4})"
                    f"            {folded:8.3f} ms   ({counted / folded:,.0f}x)"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
