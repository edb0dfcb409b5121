"""Where a config error is: the key path of a msgspec error, and the line of a key.

msgspec reports a wrong value in English with a JSON path (``Expected `int`, got
`str` - at `$.max_attempts```); ``explain`` turns that into the key path and the
message hookgate shows. ``line_of`` finds the line of a key path in the TOML text
(best effort: tomllib keeps no positions).
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal, NamedTuple

import msgspec


class Problem(NamedTuple):
    """One msgspec error, as hookgate reports it."""

    key: str
    message: str
    wrong: list[str] | None
    """The keys, from the table's root, of the value to leave out before decoding
    again; None when nothing can be left out (a required key is missing)."""


def explain(exc: msgspec.ValidationError, tp: type, path: str) -> Problem:
    """``exc``, raised decoding table ``path`` as ``tp``, with its full key path."""
    message, _, where = str(exc).partition(" - at `$")
    where = where.rstrip("`")
    inner = where.lstrip(".")
    # The struct fields down to the value; a list item or map entry stands for
    # its whole list or map.
    keys = re.findall(r"\.(\w+)", re.split(r"\[", where, maxsplit=1)[0])
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    if unknown:
        return Problem(join(join(path, inner), unknown[1]), "unknown key", [*keys, unknown[1]])
    if message.startswith("Object missing required field"):
        field = message.split("`")[1]
        return Problem(join(join(path, inner), field), "required key is missing", None)
    full = join(path, inner)
    choices = _literal_choices(tp, inner)
    if choices and message.startswith("Invalid enum value"):
        value = message.removeprefix("Invalid enum value ").strip().strip("'")
        expected = ", ".join(choices)
        # As the README spells it: `unknown scheme "strpe" (expected one of: ...)`.
        noun = _noun(full)
        return Problem(full, f'unknown {noun} "{value}" (expected one of: {expected})', keys)
    return Problem(full, message[0].lower() + message[1:], keys)


def _noun(key: str) -> str:
    """What a value at ``key`` is: its key's name, singular for a list item (``methods[1]``)."""
    name, _, item = key.rpartition(".")[2].partition("[")
    return name.removesuffix("s") if item else name


def _literal_choices(tp: type, dotted: str) -> tuple[str, ...]:
    """The allowed values of the Literal field at ``dotted`` under struct ``tp``."""
    current: Any = tp
    for part in filter(None, re.sub(r"\[[^\]]*\]", "", dotted).split(".")):
        hints = typing.get_type_hints(current) if isinstance(current, type) else {}
        current = _unwrap(hints.get(part))
    if typing.get_origin(current) is Literal:
        return tuple(str(c) for c in typing.get_args(current))
    return ()


def _unwrap(tp: Any) -> Any:
    """list[X] → X, X | None → X, so a path can walk through containers."""
    for _ in range(3):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is Literal or not args:
            return tp
        tp = args[-1]
    return tp


def join(prefix: str, key: str) -> str:
    """The key path ``key`` under ``prefix`` (either may be empty)."""
    return f"{prefix}.{key}" if prefix and key else prefix or key


def under(key: str, prefix: str) -> bool:
    """Is ``key`` the key path ``prefix`` or one under it (a subkey, a list item)?"""
    return key == prefix or key.startswith((f"{prefix}.", f"{prefix}["))


def line_of(lines: list[str], key: str) -> int | None:
    """Best effort: the line where the last part of ``key`` is set under its table.

    Else the line of ``key``'s own table header, else (a key that is not in the
    file: required, or inherited) the header of the nearest table above it.
    """
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    table, leaf = parts[:-1], parts[-1]
    start: int | None = 0
    if table:
        start = _first(lines, _header(table, r"\s*\]"))
    if start is None:
        return None
    assign = re.compile(r"^\s*" + re.escape(leaf) + r"\s*=")
    for i in range(start, len(lines)):
        if i > start and lines[i].lstrip().startswith("["):
            break
        if assign.match(lines[i]):
            return i + 1
    # Not a key = value line: maybe the key is a table of its own, [a.b] or [a.b.c].
    found = _first(lines, _header(parts, r"\s*[\].]"))
    for depth in range(len(parts) - 1, 0, -1):
        if found is not None:
            break
        found = _first(lines, _header(parts[:depth], r"\s*\]"))
    return None if found is None else found + 1


def _header(parts: list[str], end: str) -> re.Pattern[str]:
    """The header line of table ``parts`` (``[a.b]``, spaces allowed), then ``end``."""
    return re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, parts)) + end)


def _first(lines: list[str], pattern: re.Pattern[str]) -> int | None:
    """The 0-based index of the first line that ``pattern`` matches."""
    return next((i for i, line in enumerate(lines) if pattern.match(line)), None)
