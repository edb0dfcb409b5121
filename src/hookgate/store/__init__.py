"""The durable outbox: what the rest of hookgate may ask of storage.

``Store`` (protocol.py) is every operation, types.py the values it takes and
returns, ids.py message ids and times; all are importable from here. ``open_store``
opens the backend for ``[storage]``: ``sqlite/`` for ``path`` (the embedded default,
one process), ``postgres/`` for ``url`` (shared by many processes). Only the backends
run SQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hookgate.store.ids import (
    format_message_id,
    format_time,
    message_id_floor,
    new_message_id,
    parse_message_id,
)
from hookgate.store.protocol import CommitListener, Coordination, PauseListener, Store
from hookgate.store.types import (
    Accepted,
    AttemptRecord,
    AttemptRow,
    DeliveryRow,
    DestinationQueue,
    DueDelivery,
    MessageContent,
    MessageFilter,
    MessageRow,
    NewMessage,
    QueueStats,
    SkippedDestination,
)
from hookgate.wire import DeliveryState

if TYPE_CHECKING:
    from hookgate.config import StorageConfig

__all__ = [
    "Accepted",
    "AttemptRecord",
    "AttemptRow",
    "CommitListener",
    "Coordination",
    "DeliveryRow",
    "DeliveryState",
    "DestinationQueue",
    "DueDelivery",
    "MessageContent",
    "MessageFilter",
    "MessageRow",
    "NewMessage",
    "PauseListener",
    "QueueStats",
    "SkippedDestination",
    "Store",
    "format_message_id",
    "format_time",
    "message_id_floor",
    "new_message_id",
    "open_store",
    "parse_message_id",
]


async def open_store(storage: StorageConfig) -> Store:
    """The store ``storage`` describes, opened; raises StoreError when it cannot open."""
    # Imported here: a backend imports this package, and only the chosen one is loaded.
    store: Store
    if storage.url is not None:
        from hookgate.config import masked_url
        from hookgate.store.postgres import PostgresStore

        store = PostgresStore(
            storage.url,
            password=storage.password,
            lease=storage.lease,
            display_url=masked_url(storage.url),
        )
    else:
        from hookgate.store.sqlite import SQLiteStore

        store = SQLiteStore(storage.path, sync=storage.sync)
    await store.open()
    return store
