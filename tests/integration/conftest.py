"""Fixtures every integration test may ask for; the types behind them are in ``harness.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hookgate.store import Store
from hookgate.store.sqlite import SQLiteStore

from .harness import Backend, Downstream, Relay

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each store backend in turn: a SQLite file in ``tmp_path``, then a new database of
    the session's PostgreSQL server (skipped, saying why, where PostgreSQL is missing)."""
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "hookgate.db"))
    return Backend("postgresql", request.getfixturevalue("postgres_url"))


@pytest.fixture
async def any_store(backend: Backend) -> AsyncIterator[Store]:
    """An open store of each backend in turn, closed after the test."""
    opened = backend.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def downstream() -> AsyncIterator[Downstream]:
    """A recording HTTP server on 127.0.0.1 that answers 200 until told otherwise."""
    server = Downstream()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def relay(tmp_path: Path, downstream: Downstream) -> AsyncIterator[Relay]:
    """A relay (not started: ``await relay.start(toml)``) delivering to ``downstream``."""
    relay = Relay(tmp_path, downstream)
    try:
        yield relay
    finally:
        await relay.stop()


@pytest.fixture
async def sqlite_relay(tmp_path: Path, downstream: Downstream) -> AsyncIterator[Relay]:
    """A relay on SQLite, where a test is about the SQLite store's own behaviour."""
    relay = Relay(tmp_path, downstream)
    try:
        yield relay
    finally:
        await relay.stop()


@pytest.fixture
async def any_relay(
    tmp_path: Path, downstream: Downstream, backend: Backend
) -> AsyncIterator[Relay]:
    """A relay on each store backend in turn (not started: ``await relay.start(toml)``)."""
    relay = Relay(tmp_path, downstream, backend)
    try:
        yield relay
    finally:
        await relay.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "hookgate.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store on ``db_path``, closed after the test."""
    opened = SQLiteStore(str(db_path))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
