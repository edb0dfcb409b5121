"""What every command shares: exit codes, argument types, loading the config, running a loop."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hookgate import config
from hookgate.cli import client
from hookgate.errors import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # as argparse exits on a bad command line
# EX_CONFIG from sysexits.h: the unit's RestartPreventExitStatus= names it, so a
# bad config does not become a restart loop.
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130
TOKEN_ENV = "HOOKGATE_ADMIN_TOKEN"  # noqa: S105 - the name of a variable, not a token
TIMES = " (ISO 8601, unix seconds, or a duration ago such as 30m, 2h, 7d)"
_T = TypeVar("_T")


class UsageError(Exception):
    """The command line asks for something that cannot be done."""


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def status_code(text: str) -> int:
    if not (text.isdigit() and 200 <= int(text) <= 599):
        raise argparse.ArgumentTypeError(f"expected an HTTP status from 200 to 599, got {text!r}")
    return int(text)


def time_argument(text: str) -> str:
    """ISO 8601 and unix seconds go to the API as given; a duration means that long ago."""
    try:
        ago = config.parse_duration(text)
    except ValueError:
        return text
    return str(int(time.time() - ago))


def load(args: argparse.Namespace) -> config.Config | None:
    return reporting_errors(config.load, args)


def load_admin(args: argparse.Namespace) -> config.AdminConfig | None:
    return reporting_errors(config.load_admin, args)


def reporting_errors(loader: Callable[[Path], _T], args: argparse.Namespace) -> _T | None:
    """Load the config named by the arguments; print each error, one per line."""
    path = config.config_path(getattr(args, "config", None))
    try:
        return loader(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"hookgate: config error: {line}", file=sys.stderr)
        return None


def run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform; asyncio's loop works too
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def show(args: argparse.Namespace, payload: Any, render: Callable[[], str]) -> None:
    print(client.json_text(payload) if args.json else render())
