"""Message ids (time-ordered 63-bit integers) and times, and their text forms."""

from __future__ import annotations

import datetime
import random
import time

# Ids need not be unguessable, only unique and ordered: a seeded PRNG costs no syscall.
_id_bits = random.Random()  # noqa: S311
# The last millisecond an id's 41 bits of time hold (2039-09-07).
_LAST_MILLISECOND = 2**41 - 1


def new_message_id(now: float | None = None) -> int:
    """A 63-bit id ordered by time: 41 bits of milliseconds, 22 random bits.

    Time-ordered so ids sort like arrival and never repeat across a database
    reset; the writer still makes each one strictly larger than the last.
    """
    millis = int((time.time() if now is None else now) * 1000)
    return (millis << 22) | _id_bits.getrandbits(22)


def message_id_floor(moment: float) -> int:
    """The smallest message id that can have been received at or after ``moment``; past
    the last millisecond that 41 bits hold (in 2039), the largest id there is."""
    return min(max(int(moment * 1000), 0), _LAST_MILLISECOND) << 22


def format_time(moment: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds: ``2026-11-27T09:30:28.843Z``."""
    when = datetime.datetime.fromtimestamp(moment, tz=datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_message_id(message_id: int) -> str:
    return f"msg_{message_id:016x}"


def parse_message_id(text: str) -> int | None:
    if not text.startswith("msg_") or len(text) != 20:
        return None
    try:
        number = int(text[4:], 16)
    except ValueError:
        return None
    return number if number < 2**63 else None  # SQLite integers are signed 64-bit
