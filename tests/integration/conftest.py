"""Fixtures every integration test may ask for; the types behind them are in ``harness.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hookgate.store.sqlite import SQLiteStore

from .harness import Downstream, Relay


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
