"""The ``hookgate`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import orjson

from hookgate import __version__, config, daemon
from hookgate import logging as hookgate_logging

EXIT_OK = 0
EXIT_FAILURE = 1
# EX_CONFIG from sysexits.h: the unit's RestartPreventExitStatus= names it, so a
# bad config does not become a restart loop.
EXIT_CONFIG = 78


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_FAILURE
    handler = _COMMANDS[args.command]
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        help=f"config file (default: $HOOKGATE_CONFIG or {config.DEFAULT_PATH})",
    )
    parser = argparse.ArgumentParser(
        prog="hookgate", description="A durable webhook relay.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"hookgate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", parents=[common], help="run the relay daemon")
    commands.add_parser(
        "check-config",
        parents=[common],
        help="validate the config and print it resolved, secrets redacted",
    )
    return parser


def _load(args: argparse.Namespace) -> config.Config | None:
    path = config.config_path(getattr(args, "config", None))
    try:
        return config.load(path)
    except config.ConfigError as exc:
        for line in exc.errors:
            print(f"hookgate: config error: {line}", file=sys.stderr)
        return None


def _check_config(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return EXIT_FAILURE
    sys.stdout.buffer.write(orjson.dumps(config.redacted(loaded), option=orjson.OPT_INDENT_2))
    sys.stdout.buffer.write(b"\n")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return EXIT_CONFIG
    hookgate_logging.configure(loaded.log)
    try:
        return _run(daemon.Daemon(loaded).run())
    except daemon.StartupError as exc:
        print(f"hookgate: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform; asyncio's loop works too
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


_COMMANDS = {"serve": _serve, "check-config": _check_config}


if __name__ == "__main__":
    sys.exit(main())
