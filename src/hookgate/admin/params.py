"""The admin API's parameters: each declared once (name, place, schema) and read here.

A malformed value is a ``Problem`` 400 ``bad_request`` that names the parameter.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from hookgate.admin.routes import Param, Problem
from hookgate.store import MessageFilter, parse_message_id
from hookgate.wire import DELIVERY_STATES, DeliveryState

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

_TEXT: Mapping[str, Any] = {"type": "string"}
_TIME: Mapping[str, Any] = {"type": "string", "description": "ISO 8601 or unix seconds"}
_MESSAGE_ID: Mapping[str, Any] = {"type": "string", "pattern": "^msg_[0-9a-f]{16}$"}

MESSAGE_ID = Param("id", "path", _MESSAGE_ID)
DELIVERY_ID = Param("id", "path", {"type": "integer", "minimum": 0})
NAME = Param("name", "path", _TEXT)
SOURCE = Param("source", "query", _TEXT)
EVENT_TYPE = Param("event_type", "query", _TEXT)
EVENT_ID = Param("event_id", "query", _TEXT)
DESTINATION = Param("destination", "query", _TEXT)
STATE = Param("state", "query", {"type": "string", "enum": list(DELIVERY_STATES)})
SINCE = Param("since", "query", _TIME)
UNTIL = Param("until", "query", _TIME)
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})
MESSAGE_CURSOR = Param("cursor", "query", _MESSAGE_ID)
DELIVERY_CURSOR = Param("cursor", "query", {"type": "string", "pattern": "^[0-9]{1,18}$"})


def message_filter(query: Mapping[str, str]) -> MessageFilter:
    """The message listing's filters and cursor (the API's query, the dashboard's form)."""
    cursor = MESSAGE_CURSOR.get(query)
    before = None if cursor is None else parse_message_id(cursor)
    if cursor is not None and before is None:
        raise Problem(400, "bad_request", "cursor: not a cursor from a previous page")
    return MessageFilter(
        source=SOURCE.get(query),
        event_type=EVENT_TYPE.get(query),
        event_id=EVENT_ID.get(query),
        destination=DESTINATION.get(query),
        state=state(query),
        since=moment(query, SINCE),
        until=moment(query, UNTIL),
        before_id=before,
    )


def state(query: Mapping[str, str]) -> DeliveryState | None:
    """``state``: one of the delivery states, or None."""
    value = STATE.get(query)
    if value is None:
        return None
    for known in DELIVERY_STATES:
        if value == known:
            return known
    raise Problem(400, "bad_request", f"state: expected one of {', '.join(DELIVERY_STATES)}")


def limit(query: Mapping[str, str]) -> int:
    """``limit``: 1 to MAX_LIMIT, DEFAULT_LIMIT when absent."""
    value = whole_number(query, LIMIT)
    if value is None:
        return DEFAULT_LIMIT
    if not 1 <= value <= MAX_LIMIT:
        raise Problem(400, "bad_request", f"limit: expected 1 to {MAX_LIMIT}")
    return value


def whole_number(query: Mapping[str, str], param: Param) -> int | None:
    """A non-negative integer that fits SQLite's 64 bits, or None when absent."""
    value = param.get(query)
    if value is None:
        return None
    if not is_whole_number(value):
        raise Problem(400, "bad_request", f"{param.name}: expected a whole number")
    return int(value)


def is_whole_number(text: str) -> bool:
    """ASCII digits only, at most 18 of them (so no 500 on a huge id)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


# 9999-12-31T23:59:59Z, the last time ISO 8601 writes with four digits: a larger number
# of unix seconds overflowed the store's integer columns (a 500 before).
_LAST_MOMENT = 253_402_300_799.0


def moment(query: Mapping[str, str], param: Param) -> float | None:
    """A time: unix seconds or ISO 8601 (UTC when no offset is given)."""
    value = param.get(query)
    if value is None:
        return None
    try:
        seconds = float(value) if value.replace(".", "", 1).isdigit() else _iso(value)
    except ValueError:
        detail = f"{param.name}: expected ISO 8601 or unix seconds"
        raise Problem(400, "bad_request", detail) from None
    if not seconds <= _LAST_MOMENT:
        detail = f"{param.name}: expected a time before the year 10000"
        raise Problem(400, "bad_request", detail)
    return seconds


def _iso(value: str) -> float:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()
