"""Rows of the store's queries as the ``Store`` types, whatever the backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from hookgate.store.ids import format_message_id
from hookgate.store.types import (
    DeliveryRow,
    DueDelivery,
    MessageContent,
    MessageRow,
    SkippedDestination,
)

_SKIPPED = msgspec.json.Decoder(tuple[SkippedDestination, ...])


def where_clause(*filters: tuple[str, Any]) -> tuple[str, list[Any]]:
    """The {where} of a listing: the clauses whose value is given, joined with AND.

    Only these fixed clauses are formatted into the query; their values are bound (a
    tuple binds one value per mark of its clause).
    """
    given = [(clause, value) for clause, value in filters if value is not None]
    params: list[Any] = []
    for _, value in given:
        params.extend(value if isinstance(value, tuple) else (value,))
    return " AND ".join(c for c, _ in given) or "1 = 1", params


def message_row(row: Sequence[Any], counts: dict[str, int]) -> MessageRow:
    return MessageRow(
        id=format_message_id(row[0]),
        number=row[0],
        source=row[1],
        event_type=row[2],
        event_id=row[3],
        received_at=row[4],
        size=row[5],
        pending=counts.get("pending", 0),
        delivered=counts.get("delivered", 0),
        dead=counts.get("dead", 0),
    )


def encode_skipped(skipped: Sequence[SkippedDestination]) -> bytes | None:
    """A message's skipped destinations as stored: JSON, or NULL (most messages) for none."""
    return msgspec.json.encode(skipped) if skipped else None


def message_content(row: Sequence[Any]) -> MessageContent:
    """Columns 6, 7 and 8 of ``get_message``: headers, body and skipped destinations."""
    skipped = () if row[8] is None else _SKIPPED.decode(row[8])
    return MessageContent(row[6], row[7], skipped)


def delivery_row(row: Sequence[Any]) -> DeliveryRow:
    return DeliveryRow(
        id=row[0],
        message_id=format_message_id(row[1]),
        destination=row[2],
        state=row[3],
        attempts=row[4],
        next_attempt_at=row[5],
        last_status=row[6],
        last_error=row[7],
        updated_at=row[8],
        dead_reason=row[9],
    )


def due_deliveries(rows: Sequence[Sequence[Any]], destination: str) -> list[DueDelivery]:
    """Rows of ``select_due`` and its kin (the same columns) as deliveries to ``destination``."""
    return [
        DueDelivery(
            id=row[0],
            message_id=format_message_id(row[1]),
            destination=destination,
            attempts=row[2],
            next_attempt_at=row[3],
            received_at=row[4],
            source=row[5],
            event_type=row[6],
            headers=row[7],
            body=row[8],
        )
        for row in rows
    ]
