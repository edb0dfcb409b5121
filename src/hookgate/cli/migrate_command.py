"""`hookgate migrate --to postgresql://...`: move a stopped daemon's SQLite outbox to PostgreSQL.

The store (psycopg, sqlite3) is imported inside the command, so that the rest of the
CLI starts without it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hookgate import config
from hookgate.cli.common import EXIT_FAILURE, EXIT_OK, UsageError, load, run
from hookgate.errors import StoreError


def add_migrate(commands: Any, common: argparse.ArgumentParser) -> None:
    migrate = commands.add_parser(
        "migrate",
        parents=[common],
        help="copy a stopped daemon's SQLite database into PostgreSQL",
        description="Copy the messages, deliveries, attempts and pause state of the SQLite"
        " database at storage.path (or --from) into the PostgreSQL database at --to, and"
        " print what was copied. The daemon must be stopped (its lock file is taken for the"
        " copy). Run it again to copy only what is new; a database that holds messages of"
        " its own is refused. The password: in the URL, or PGPASSWORD.",
    )
    migrate.add_argument(
        "--to", required=True, metavar="URL", help="postgresql://user@host:port/database"
    )
    migrate.add_argument("--from", dest="source", metavar="PATH", help="default: storage.path")
    migrate.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    url: str = args.to
    if url.partition("://")[0] not in ("postgresql", "postgres"):
        raise UsageError(f"--to: expected a postgresql:// URL, got {config.masked_url(url)!r}")
    source: str | None = args.source
    if source is None:
        loaded = load(args)
        if loaded is None:
            return EXIT_FAILURE
        source = loaded.storage.path
    from hookgate import logs
    from hookgate.store.postgres.transfer import copy_sqlite

    # The counts are the output; the store's own info lines (schema migrated) are not.
    logs.configure(config.LogConfig(level="warning", format="console"))
    try:
        copied = run(copy_sqlite(source, url))
    except StoreError as exc:
        print(f"hookgate migrate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    states = ", ".join(
        f"{state} {copied.deliveries[state]}" for state in ("pending", "delivered", "dead")
    )
    print(f"copied {source} to {config.masked_url(url)}")
    print(f"messages: {copied.messages} copied, {copied.messages_there} already there")
    print(f"deliveries: {sum(copied.deliveries.values())} copied ({states})")
    print(f"attempts: {copied.attempts} copied")
    print(f"paused destinations: {copied.paused}")
    return EXIT_OK
