"""The value types a config file writes with units, and their parsers.

Durations and sizes are strings with a unit in the file (``"10s"``, ``"1MiB"``);
msgspec decodes them through ``dec_hook``. ``parse_listen`` splits the
``host:port`` of the listeners.
"""

from __future__ import annotations

import re


class Duration(float):
    """Seconds, written in the file as "250ms", "10s", "5m", "2h" or "7d"."""


class Size(int):
    """Bytes, written as "512KiB", "1MiB" or a plain integer."""


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
_LISTEN_RE = re.compile(r"^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})$")


def parse_duration(value: object) -> Duration:
    """``"250ms"``, ``"10s"``, ``"5m"``, ``"2h"`` or ``"7d"`` as seconds; ValueError else."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return Duration(float(match[1]) * _DURATION_UNITS[match[2]])
    raise ValueError(f'expected a duration with a unit such as "250ms", "10s", "5m", got {value!r}')


def parse_size(value: object) -> Size:
    """``"512KiB"``, ``"1MiB"`` or a plain byte count as bytes; ValueError else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Size(value)
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match[2].lower() in _SIZE_UNITS:
            return Size(int(match[1]) * _SIZE_UNITS[match[2].lower()])
    raise ValueError(f'expected a size such as "512KiB", "1MiB" or a byte count, got {value!r}')


def parse_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port" into its parts."""
    match = _LISTEN_RE.match(listen)
    if not match or int(match[3]) > 65535:
        raise ValueError(f'expected "host:port" or "[::]:port", got {listen!r}')
    return (match[1] or match[2] or "0.0.0.0"), int(match[3])  # noqa: S104


def dec_hook(tp: type, obj: object) -> object:
    """msgspec's hook for the types it does not know: Duration and Size."""
    if tp is Duration:
        return parse_duration(obj)
    if tp is Size:
        return parse_size(obj)
    raise NotImplementedError
