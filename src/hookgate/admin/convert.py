"""The store's rows as the API's answers: ISO times, text bodies, counts."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import msgspec

from hookgate.admin import answers
from hookgate.store import (
    AttemptRow,
    DeliveryRow,
    MessageContent,
    MessageRow,
    format_time,
)


def message(row: MessageRow) -> answers.Message:
    """A message in a listing, with its deliveries counted by state."""
    return answers.Message(
        id=row.id,
        source=row.source,
        event_type=row.event_type,
        event_id=row.event_id,
        received_at=format_time(row.received_at),
        size=row.size,
        deliveries=answers.DeliveryCounts(row.pending, row.delivered, row.dead),
    )


def message_detail(
    row: MessageRow, content: MessageContent, deliveries: list[answers.DeliveryDetail]
) -> answers.MessageDetail:
    """A message with its headers and body (text when UTF-8, else base64)."""
    body_text = _utf8(content.body)
    return answers.MessageDetail(
        id=row.id,
        source=row.source,
        event_type=row.event_type,
        event_id=row.event_id,
        received_at=format_time(row.received_at),
        size=row.size,
        headers=msgspec.json.decode(content.headers, type=dict[str, str]),
        body=body_text,
        body_base64=None if body_text is not None else base64.b64encode(content.body).decode(),
        deliveries=deliveries,
        skipped=[answers.SkippedDestination(s.destination, s.reason) for s in content.skipped],
    )


def delivery(row: DeliveryRow) -> answers.Delivery:
    return answers.Delivery(
        id=row.id,
        message_id=row.message_id,
        destination=row.destination,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=format_time(row.next_attempt_at),
        last_status=row.last_status,
        last_error=row.last_error,
        dead_reason=row.dead_reason,
        updated_at=format_time(row.updated_at),
    )


def delivery_detail(row: DeliveryRow, attempts: Sequence[AttemptRow]) -> answers.DeliveryDetail:
    return answers.DeliveryDetail(
        **msgspec.structs.asdict(delivery(row)), attempt_log=[_attempt(a) for a in attempts]
    )


def _attempt(row: AttemptRow) -> answers.Attempt:
    return answers.Attempt(
        started_at=format_time(row.started_at),
        duration_ms=round(row.duration_ms, 3),
        status=row.status,
        error=row.error,
        response_snippet=row.response_snippet.decode("utf-8", errors="replace"),
    )


def _utf8(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None
