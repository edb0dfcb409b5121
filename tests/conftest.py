"""Fixtures every test folder may ask for: a private PostgreSQL server.

``postgres_server`` starts one server for the whole session, the first time a test
asks for it (tests/postgres_server.py), and stops it at the end; ``postgres_url`` is
a new, empty database on it for one test. Where Debian's ``postgresql`` package is not
installed (``.ci/setup`` installs it), the tests that need it skip, saying so.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from postgres_server import PostgresServer, find_binaries


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    binaries = find_binaries()
    if binaries is None:
        pytest.skip(
            "PostgreSQL is not installed (no /usr/lib/postgresql/<version>/bin/initdb):"
            " run .ci/setup, which installs Debian's postgresql package"
        )
    server = PostgresServer(binaries)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database of the session's PostgreSQL server."""
    return postgres_server.new_database()
