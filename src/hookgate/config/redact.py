"""The resolved config as plain data with its secrets masked (``check-config``, the API)."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from hookgate.config.schema import Config
from hookgate.config.values import Duration, Size

SECRET_KEYS = frozenset({"secrets", "secret", "token", "verify_token", "password"})
"""Keys whose value is shown as "***" wherever they are."""

# The password of user:password@ in a URL.
_URL_PASSWORD = re.compile(r"^(\w+://[^/:@]*:)[^/@]*@")


def redacted(config: Config) -> dict[str, Any]:
    """The resolved config as plain data, with every secret replaced by "***"."""
    data: dict[str, Any] = msgspec.to_builtins(config, enc_hook=_plain)

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: _scrub_value(k, v, scrub) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return typing.cast(dict[str, Any], scrub(data))


def masked_url(url: str) -> str:
    """``url`` with the password of any ``user:password@`` replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def _scrub_value(key: str, value: Any, scrub: Callable[[Any], Any]) -> Any:
    if key in SECRET_KEYS:
        return _mask(value)
    if key == "headers" and isinstance(value, dict):
        # Fixed headers often carry credentials (Authorization, API keys).
        return {name: "***" for name in value}
    if key == "url" and isinstance(value, str):
        return masked_url(value)
    return scrub(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Duration):
        return float(value)
    if isinstance(value, Size):
        return int(value)
    return str(value)


def _mask(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return ["***" for _ in value]
    return "***"
